"""Bad input never gives a wrong number or a traceback, and never damages an existing output.

The case table (`tests/bad_input_cases.py`) runs every command and the Python API on bad
input built on the spot: each case must exit 2 (API: raise the documented type) with a message
naming the file / flag / row and the problem, and leave every pre-existing file unchanged.
The tests after it show the recovery paths: the old output kept when scoring fails midway,
skipped and truncated rows, the world folder lock and its stale-lock takeover, and labelling
against a loopback server that refuses one pair and trickles another.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bad_input_cases import CASES, COMMANDS, fixtures, run_case, tally, tiny_world
from tokenreward.cli import main
from tokenreward.testing import hf_reward_score


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-input")
    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(root / "fx" / "scratch" / "xdg")  # nothing lands in the user's cache
    with fixtures(root / "fx") as built:
        yield built
    if saved is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = saved


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_clearly(case, fx):
    outcome = run_case(case, fx)
    assert outcome.verdict == "clear", f"{case.id}: {outcome}"


def test_the_table_covers_every_command_and_the_api():
    counts = {command: sum(c.command == command for c in CASES) for command in (*COMMANDS, "python API")}
    assert len(CASES) >= 100 and all(counts.values()), counts
    assert len({c.id for c in CASES}) == len(CASES)


def test_tally_counts_each_verdict():
    from bad_input_cases import Case, Outcome

    cases = [Case("a", ["score"]), Case("b", ["score"]), Case("c", call=lambda fx: None)]
    outcomes = [Outcome("clear", 2, "", []), Outcome("silent", 0, "", []), Outcome("traceback", None, "", [])]
    table = tally(list(zip(cases, outcomes)))
    assert table["score"] == {"clear": 1, "unclear": 0, "silent": 1, "traceback": 0}
    assert table["total"] == {"clear": 1, "unclear": 0, "silent": 1, "traceback": 1}


# ---------------------------------------------------------------- score


def test_failed_score_keeps_the_old_output_and_leaves_no_temporary_file(fx, capsys):
    before = fx["old"].read_bytes()
    argv = [
        "score",
        "--rewarder",
        "sparse",
        "--reward-model",
        str(fx["rm"]),
        "--input",
        str(fx["long_row"]),
        "--batch-size",
        "1",
        "--format",
        "json",
        "--output",
        str(fx["old"]),
    ]
    assert main(argv) == 2
    assert "row 6 (line 7)" in capsys.readouterr().err
    assert fx["old"].read_bytes() == before
    assert not [p for p in fx["old"].parent.iterdir() if p.name.startswith(f".{fx['old'].name}.")]


def test_skip_leaves_bad_rows_out_and_records_keep_their_row(fx, tmp_path, capsys):
    rows = [
        {"prompt": "Hi", "response": " Hello!"},
        {"prompt": "Hi", "response": ""},
        "not json",
        {"prompt": "What is 17 + 25?", "response": " 42."},
    ]
    source = tmp_path / "rows.jsonl"
    source.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "scored.jsonl"
    argv = [
        "score",
        "--rewarder",
        "sparse",
        "--reward-model",
        str(fx["rm"]),
        "--input",
        str(source),
        "--format",
        "json",
        "--output",
        str(out),
        "--on-error",
        "skip",
    ]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "row 1 (line 2): the response is empty" in err and "row 2 (line 3): not valid JSON" in err
    assert "scored 2 of 4 rows, skipped 2" in err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["row"] for r in records] == [0, 3]
    for record in records:
        row = rows[record["row"]]
        assert record["sequence_reward"] == pytest.approx(
            hf_reward_score(fx["rm"], row["prompt"], row["response"]), abs=1e-5
        )


def test_truncate_cuts_the_fewest_prompt_characters(fx, tmp_path):
    from transformers import AutoTokenizer

    prompt, response = "The capital of France is Paris. " * 60, " Paris."
    source = tmp_path / "long.jsonl"
    source.write_text(json.dumps({"prompt": prompt, "response": response}) + "\n")
    out = tmp_path / "scored.jsonl"
    argv = [
        "score",
        "--rewarder",
        "sparse",
        "--reward-model",
        str(fx["rm"]),
        "--input",
        str(source),
        "--format",
        "json",
        "--output",
        str(out),
        "--truncate",
    ]
    assert main(argv) == 0
    record = json.loads(out.read_text())
    cut = record["prompt_truncated"]
    tokenizer = AutoTokenizer.from_pretrained(fx["rm"])

    def length(k: int) -> int:
        return len(tokenizer(prompt[k:] + response)["input_ids"])

    assert length(cut) <= 128 < length(cut - 1)
    assert record["sequence_reward"] == pytest.approx(hf_reward_score(fx["rm"], prompt[cut:], response), abs=1e-5)


# ---------------------------------------------------------------- world folder lock

BUILDER = (
    "import sys\nsys.path.insert(0, sys.argv[2])\nfrom bad_input_cases import tiny_world\n"
    "from tokenreward.worldbuild import build\n"
    "build.STAGE_FUNCTIONS['data'] = (lambda f: lambda *a: (print('building', flush=True), f(*a), __import__('time').sleep(600))[1])"
    "(build.STAGE_FUNCTIONS['data'])\n"
    "tiny_world(__import__('pathlib').Path(sys.argv[1]))\n"
)


def test_second_build_is_refused_and_a_dead_holders_lock_is_taken_over(tmp_path, capsys):
    folder = tmp_path / "world"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    first = subprocess.Popen(
        [sys.executable, "-c", BUILDER, str(folder), str(Path(__file__).parent)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert first.stdout.readline().strip() == "building"
        assert main(["world", "build", "--out", str(folder), "--size", "small"]) == 2
        assert f"{folder} is in use by pid {first.pid} (tokenreward world build" in capsys.readouterr().err
    finally:
        first.kill()  # SIGKILL: no clean-up runs, the lock file stays with the dead pid in it
        first.wait()
    assert json.loads((folder / ".tokenreward.lock").read_text())["pid"] == first.pid
    world = tiny_world(folder)  # continues the killed build
    err = capsys.readouterr().err
    assert (
        f"taking over the stale lock of pid {first.pid} (tokenreward world build" in err and "no longer running" in err
    )
    assert (world / "world.json").is_file() and not (world / ".tokenreward.lock").exists()


# ---------------------------------------------------------------- labelling against a loopback server

MIXED = [
    {"prompt": "What is 17 + 25?", "chosen": " 42.", "rejected": " 41."},
    {"prompt": "POISON: say hi", "chosen": " Hello!", "rejected": " Go away."},
    {"prompt": "TRICKLE: name a prime", "chosen": " 7", "rejected": " 8"},
    {"prompt": "Capital of Peru?", "chosen": " Lima.", "rejected": " Paris."},
]


def label_argv(fx, source: Path, out: Path, *extra: str, base_url: str | None = None) -> list[str]:
    return [
        "label",
        "--reviser",
        "openai",
        "--model",
        "mixed",
        "--base-url",
        base_url or fx["api"],
        "--tokenizer",
        str(fx["tok"]),
        "--input",
        str(source),
        "--output",
        str(out),
        "--cache",
        str(out.parent / "cache"),
        "--timeout",
        "1",
        "--retries",
        "1",
        "--concurrency",
        "4",
        *extra,
    ]


def sent_pairs(server) -> list[str]:
    return sorted(
        next(p["prompt"] for p in MIXED if p["prompt"] in call["messages"][-1]["content"]) for call in server.calls
    )


def test_label_run_records_the_failing_pairs_and_a_rerun_sends_only_them(fx, tmp_path, capsys):
    server = fx["server"]
    source = tmp_path / "pairs.jsonl"
    source.write_text("".join(json.dumps(p) + "\n" for p in MIXED))
    out = tmp_path / "labels.jsonl"
    server.calls.clear()
    server.durations.clear()
    server.trickling = True
    started = time.perf_counter()
    try:
        assert main(label_argv(fx, source, out)) == 0
        elapsed = time.perf_counter() - started
        printed = capsys.readouterr().out
        records = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["pair"] for r in records] == [0, 1, 2, 3]
        assert (
            records[1]["failed"].startswith("request failed: HTTP 400")
            and "refused (bad-request)" in records[1]["failed"]
        )
        assert (
            records[2]["failed"]
            == "request failed: no complete reply within the 1.0 s deadline (gave up after 2 attempts)"
        )
        assert (
            "failed" not in records[0]
            and "failed" not in records[3]
            and records[0]["revision"] == " The answer is 42."
        )
        assert "2 labelled, 2 failed, 0 skipped" in printed and "pair 1 failed: request failed: HTTP 400" in printed
        # the 400 is not retried, the trickled reply is retried once; none is served past the deadline + 1 s
        assert sent_pairs(server) == sorted([p["prompt"] for p in MIXED] + [MIXED[2]["prompt"]])
        assert max(server.durations) <= 1.0 + 1.0, server.durations
        assert elapsed < 2 * 1.0 + 1.0 + 5.0  # two deadlines, a backoff, and loading the tokenizer

        server.calls.clear()
        server.trickling = False
        assert main(label_argv(fx, source, out)) == 0
        assert sent_pairs(server) == sorted([MIXED[1]["prompt"], MIXED[2]["prompt"]])
        assert "1 labelled, 1 failed, 2 skipped" in capsys.readouterr().out
        records = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["pair"] for r in records] == [0, 1, 2, 3] and "failed" in records[1] and "failed" not in records[2]

        server.calls.clear()
        assert main(label_argv(fx, source, out)) == 0
        assert sent_pairs(server) == [MIXED[1]["prompt"]]
        server.calls.clear()
        assert main(label_argv(fx, source, out, "--keep-failed")) == 0
        assert server.calls == [] and "all 4 pairs already done (1 recorded as failed)" in capsys.readouterr().out
    finally:
        server.trickling = True


def test_whole_request_deadline_against_a_trickling_reply(fx):
    from tokenreward.revisers.base import RevisionRequest
    from tokenreward.revisers.openai import OpenAIReviser

    reviser = OpenAIReviser(model="trickle", base_url=fx["api"], timeout=0.5, retries=0, concurrency=2)
    started = time.perf_counter()
    results = reviser.revise_batch([RevisionRequest("Hi", " a", " b"), RevisionRequest("Hey", " c", " d")])
    assert time.perf_counter() - started < 0.5 + 1.0
    assert all(r.request_failed and "0.5 s deadline" in r.failure for r in results)


def test_non_json_200_is_retried_and_not_cached(fx, tmp_path):
    from tokenreward.revisers.openai import OpenAIReviser

    server = fx["server"]
    server.calls.clear()
    options = dict(model="not-json", base_url=fx["api"], retries=2, backoff=0.01, cache_dir=tmp_path / "cache")
    result = OpenAIReviser(**options).revise("Hi", " a", " b")
    assert (
        result.request_failed
        and "HTTP 200 with a body that is not JSON" in result.failure
        and "3 attempts" in result.failure
    )
    assert len(server.calls) == 3
    OpenAIReviser(**options).revise("Hi", " a", " b")
    assert len(server.calls) == 6


def test_reply_cache_is_keyed_by_the_normalised_endpoint(fx, tmp_path):
    from tokenreward.revisers.openai import OpenAIReviser, normalised_endpoint

    server = fx["server"]
    server.calls.clear()
    port = server.port
    first = OpenAIReviser(model="ok", base_url=f"http://127.0.0.1:{port}/v1", cache_dir=tmp_path / "cache")
    assert first.revise("Hi", " a", " b").ok and len(server.calls) == 1
    for url in (f"http://localhost:{port}/v1/", f"HTTP://LOCALHOST:{port}//v1"):
        again = OpenAIReviser(model="ok", base_url=url, cache_dir=tmp_path / "cache")
        assert again.revise("Hi", " a", " b").ok and again.stats["cache_hits"] == 1
    assert len(server.calls) == 1
    assert (
        normalised_endpoint("https://API.openai.com/v1/chat/completions")
        == "https://api.openai.com:443/v1/chat/completions"
    )
    assert normalised_endpoint("http://10.0.0.1:8000/v1") != normalised_endpoint("http://127.0.0.1:8000/v1")


def test_torn_last_line_is_dropped_and_redone(fx, tmp_path, capsys):
    source = tmp_path / "pairs.jsonl"
    pairs = [MIXED[0], MIXED[3]]
    source.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    out = tmp_path / "labels.jsonl"
    argv = label_argv(fx, source, out)
    argv[argv.index("mixed")] = "ok"
    assert main(argv) == 0
    whole = out.read_text()
    out.write_text(whole[: len(whole.splitlines()[0]) + 1 + 25])  # killed while writing the second record
    capsys.readouterr()
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert f"{out}: dropped a torn last line (line 2" in captured.err
    assert "1 labelled, 0 failed, 1 skipped" in captured.out
    assert out.read_text() == whole


def test_limit_grows_and_shrinks_on_one_output(fx, tmp_path, capsys):
    source = tmp_path / "pairs.jsonl"
    source.write_text("".join(json.dumps(p) + "\n" for p in (MIXED[0], MIXED[3])))
    out = tmp_path / "labels.jsonl"
    argv = label_argv(fx, source, out)
    argv[argv.index("mixed")] = "ok"
    for limit, said in (
        ("1", "1 labelled, 0 failed, 0 skipped"),
        ("2", "1 labelled, 0 failed, 1 skipped"),
        ("1", "all 1 pairs already done (0 recorded as failed)"),
    ):
        assert main(argv + ["--limit", limit]) == 0
        assert said in capsys.readouterr().out
    assert [json.loads(line)["pair"] for line in out.read_text().splitlines()] == [0, 1]


# ---------------------------------------------------------------- the error boundary in a real process


def test_a_real_process_prints_one_line_and_exits_2(fx):
    argv = [
        sys.executable,
        "-m",
        "tokenreward.cli",
        "score",
        "--rewarder",
        "red",
        "--reward-model",
        str(fx["rm_trunc"]),
        "--prompt",
        "x",
        "--response",
        " y",
    ]
    done = subprocess.run(
        argv, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"tokenreward score: error: cannot load the reward model from {fx['rm_trunc']}: {fx['rm_trunc']}/model.safetensors "
        f"({(fx['rm_trunc'] / 'model.safetensors').stat().st_size} bytes) is not a complete safetensors file (Error while "
        "deserializing header: incomplete metadata, file not fully covered); it is truncated or damaged"
    ]


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_debug_shows_the_traceback(fx, how, monkeypatch):
    argv = ["score", "--rewarder", "red", "--reward-model", str(fx["rm_trunc"]), "--prompt", "x", "--response", " y"]
    if how == "flag":
        argv.insert(2, "--debug")
    else:
        monkeypatch.setenv("TOKENREWARD_DEBUG", "1")
    with pytest.raises(ValueError, match="model.safetensors .* is not a complete safetensors file") as raised:
        main(argv)
    assert raised.value.__cause__ is not None  # the loader's own error is kept for the traceback


def test_an_unexpected_failure_is_one_line_with_exit_status_1(monkeypatch, capsys):
    import tokenreward.commands.score as score

    def broken(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(score, "run", broken)
    monkeypatch.setattr(score, "register", lambda sub: sub.add_parser("score").set_defaults(func=broken))
    assert main(["score"]) == 1
    assert capsys.readouterr().err == (
        "tokenreward score: internal error: ZeroDivisionError: division by zero (rerun with --debug for the traceback)\n"
    )
