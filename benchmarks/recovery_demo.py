"""Three recovery paths, run for real and measured:

1. two `tokenreward world build --size small` into one folder: the second is refused naming
   the first; after `kill -9` of the first, the next build takes the stale lock over and
   finishes the world;
2. `tokenreward score --output FILE` over an existing FILE, failing at the last row: FILE
   keeps its SHA-256;
3. `tokenreward label` against a loopback server that answers 400 for one pair and trickles
   the reply of another (one byte every 0.2 s): the run finishes, the bad pairs are recorded
   and named, a rerun sends only them, and no request is served past `--timeout` + 1 s.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/recovery_demo.py [--skip-world]
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bad_input_cases import FakeChatServer  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
CLI = [sys.executable, "-m", "tokenreward.cli"]


def world_lock(root: Path) -> None:
    folder = root / "world"
    build = CLI + ["world", "build", "--size", "small", "--out", str(folder), "--no-progress"]
    first = subprocess.Popen(build, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    while not (folder / ".tokenreward.lock").is_file() or not (folder / ".tokenreward.lock").read_text():
        time.sleep(0.2)
    second = subprocess.run(build, capture_output=True, text=True, env=ENV)
    print(f"[1] first build pid {first.pid}; second build: exit {second.returncode}: {second.stderr.strip()}")
    time.sleep(3)
    first.kill()
    first.wait()
    print(f"[1] killed pid {first.pid} (SIGKILL); lock file left: {(folder / '.tokenreward.lock').read_text()}")
    started = time.perf_counter()
    third = subprocess.run(build, capture_output=True, text=True, env=ENV)
    lines = [
        line for line in (third.stderr + third.stdout).splitlines() if "stale lock" in line or "world ready" in line
    ]
    print(
        f"[1] third build: exit {third.returncode} after {time.perf_counter() - started:.0f} s: " + " | ".join(lines)
    )
    print(f"[1] lock file after: {'present' if (folder / '.tokenreward.lock').exists() else 'removed'}")


def score_keeps_old(root: Path) -> None:
    from tokenreward.testing import tiny_reward_model, train_tokenizer

    tokenizer = train_tokenizer()
    model = root / "rm"
    tiny_reward_model("llama", tokenizer).save_pretrained(model)
    tokenizer.save_pretrained(model)
    rows = [{"prompt": f"Question {k}?", "response": f" Answer {k}."} for k in range(40)]
    rows.append({"prompt": "The capital of France is Paris. " * 60, "response": " Paris."})
    source = root / "pairs.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    output = root / "scored.jsonl"
    output.write_text("".join(json.dumps({"old": k}) + "\n" for k in range(1000)))
    before = hashlib.sha256(output.read_bytes()).hexdigest()
    done = subprocess.run(
        CLI
        + [
            "score",
            "--rewarder",
            "red",
            "--reward-model",
            str(model),
            "--input",
            str(source),
            "--format",
            "json",
            "--batch-size",
            "2",
            "--output",
            str(output),
        ],
        capture_output=True,
        text=True,
        env=ENV,
    )
    after = hashlib.sha256(output.read_bytes()).hexdigest()
    leftovers = [p.name for p in root.iterdir() if p.name.startswith(".scored.jsonl.")]
    print(f"[2] score exit {done.returncode}: {done.stderr.strip()}")
    print(
        f"[2] {output.name} sha256 before {before[:16]}, after {after[:16]}: {'unchanged' if before == after else 'CHANGED'};"
        f" temporary files left: {leftovers}"
    )


PAIRS = [
    {"prompt": "What is 17 + 25?", "chosen": " 42.", "rejected": " 41."},
    {"prompt": "POISON: say hi", "chosen": " Hello!", "rejected": " Go away."},
    {"prompt": "TRICKLE: name a prime", "chosen": " 7", "rejected": " 8"},
    {"prompt": "Capital of Peru?", "chosen": " Lima.", "rejected": " Paris."},
]


def labelling(root: Path) -> None:
    from tokenreward.cli import main
    from tokenreward.testing import train_tokenizer

    train_tokenizer().save_pretrained(root / "tok")
    source = root / "pairs.jsonl"
    source.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    out = root / "labels.jsonl"
    server = FakeChatServer()
    timeout = 2.0
    argv = [
        "label",
        "--reviser",
        "openai",
        "--model",
        "mixed",
        "--base-url",
        server.url,
        "--tokenizer",
        str(root / "tok"),
        "--input",
        str(source),
        "--output",
        str(out),
        "--cache",
        str(root / "cache"),
        "--timeout",
        str(timeout),
        "--retries",
        "1",
    ]

    def run(tag: str) -> None:
        server.calls.clear()
        server.durations.clear()
        printed = io.StringIO()
        started = time.perf_counter()
        with contextlib.redirect_stdout(printed):
            code = main(argv)
        sent = [next(p["prompt"] for p in PAIRS if p["prompt"] in c["messages"][-1]["content"]) for c in server.calls]
        summary = [line.strip() for line in printed.getvalue().splitlines() if "labelled" in line or "failed:" in line]
        print(
            f"[3] {tag}: exit {code} in {time.perf_counter() - started:.1f} s; requests {sent}; "
            f"longest request served {max(server.durations, default=0):.2f} s (--timeout {timeout})"
        )
        for line in summary:
            print(f"[3]   {line}")

    try:
        run("first run (400 on pair 1, trickled reply on pair 2)")
        server.trickling = False
        run("rerun (the server no longer trickles)")
        run("second rerun")
    finally:
        server.close()
    records = [json.loads(line) for line in out.read_text().splitlines()]
    print("[3] output: " + "; ".join(f"pair {r['pair']}: {r.get('failed', 'labelled')[:60]}" for r in records))


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["XDG_CACHE_HOME"] = str(root / "xdg")
        ENV["XDG_CACHE_HOME"] = str(root / "xdg")
        for name, step in (("world", world_lock), ("score", score_keeps_old), ("label", labelling)):
            if name == "world" and "--skip-world" in sys.argv:
                continue
            (root / name).mkdir()
            step(root / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
