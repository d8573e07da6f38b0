"""The bad-input case table: fixtures built on the spot, the cases, and how an outcome is judged.

Shared by `tests/test_bad_input.py` (every case must be clear) and
`benchmarks/bad_input_table.py` (prints the clear / unclear / silent / traceback counts).

A CLI case runs `tokenreward.cli.main(argv)` in-process; an API case calls the library. An
outcome is
- clear: exit status 2 (API: the expected exception type) and the last line of standard error
  (API: the message) holds every expected fragment (file, flag, row, reason);
- unclear: refused, but with another status or a message that misses a fragment;
- silent: accepted (status 0, no exception), or a pre-existing file under the fixture root changed;
- traceback: an exception escaped `main` (API: an exception of an unexpected type).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import torch

OUTCOMES = ("clear", "unclear", "silent", "traceback")
COMMANDS = ("score", "label", "train", "bench", "world", "demo", "serve")
SCRATCH = "scratch"  # the only folder of the fixture root cases may write into

CHOICES_REPLY = {
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": (
                    "<|Start of Reasoning|>\nfix\n<|End of Reasoning|>\n<|Start of Modified Response|>\nThe answer is 42.\n"
                    "<|End of Modified Response|>"
                ),
            },
        }
    ]
}


class FakeChatServer:
    """A loopback chat-completions endpoint; the request's model name picks the answer:
    `ok` a parsable reply, `auth` 401, `missing` 404, `bad-request` 400, `not-json` a 200
    whose body is not JSON, `trickle` a reply sent one byte every 0.2 s; `mixed` answers 400
    when the prompt holds `POISON`, trickles when it holds `TRICKLE` (while `trickling` is
    set) and answers `ok` otherwise. `calls` holds every request body, `durations` how long
    each request was served (until the reply was sent or the client hung up)."""

    def __init__(self):
        self.calls: list[dict[str, Any]] = []
        self.durations: list[float] = []
        self.trickling = True
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                started = time.perf_counter()
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.calls.append(body)
                status, data, trickle = server.answer(body)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if trickle:
                        for k in range(len(data)):
                            self.wfile.write(data[k : k + 1])
                            self.wfile.flush()
                            time.sleep(0.2)
                    else:
                        self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                server.durations.append(time.perf_counter() - started)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer(self, body: dict[str, Any]) -> tuple[int, bytes, bool]:
        model = body["model"]
        content = body["messages"][-1]["content"]
        if model == "mixed":
            model = (
                "bad-request"
                if "POISON" in content
                else "trickle"
                if "TRICKLE" in content and self.trickling
                else "ok"
            )
        if model in ("auth", "missing", "bad-request"):
            status = {"auth": 401, "missing": 404, "bad-request": 400}[model]
            return status, json.dumps({"error": {"message": f"refused ({model})"}}).encode(), False
        if model == "not-json":
            return 200, b"<html>gateway error</html>", False
        return 200, json.dumps(CHOICES_REPLY).encode(), model == "trickle"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class FakeRewardServer:
    """A loopback stand-in for `tokenreward serve` that answers what a client cannot use; the
    first path segment picks the answer (`url(kind)` is the base URL of one kind):
    `html` a 200 HTML page, `html-502` a 502 HTML page (a proxy in front of a dead server),
    `no-results` a JSON object without `results` / `rewards`, `array` a JSON array,
    `short` no records, `nan` a NaN reward, `ok` a well-formed answer for one sample.
    `calls` counts the requests of each kind."""

    RECORD = {"rewarder": "red", "sequence_reward": 0.5, "tokens": [" a"], "offsets": [[0, 2]], "rewards": [0.5]}
    ANSWERS = {
        "html": (200, "text/html", b"<html><body><h1>Welcome to nginx!</h1>\n</body></html>"),
        "html-502": (502, "text/html", b"<html><body>\n<h1>502 Bad Gateway</h1>\n</body></html>"),
        "no-results": (200, "application/json", b'{"status": "ok"}'),
        "array": (200, "application/json", b"[1, 2]"),
        "short": (200, "application/json", b'{"results": [], "rewards": []}'),
        "nan": (200, "application/json", b'{"results": [{"sequence_reward": NaN}], "rewards": [NaN]}'),
        "ok": (
            200,
            "application/json",
            json.dumps({"results": [{**RECORD, "row": 0}], "rewards": [0.5], "scores": [0.5]}).encode(),
        ),
    }

    def __init__(self):
        self.calls: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def answer(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                kind = self.path.strip("/").split("/")[0]
                server.calls[kind] = server.calls.get(kind, 0) + 1
                status, kind_type, data = server.ANSWERS.get(kind, (404, "text/plain", b"no such kind"))
                self.send_response(status)
                self.send_header("Content-Type", kind_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, kind: str) -> str:
        return f"http://127.0.0.1:{self.port}/{kind}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class ServedApp:
    """`tokenreward serve`'s application (RED on the fixture reward model, `keep_sum=true`, the
    fixture tokenizer as the policy tokenizer) behind Starlette's test client, started on first
    use. `post(path, body)` raises ValueError("HTTP 4xx: message") for a refusal, RuntimeError
    for a 5xx (a server fault, not a clear refusal), and returns the JSON of a 2xx."""

    def __init__(self, fx: dict[str, Any]):
        self.fx = fx
        self.client = None

    def post(self, path: str, body: Any) -> Any:
        if self.client is None:
            from starlette.testclient import TestClient

            from tokenreward.models import load_tokenizer
            from tokenreward.rewards import build_rewarder
            from tokenreward.serve import build_state, create_app

            resources = {"reward_model": str(self.fx["rm"]), "device": "cpu"}
            rewarder = build_rewarder("red", resources, keep_sum=True)
            policy = load_tokenizer(str(self.fx["tok"]))
            state = build_state(rewarder, resources, policy, options={"keep_sum": True})
            self.client = TestClient(create_app(state)).__enter__()
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        answer = self.client.post(path, content=raw, headers={"content-type": "application/json"})
        if 400 <= answer.status_code < 500:
            raise ValueError(f"HTTP {answer.status_code}: {answer.json()['error']}")
        if answer.status_code >= 500:
            raise RuntimeError(f"HTTP {answer.status_code}: {answer.text[:300]}")
        return answer.json()

    def close(self) -> None:
        if self.client is not None:
            self.client.__exit__(None, None, None)


def save_model(model, tokenizer, folder: Path) -> Path:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def damaged_copy(
    source: Path, folder: Path, content: Callable[[bytes], bytes], name: str = "model.safetensors"
) -> Path:
    shutil.copytree(source, folder)
    target = folder / name
    target.write_bytes(content(target.read_bytes()))
    return folder


def write_lines(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def tiny_world(root: Path) -> Path:
    """A finished world of size `tiny` (a few seconds to build)."""
    from tokenreward.worldbuild import build as world_build

    world_build.SIZES.setdefault(
        "tiny", world_build.WorldSize(8, 0.2, 1, 1, 1, 400, 1, 32, 2, 1, 1e-3, 1, 1e-3, 16, 8, 1)
    )
    world_build.build_world(root, size="tiny", seed=3, progress=False)
    return root


def gguf_fixtures(root: Path, tok) -> dict[str, Path]:
    """Damaged GGUF files (cut in half, garbage, empty), one of an architecture transformers cannot
    read, and a folder holding two GGUF files and no config.json."""
    from tokenreward.testing import tiny_causal_lm
    from tokenreward.testing.gguf_files import write_tiny_gguf

    good = write_tiny_gguf(root / "tiny.gguf", tiny_causal_lm("llama", tok), tok)
    data = good.read_bytes()
    fx = {"gguf_unsupported": write_tiny_gguf(root / "rwkv.gguf", tiny_causal_lm("llama", tok), tok, "rwkv6")}
    for key, content in (
        ("gguf_trunc", data[: len(data) // 2]),
        ("gguf_garbage", b"garbage!" * 64),
        ("gguf_zero", b""),
    ):
        fx[key] = root / f"{key}.gguf"
        fx[key].write_bytes(content)
    fx["gguf_two"] = root / "two-ggufs"
    fx["gguf_two"].mkdir()
    for name in ("a.gguf", "b.gguf"):
        (fx["gguf_two"] / name).write_bytes(data)
    return fx


LOCK_HOLDER = (  # holds the folder lock as `tokenreward.io.FolderLock` does: an flock on the file, the holder in it
    "import fcntl, json, os, sys, time\nos.makedirs(sys.argv[1], exist_ok=True)\n"
    "fd = os.open(os.path.join(sys.argv[1], '.tokenreward.lock'), os.O_RDWR | os.O_CREAT)\n"
    "fcntl.flock(fd, fcntl.LOCK_EX)\n"
    "os.write(fd, json.dumps({'pid': os.getpid(), 'command': 'tokenreward world build', 'started': time.time()}).encode())\n"
    "print('held', flush=True)\ntime.sleep(600)\n"
)


@contextlib.contextmanager
def fixtures(root: Path):
    """Every file the cases use, under `root`, as `{name: path or value}` placeholders."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
    from transformers.utils import logging

    from tokenreward.testing import tiny_causal_lm, tiny_config, tiny_reward_model, train_tokenizer

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    root.mkdir(parents=True, exist_ok=True)
    (root / SCRATCH).mkdir()
    fx: dict[str, Any] = {"root": root, "scratch": root / SCRATCH}
    tok = train_tokenizer()
    fx["tok"] = root / "tok"
    tok.save_pretrained(fx["tok"])
    fx["rm"] = save_model(tiny_reward_model("llama", tok), tok, root / "rm")
    fx["lm"] = save_model(tiny_causal_lm("gpt2", tok), tok, root / "lm")
    fx.update(gguf_fixtures(root, tok))
    fx["rm_trunc"] = damaged_copy(fx["rm"], root / "rm-truncated", lambda b: b[: len(b) // 2])
    fx["rm_garbage"] = damaged_copy(fx["rm"], root / "rm-garbage", lambda b: b"\x13\x37garbage" * 64)
    fx["rm_zero"] = damaged_copy(fx["rm"], root / "rm-zero", lambda b: b"")
    fx["rm_badconfig"] = damaged_copy(fx["rm"], root / "rm-badconfig", lambda b: b"{not json", "config.json")
    fx["lm_trunc"] = damaged_copy(fx["lm"], root / "lm-truncated", lambda b: b[:100])
    fx["tok_bad"] = damaged_copy(fx["tok"], root / "tok-bad", lambda b: b[: len(b) // 3], "tokenizer.json")
    shutil.copytree(fx["rm"], root / "rm-noconfig")
    (root / "rm-noconfig" / "config.json").unlink()
    fx["rm_noconfig"] = root / "rm-noconfig"
    nan = tiny_reward_model("llama", tok)
    with torch.no_grad():
        nan.score.weight.fill_(float("nan"))
    fx["rm_nan"] = save_model(nan, tok, root / "rm-nan")
    nopad = train_tokenizer()
    nopad.pad_token = None
    fx["rm_nopad"] = save_model(tiny_reward_model("llama", tok), nopad, root / "rm-nopad")
    small_vocab = AutoModelForSequenceClassification.from_config(tiny_config("llama", 40, 0, num_labels=1))
    fx["rm_smallvocab"] = save_model(small_vocab, tok, root / "rm-smallvocab")
    small_lm = AutoModelForCausalLM.from_config(tiny_config("gpt2", 40, 0))
    fx["lm_smallvocab"] = save_model(small_lm, tok, root / "lm-smallvocab")
    other_tok = train_tokenizer(vocab_size=270)
    fx["lm_othervocab"] = save_model(tiny_causal_lm("gpt2", other_tok), other_tok, root / "lm-othervocab")
    two_way = tiny_config("llama", len(tok), tok.pad_token_id, num_labels=2)
    fx["rm_twolabels"] = save_model(AutoModelForSequenceClassification.from_config(two_way), tok, root / "rm-two")

    pairs = [{"prompt": "What is 17 + 25?", "response": " The answer is 42."}, {"prompt": "Hi", "response": " Hello!"}]
    long_prompt = "The capital of France is Paris. " * 60
    fx["pairs"] = write_lines(root / "pairs.jsonl", pairs)
    fx["zero_jsonl"] = write_lines(root / "zero.jsonl", [])
    fx["binary"] = root / "binary.jsonl"
    fx["binary"].write_bytes(b"\xff\xfe\x00\x81garbage")
    fx["bad_json"] = write_lines(root / "bad-json.jsonl", [pairs[0], '{"prompt": "x", "response": ', pairs[1]])
    fx["list_row"] = write_lines(root / "list-row.jsonl", [["What", " x"]])
    fx["no_response"] = write_lines(root / "no-response.jsonl", [pairs[0], {"prompt": "Hi"}])
    fx["number_response"] = write_lines(root / "number-response.jsonl", [{"prompt": "Hi", "response": 42}])
    fx["empty_response"] = write_lines(root / "empty-response.jsonl", [pairs[0], {"prompt": "Hi", "response": ""}])
    fx["bad_roles"] = write_lines(
        root / "bad-roles.jsonl", [{"prompt": [{"role": "human", "content": "Hi"}], "response": " Hello"}]
    )
    fx["number_prompt"] = write_lines(root / "number-prompt.jsonl", [{"prompt": 7, "response": " Hello"}])
    fx["user_last"] = write_lines(
        root / "user-last.jsonl", [{"prompt": "Hi", "response": [{"role": "user", "content": "x"}]}]
    )
    fx["chat_rows"] = write_lines(
        root / "chat.jsonl", [{"prompt": [{"role": "user", "content": "Hi"}], "response": " Hello"}]
    )
    fx["long_row"] = write_lines(root / "long-row.jsonl", pairs * 3 + [{"prompt": long_prompt, "response": " Paris."}])
    fx["long_response"] = write_lines(root / "long-response.jsonl", [{"prompt": "Hi", "response": " Paris." * 200}])
    fx["all_bad"] = write_lines(root / "all-bad.jsonl", [{"prompt": "Hi", "response": ""}, "nope"])

    fx["old"] = root / "old-output.jsonl"
    fx["old"].write_text("OLD CONTENT\n")
    fx["a_file"] = root / "a-file.txt"
    fx["a_file"].write_text("a file, not a folder\n")
    fx["ro_file"] = root / "read-only.jsonl"
    fx["ro_file"].write_text("kept\n")
    fx["ro_file"].chmod(0o444)
    fx["ro_dir"] = root / "read-only-folder"
    fx["ro_dir"].mkdir()
    fx["ro_dir"].chmod(0o555)
    fx["empty_dir"] = root / "empty-folder"
    fx["empty_dir"].mkdir()
    fx["missing"] = root / "no-such-file.jsonl"

    lpairs = [
        {"prompt": "What is 17 + 25?", "chosen": " 42.", "rejected": " 41."},
        {"prompt": "Hi", "chosen": " Hello!", "rejected": " Go away."},
    ]
    fx["lpairs"] = write_lines(root / "label-pairs.jsonl", lpairs)
    from tokenreward.labels import label_pair

    fx["labels"] = write_lines(
        root / "labels.jsonl", [label_pair(tok, p["prompt"], p["rejected"], p["chosen"]) for p in lpairs]
    )
    fx["l_equal"] = write_lines(root / "label-equal.jsonl", [{**p, "rejected": p["chosen"]} for p in lpairs])
    sft_rows = [{"prompt": p["prompt"], "completion": p["chosen"]} for p in lpairs + lpairs[:1]]
    for line in (1, 2, 3):  # one bad row at the first, second and last line
        fx[f"sft_bad{line}"] = write_lines(
            root / f"sft-bad{line}.jsonl", [{"prompt": "x"} if k + 1 == line else r for k, r in enumerate(sft_rows)]
        )
        fx[f"l_bad{line}"] = write_lines(
            root / f"pairs-bad{line}.jsonl",
            [{"prompt": "x", "chosen": " y"} if k + 1 == line else r for k, r in enumerate(lpairs + lpairs[:1])],
        )
    fx["l_missing"] = write_lines(root / "label-missing.jsonl", [lpairs[0], {"prompt": "Hi", "chosen": " Hello!"}])
    fx["l_empty_chosen"] = write_lines(root / "label-empty.jsonl", [{"prompt": "Hi", "chosen": "", "rejected": " no"}])
    fx["l_number_prompt"] = write_lines(
        root / "label-number-prompt.jsonl", [{"prompt": 3, "chosen": " a", "rejected": " b"}]
    )
    fx["l_bad_json"] = write_lines(root / "label-bad-json.jsonl", [lpairs[0], "{oops"])
    fx["l_other"] = write_lines(
        root / "labels-other.jsonl", [{"pair": 0, "prompt": "Another prompt", "rejected": " x", "failed": "f"}]
    )
    fx["l_toomany"] = write_lines(
        root / "labels-toomany.jsonl", [{"pair": 5, "prompt": "Hi", "rejected": " Go away.", "failed": "f"}]
    )
    fx["l_damaged"] = write_lines(
        root / "labels-damaged.jsonl",
        [
            {"pair": 0, "prompt": lpairs[0]["prompt"], "rejected": " 41.", "failed": "f"},
            "{torn in the middle",
            {"pair": 1, "prompt": "Hi", "rejected": " Go away.", "failed": "f"},
        ],
    )

    fx["world"] = tiny_world(root / "world")
    fx["world_trunc"] = damaged_copy(
        fx["world"], root / "world-truncated", lambda b: b[:-64], "reward-model/model.safetensors"
    )
    fx["world_flip"] = damaged_copy(
        fx["world"], root / "world-flipped", lambda b: b[:-1] + bytes([b[-1] ^ 1]), "policy/model.safetensors"
    )
    shutil.copytree(fx["world"], root / "world-missing")
    (root / "world-missing" / "data" / "pairs.test.jsonl").unlink()
    fx["world_missing"] = root / "world-missing"
    fx["world_badjson"] = damaged_copy(fx["world"], root / "world-badjson", lambda b: b[:20], "world.json")
    fx["world_badline"] = damaged_copy(  # line 2 of the reward pairs starts "[" (the size is kept)
        fx["world"], root / "world-badline", lambda b: b.replace(b"\n{", b"\n[", 1), "data/pairs.reward.jsonl"
    )
    (root / "world-badstate").mkdir()
    (root / "world-badstate" / "build-state.json").write_text('{"done": ["data"')
    fx["world_badstate"] = root / "world-badstate"

    fx["locked"] = root / "locked-world"
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(fx["locked"])],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    server = FakeChatServer()
    rewards_api = FakeRewardServer()
    served = ServedApp(fx)
    try:
        assert holder.stdout.readline().strip() == "held"
        fx["holder_pid"] = holder.pid
        fx["api"] = server.url
        fx["server"] = server
        fx["rewards_api"] = rewards_api
        fx["served"] = served
        fx["cache"] = root / SCRATCH / "cache"
        yield fx
    finally:
        holder.kill()
        holder.wait()
        server.close()
        rewards_api.close()
        served.close()
        fx["ro_dir"].chmod(0o755)
        fx["ro_file"].chmod(0o644)


def snapshot(root: Path) -> dict[str, str]:
    """SHA-256 of every file under `root` except the scratch folder."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and SCRATCH not in path.relative_to(root).parts[:1]:
            out[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@dataclass
class Case:
    """`argv` (a CLI case) or `call(fx)` (an API case); `expect`: fragments the message must hold
    (`{name}` placeholders are the fixtures); `raises`: the exception types an API case may raise."""

    id: str
    argv: list[str] | None = None
    call: Callable[[dict[str, Any]], Any] | None = None
    expect: tuple[str, ...] = ()
    raises: tuple[type[BaseException], ...] = (ValueError,)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def command(self) -> str:
        if self.argv is None:
            return "python API"
        return self.argv[0] if self.argv[0] in COMMANDS else "(none)"


@dataclass
class Outcome:
    verdict: str
    code: int | None
    message: str
    changed: list[str]


def fill(text: str, fx: dict[str, Any], case: str = "") -> str:
    return text.format(case=case, **{k: str(v) for k, v in fx.items()})


def run_case(case: Case, fx: dict[str, Any]) -> Outcome:
    from tokenreward.cli import main

    before = snapshot(fx["root"])
    expected = [fill(e, fx, case.id) for e in case.expect]
    saved = {k: os.environ.get(k) for k in case.env}
    os.environ.update(case.env)
    out, err = io.StringIO(), io.StringIO()
    code: int | None = None
    escaped = None
    try:
        if case.argv is not None:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    code = main([fill(a, fx, case.id) for a in case.argv])
                except SystemExit as done:  # an argparse usage error let through: a real process exits with it
                    code = done.code if isinstance(done.code, int) else 1
                except BaseException:
                    escaped = traceback.format_exc()
            lines = [line for line in err.getvalue().splitlines() if line.strip()]
            message = escaped or (lines[-1] if lines else "")
        else:
            message = ""
            try:
                case.call(fx)
                code = 0
            except case.raises as error:
                code, message = 2, str(error)
            except Exception as error:
                escaped = message = f"{type(error).__name__}: {error}"
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    after = snapshot(fx["root"])
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    if escaped:
        verdict = "traceback"
    elif code == 0 or changed:
        verdict = "silent"
    elif code == 2 and all(e in message for e in expected) and (case.argv is None or ": error: " in message):
        verdict = "clear"
    else:
        verdict = "unclear"
    return Outcome(verdict, code, message, changed)


def tally(outcomes: list[tuple[Case, Outcome]]) -> dict[str, dict[str, int]]:
    """`{command: {outcome: count}}` plus a "total" row."""
    table: dict[str, dict[str, int]] = {}
    for case, outcome in outcomes:
        for row in (case.command, "total"):
            table.setdefault(row, dict.fromkeys(OUTCOMES, 0))[outcome.verdict] += 1
    return table


# ---------------------------------------------------------------- the cases

S = ["score", "--rewarder", "red", "--reward-model", "{rm}"]
ONE = ["--prompt", "What is 17 + 25?", "--response", " 42."]
L = [
    "label",
    "--reviser",
    "openai",
    "--base-url",
    "{api}",
    "--model",
    "ok",
    "--tokenizer",
    "{tok}",
    "--cache",
    "{cache}",
    "--retries",
    "0",
]
LOUT = ["--input", "{lpairs}", "--output", "{scratch}/{case}/labels.jsonl"]  # a fresh output for every case


def score_case(id: str, args: list[str], *expect: str, base: list[str] = S) -> Case:
    return Case(f"score-{id}", argv=base + args, expect=expect)


def label_case(id: str, args: list[str], *expect: str, base: list[str] = L) -> Case:
    return Case(f"label-{id}", argv=base + args, expect=expect)


SCORE_CASES = [
    score_case("input-missing", ["--input", "{missing}"], "--input {missing}: no such file"),
    score_case("input-folder", ["--input", "{empty_dir}"], "--input {empty_dir}: is a folder"),
    score_case("input-zero-bytes", ["--input", "{zero_jsonl}"], "{zero_jsonl}: no prompt/response lines"),
    score_case("input-binary", ["--input", "{binary}"], "{binary}: not UTF-8 text"),
    score_case(
        "input-bad-json", ["--input", "{bad_json}"], "{bad_json}, row 1 (line 2): not valid JSON", "--on-error skip"
    ),
    score_case("input-list-row", ["--input", "{list_row}"], "row 0 (line 1): needs a 'prompt' and a 'response'"),
    score_case("input-no-response", ["--input", "{no_response}"], "row 1 (line 2): needs a 'prompt' and a 'response'"),
    score_case(
        "input-number-response",
        ["--input", "{number_response}"],
        "row 0 (line 1)",
        "expected a string or a list of messages",
    ),
    score_case("input-empty-response", ["--input", "{empty_response}"], "row 1 (line 2): the response is empty"),
    score_case("input-wrong-roles", ["--input", "{bad_roles}"], "row 0 (line 1)", "unknown role 'human'"),
    score_case("input-number-prompt", ["--input", "{number_prompt}"], "row 0 (line 1): 'prompt' must be text"),
    score_case(
        "input-user-last", ["--input", "{user_last}"], "row 0 (line 1)", "the last message must be the assistant's"
    ),
    score_case("input-chat-without-template", ["--input", "{chat_rows}"], "row 0 (line 1)", "no chat template"),
    score_case(
        "input-over-long-row",
        ["--input", "{long_row}"],
        "row 6 (line 7)",
        "longer than the model's context of 128",
        "--truncate",
    ),
    score_case(
        "input-over-long-response",
        ["--input", "{long_response}", "--truncate"],
        "row 0 (line 1)",
        "the response alone is longer",
    ),
    score_case(
        "input-all-rows-bad-skipped",
        ["--input", "{all_bad}", "--on-error", "skip"],
        "{all_bad}: no row could be scored",
    ),
    score_case("output-folder", ONE + ["--output", "{empty_dir}"], "--output {empty_dir}: is a folder"),
    score_case("output-under-a-file", ONE + ["--output", "{a_file}/out.jsonl"], "{a_file} is a file, not a folder"),
    score_case("output-read-only", ONE + ["--output", "{ro_file}"], "--output {ro_file}: is read-only"),
    score_case("output-in-read-only-folder", ONE + ["--output", "{ro_dir}/out.jsonl"], "folder {ro_dir} is read-only"),
    score_case(
        "output-kept-when-a-late-row-fails",
        ["--input", "{long_row}", "--batch-size", "1", "--format", "json", "--output", "{old}"],
        "row 6 (line 7)",
        "longer than the model's context",
    ),
    score_case("batch-size-zero", ONE + ["--batch-size", "0"], "--batch-size: must be at least 1, got 0"),
    score_case("batch-size-negative", ONE + ["--batch-size", "-3"], "--batch-size: must be at least 1, got -3"),
    score_case("batch-size-text", ONE + ["--batch-size", "many"], "--batch-size: expected an integer, got 'many'"),
    score_case("device-cuda-absent", ONE + ["--device", "cuda"], "--device cuda: CUDA is not available"),
    score_case("device-nonsense", ONE + ["--device", "tpu9"], "--device tpu9: not a torch device"),
    score_case("format-unknown", ONE + ["--format", "xml"], "--format: invalid choice: 'xml'"),
    score_case("on-error-unknown", ONE + ["--on-error", "ignore"], "--on-error: invalid choice: 'ignore'"),
    score_case("unknown-option", ONE + ["--bogus", "1"], "unrecognized arguments: --bogus 1"),
    score_case("abbreviated-option", ONE + ["--out", "{scratch}/x.txt"], "unrecognized arguments: --out"),
    score_case("option-out-of-range", ONE + ["--option", "beta_c=2"], "beta_c must lie in [0, 1]"),
    score_case("option-without-value", ONE + ["--option", "beta_c"], "--option expects NAME=VALUE, got 'beta_c'"),
    score_case("option-without-name", ONE + ["--option", "=3"], "--option expects NAME=VALUE, got '=3'"),
    score_case(
        "option-misspelt",
        ONE + ["--option", "betta_c=0.5"],
        "rewarder 'red' takes no option 'betta_c'; its options: beta_c",
    ),
    score_case(
        "resource-without-value", ONE + ["--resource", "policy"], "--resource expects NAME=VALUE, got 'policy'"
    ),
    score_case(
        "resource-unused", ONE + ["--resource", "critic={lm}"], "--resource critic: rewarder 'red' does not take it"
    ),
    score_case("flag-unused-by-rewarder", ONE + ["--policy", "{lm}"], "--policy: rewarder 'red' does not take it"),
    score_case("rewarder-unknown", ONE, "unknown rewarder 'nope'", base=["score", "--rewarder", "nope"]),
    score_case(
        "rewarder-without-model", ONE, "rewarder 'red' needs --reward-model", base=["score", "--rewarder", "red"]
    ),
    score_case("prompt-without-response", ["--prompt", "x"], "--prompt and --response go together"),
    score_case("neither-prompt-nor-input", [], "give either --prompt and --response, or --input FILE"),
    score_case(
        "prompt-and-input", ONE + ["--input", "{pairs}"], "give either --prompt and --response, or --input FILE"
    ),
    score_case("empty-response", ["--prompt", "x", "--response", ""], "--response: the response is empty"),
    score_case(
        "model-folder-missing",
        ONE,
        "the reward model folder {root}/absent does not exist",
        base=["score", "--rewarder", "red", "--reward-model", "{root}/absent"],
    ),
    score_case(
        "model-truncated",
        ONE,
        "{rm_trunc}/model.safetensors",
        "truncated or damaged",
        base=["score", "--rewarder", "red", "--reward-model", "{rm_trunc}"],
    ),
    score_case(
        "model-garbage",
        ONE,
        "{rm_garbage}/model.safetensors",
        "not a complete safetensors file",
        base=["score", "--rewarder", "abc", "--reward-model", "{rm_garbage}"],
    ),
    score_case(
        "model-zero-bytes",
        ONE,
        "{rm_zero}/model.safetensors (0 bytes)",
        base=["score", "--rewarder", "sparse", "--reward-model", "{rm_zero}"],
    ),
    score_case(
        "model-config-garbage",
        ONE,
        "{rm_badconfig}/config.json",
        "not a valid JSON file",
        base=["score", "--rewarder", "red", "--reward-model", "{rm_badconfig}"],
    ),
    score_case(
        "model-config-missing",
        ONE,
        "the reward model folder {rm_noconfig} has no config.json",
        base=["score", "--rewarder", "red", "--reward-model", "{rm_noconfig}"],
    ),
    score_case(
        "model-nan-weights",
        ONE,
        "not finite",
        "weights NaN or inf",
        base=["score", "--rewarder", "red", "--reward-model", "{rm_nan}"],
    ),
    score_case(
        "tokenizer-without-pad",
        ONE,
        "the tokenizer {rm_nopad}",
        "no pad token",
        base=["score", "--rewarder", "red", "--reward-model", "{rm_nopad}"],
    ),
    score_case(
        "tokenizer-larger-than-vocab",
        ONE,
        "outside the reward model's vocabulary of 40",
        base=["score", "--rewarder", "red", "--reward-model", "{rm_smallvocab}"],
    ),
    score_case(
        "policy-tokenizer-larger-than-vocab",
        ONE,
        "outside the model's vocabulary of 40",
        base=["score", "--rewarder", "implicit", "--policy", "{lm_smallvocab}", "--reference", "{lm_smallvocab}"],
    ),
    score_case("tokenizer-damaged", ONE + ["--tokenizer", "{tok_bad}"], "{tok_bad}/tokenizer.json", "damaged"),
    score_case(
        "tokenizer-missing",
        ONE + ["--tokenizer", "{root}/no-tok"],
        "the tokenizer folder {root}/no-tok does not exist",
    ),
    score_case(
        "causal-lm-as-reward-model",
        ONE,
        "{lm} holds a GPT2LMHeadModel checkpoint without a trained score head",
        base=["score", "--rewarder", "red", "--reward-model", "{lm}"],
    ),
    score_case(
        "policy-truncated",
        ONE,
        "{lm_trunc}/model.safetensors",
        "truncated or damaged",
        base=["score", "--rewarder", "implicit", "--policy", "{lm_trunc}", "--reference", "{lm}"],
    ),
    score_case(
        "world-missing",
        ONE + ["--world", "{root}/no-world"],
        "no world at {root}/no-world",
        base=["score", "--rewarder", "red"],
    ),
    score_case(
        "world-not-a-world",
        ONE + ["--world", "{empty_dir}"],
        "{empty_dir} is not a world folder",
        base=["score", "--rewarder", "red"],
    ),
    score_case(
        "world-truncated-model",
        ONE + ["--world", "{world_trunc}"],
        "{world_trunc}/reward-model/model.safetensors",
        "truncated or changed",
        base=["score", "--rewarder", "red"],
    ),
]

LABEL_CASES = [
    label_case(
        "input-empty",
        ["--input", "{zero_jsonl}", "--output", "{scratch}/{case}/l.jsonl"],
        "--input {zero_jsonl}: no pairs",
    ),
    label_case("no-reviser", ["--output", "{scratch}/{case}/l.jsonl"], "give --reviser", base=["label"]),
    label_case(
        "input-missing",
        ["--input", "{missing}", "--output", "{scratch}/{case}/l.jsonl"],
        "--input {missing}: no such file",
    ),
    label_case(
        "input-folder",
        ["--input", "{empty_dir}", "--output", "{scratch}/{case}/l.jsonl"],
        "--input {empty_dir}: is a folder",
    ),
    label_case(
        "input-bad-json",
        ["--input", "{l_bad_json}", "--output", "{scratch}/{case}/l.jsonl"],
        "--input {l_bad_json} line 2: not valid JSON",
    ),
    label_case(
        "input-binary",
        ["--input", "{binary}", "--output", "{scratch}/{case}/l.jsonl"],
        "--input {binary}: not UTF-8 text",
    ),
    label_case(
        "input-missing-field",
        ["--input", "{l_missing}", "--output", "{scratch}/{case}/l.jsonl"],
        "{l_missing} line 2: missing rejected",
    ),
    label_case(
        "input-empty-chosen",
        ["--input", "{l_empty_chosen}", "--output", "{scratch}/{case}/l.jsonl"],
        "{l_empty_chosen} line 1, 'chosen'",
        "is empty",
    ),
    label_case(
        "input-number-prompt",
        ["--input", "{l_number_prompt}", "--output", "{scratch}/{case}/l.jsonl"],
        "{l_number_prompt} line 1: 'prompt' must be text",
    ),
    label_case("limit-negative", LOUT + ["--limit", "-1"], "--limit: must be at least 0, got -1"),
    label_case("timeout-zero", LOUT + ["--timeout", "0"], "--timeout: must be greater than 0, got 0"),
    label_case("timeout-negative", LOUT + ["--timeout", "-5"], "--timeout: must be greater than 0, got -5"),
    label_case("timeout-nan", LOUT + ["--timeout", "nan"], "--timeout: expected a finite number, got 'nan'"),
    label_case("retries-negative", LOUT + ["--retries", "-1"], "--retries: must be at least 0, got -1"),
    label_case("concurrency-zero", LOUT + ["--concurrency", "0"], "--concurrency: must be at least 1, got 0"),
    label_case("show-negative", LOUT + ["--show", "-2"], "--show: must be at least 0, got -2"),
    label_case("max-new-tokens-zero", LOUT + ["--max-new-tokens", "0"], "--max-new-tokens: must be at least 1, got 0"),
    label_case("reviser-unknown", ["--reviser", "gpt"] + LOUT, "--reviser: invalid choice: 'gpt'", base=["label"]),
    label_case(
        "output-folder", ["--input", "{lpairs}", "--output", "{empty_dir}"], "--output {empty_dir}: is a folder"
    ),
    label_case(
        "output-read-only", ["--input", "{lpairs}", "--output", "{ro_file}"], "--output {ro_file}: is read-only"
    ),
    label_case(
        "output-of-other-pairs",
        ["--input", "{lpairs}", "--output", "{l_other}"],
        "{l_other}, record 0, is not the label of input pair 0",
    ),
    label_case(
        "output-of-more-pairs",
        ["--input", "{lpairs}", "--output", "{l_toomany}"],
        "{l_toomany}, record 0, is for pair 5",
        "the input has 2 pairs",
    ),
    label_case(
        "output-damaged-in-the-middle",
        ["--input", "{lpairs}", "--output", "{l_damaged}"],
        "{l_damaged} line 2",
        "damaged",
    ),
    label_case("html-folder", LOUT + ["--show", "1", "--html", "{empty_dir}"], "--html {empty_dir}: is a folder"),
    label_case(
        "show-missing-output",
        ["--show", "1", "--output", "{missing}"],
        "--show: {missing} does not exist",
        base=["label"],
    ),
    label_case(
        "show-damaged-output",
        ["--show", "1", "--output", "{l_damaged}"],
        "{l_damaged} line 2",
        "damaged",
        base=["label"],
    ),
    label_case(
        "tokenizer-missing",
        LOUT,
        "the tokenizer folder {root}/no-tok does not exist",
        base=["label", "--reviser", "openai", "--base-url", "{api}", "--model", "ok", "--tokenizer", "{root}/no-tok"],
    ),
    label_case(
        "tokenizer-damaged",
        LOUT,
        "{tok_bad}/tokenizer.json",
        "damaged",
        base=["label", "--reviser", "openai", "--base-url", "{api}", "--model", "ok", "--tokenizer", "{tok_bad}"],
    ),
    label_case(
        "tokenizer-not-given",
        LOUT,
        "--tokenizer DIR is needed",
        base=["label", "--reviser", "openai", "--model", "ok"],
    ),
    label_case(
        "openai-without-model",
        LOUT,
        "needs a model name (--model NAME or $OPENAI_MODEL)",
        base=["label", "--reviser", "openai", "--tokenizer", "{tok}", "--base-url", "{api}"],
    ),
    label_case(
        "openai-bad-url",
        LOUT,
        "--base-url 'ftp://example.org/v1': expected an http:// or https:// URL",
        base=[
            "label",
            "--reviser",
            "openai",
            "--tokenizer",
            "{tok}",
            "--model",
            "ok",
            "--base-url",
            "ftp://example.org/v1",
        ],
    ),
    label_case(
        "openai-key-refused",
        LOUT,
        "HTTP 401",
        "refused (auth)",
        "0 of 2 pairs are in {scratch}/{case}/labels.jsonl",
        base=[
            "label",
            "--reviser",
            "openai",
            "--tokenizer",
            "{tok}",
            "--model",
            "auth",
            "--base-url",
            "{api}",
            "--cache",
            "{cache}",
        ],
    ),
    label_case(
        "openai-model-missing",
        LOUT,
        "HTTP 404",
        "refused (missing)",
        base=[
            "label",
            "--reviser",
            "openai",
            "--tokenizer",
            "{tok}",
            "--model",
            "missing",
            "--base-url",
            "{api}",
            "--cache",
            "{cache}",
        ],
    ),
    label_case(
        "openai-unreachable",
        LOUT,
        "http://127.0.0.1:9/v1/chat/completions: cannot connect",
        base=[
            "label",
            "--reviser",
            "openai",
            "--tokenizer",
            "{tok}",
            "--model",
            "ok",
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--retries",
            "0",
            "--cache",
            "{cache}",
        ],
    ),
    label_case(
        "hf-model-missing",
        LOUT,
        "{root}/no-model does not exist",
        base=["label", "--reviser", "hf", "--tokenizer", "{tok}", "--model", "{root}/no-model"],
    ),
    label_case(
        "hf-model-truncated",
        LOUT,
        "{lm_trunc}/model.safetensors",
        "truncated or damaged",
        base=["label", "--reviser", "hf", "--tokenizer", "{tok}", "--model", "{lm_trunc}"],
    ),
    label_case(
        "world-not-a-world",
        ["--output", "{scratch}/{case}/l.jsonl"],
        "{empty_dir} is not a world folder",
        base=["label", "--reviser", "world", "--world", "{empty_dir}"],
    ),
    label_case(
        "world-unknown-split",
        ["--output", "{scratch}/{case}/l.jsonl", "--split", "dev"],
        "unknown split 'dev'",
        base=["label", "--reviser", "world", "--world", "{world}"],
    ),
]

WORLD_CASES = [
    Case(
        "world-build-out-is-a-file",
        ["world", "build", "--out", "{a_file}"],
        expect=("--out {a_file}: is a file, not a folder",),
    ),
    Case("world-build-out-read-only", ["world", "build", "--out", "{ro_dir}"], expect=("--out {ro_dir}", "read-only")),
    Case(
        "world-build-seed-negative",
        ["world", "build", "--seed", "-1", "--out", "{scratch}/w"],
        expect=("--seed: must be at least 0",),
    ),
    Case("world-build-size-unknown", ["world", "build", "--size", "huge"], expect=("--size: invalid choice: 'huge'",)),
    Case(
        "world-build-family-unknown",
        ["world", "build", "--families", "arithmetic", "poetry", "--out", "{scratch}/w"],
        expect=("families: unknown family 'poetry'", "multistep"),
    ),
    Case(
        "world-build-other-size",
        ["world", "build", "--out", "{world}", "--size", "small", "--seed", "3"],
        expect=("{world} holds a finished world of size 'tiny' and seed 3, not size 'small' seed 3",),
    ),
    Case(
        "world-build-other-seed",
        ["world", "build", "--out", "{world}", "--size", "small", "--seed", "4"],
        expect=("finished world of size 'tiny' and seed 3",),
    ),
    Case(
        "world-build-locked",
        ["world", "build", "--out", "{locked}", "--size", "small"],
        expect=("{locked} is in use by pid {holder_pid} (tokenreward world build",),
    ),
    Case("world-build-no-action", ["world"], expect=("the following arguments are required: ACTION",)),
    Case(
        "world-info-missing", ["world", "info", "--world", "{root}/no-world"], expect=("no world at {root}/no-world",)
    ),
    Case(
        "world-info-not-a-world",
        ["world", "info", "--world", "{empty_dir}"],
        expect=("{empty_dir} is not a world folder",),
    ),
    Case(
        "world-info-truncated",
        ["world", "info", "--world", "{world_trunc}"],
        expect=("{world_trunc}/reward-model/model.safetensors has", "truncated or changed"),
    ),
    Case(
        "world-info-file-missing",
        ["world", "info", "--world", "{world_missing}"],
        expect=("lacks its file data/pairs.test.jsonl",),
    ),
    Case(
        "world-info-build-state-damaged",
        ["world", "info", "--world", "{world_badstate}"],
        expect=("{world_badstate}/build-state.json is not valid JSON",),
    ),
    Case(
        "world-info-manifest-damaged",
        ["world", "info", "--world", "{world_badjson}"],
        expect=("{world_badjson}/world.json is not valid JSON",),
    ),
]

OTHER_CASES = [
    Case(
        "bench-credit-json-folder",
        ["bench", "credit", "--world", "{world}", "--json", "{empty_dir}"],
        expect=("--json {empty_dir}: is a folder",),
    ),
    Case(
        "bench-credit-json-read-only",
        ["bench", "credit", "--world", "{world}", "--json", "{ro_file}"],
        expect=("--json {ro_file}: is read-only",),
    ),
    Case(
        "bench-credit-limit-negative",
        ["bench", "credit", "--world", "{world}", "--limit", "-2"],
        expect=("--limit must be at least 0, got -2",),
    ),
    Case(
        "bench-credit-world-missing",
        ["bench", "credit", "--world", "{root}/no-world"],
        expect=("no world at {root}/no-world",),
    ),
    Case(
        "bench-rl-out-is-a-file",
        ["bench", "rl", "--world", "{world}", "--out", "{a_file}"],
        expect=("--out {a_file}: is a file, not a folder",),
    ),
    Case(
        "bench-rl-out-read-only",
        ["bench", "rl", "--world", "{world}", "--out", "{ro_dir}"],
        expect=("--out {ro_dir}", "read-only"),
    ),
    Case(
        "bench-preference-out-is-a-file",
        ["bench", "preference", "--world", "{world}", "--out", "{a_file}"],
        expect=("--out {a_file}: is a file, not a folder",),
    ),
    Case("bench-unknown", ["bench", "speed"], expect=("invalid choice: 'speed'",)),
    Case("train-unknown-method", ["train", "magic"], expect=("invalid choice: 'magic'",)),
    *(
        Case(
            f"train-reward-model-gguf-{kind}",
            ["train", "reward-model", "--policy", path, "--data", "{lpairs}", "--out", "{scratch}/{case}/out"],
            expect=(path, reason),
        )
        for kind, path, reason in (
            ("truncated", "{gguf_trunc}", "not a complete GGUF file"),
            ("garbage", "{gguf_garbage}", "not a GGUF file (it starts with b'garb'"),
            ("empty", "{gguf_zero}", "empty file (0 bytes), not a GGUF model"),
            ("unsupported", "{gguf_unsupported}", "GGUF architecture 'rwkv6' is not supported by transformers"),
            ("two-in-a-folder", "{gguf_two}", "holds 2 GGUF files and no config.json (a.gguf, b.gguf)"),
            ("missing", "{root}/no-such.gguf", "no such GGUF file"),
        )
    ),
    Case(
        "train-ppo-gguf-truncated",
        ["train", "ppo", "--world", "{world}", "--policy", "{gguf_trunc}", "--out", "{scratch}/{case}/out"],
        expect=("{gguf_trunc}", "not a complete GGUF file"),
    ),
    Case(
        "train-unknown-option",
        ["train", "sft", "--model", "{lm}", "--data", "{pairs}", "--bogus"],
        expect=("unrecognized arguments: --bogus",),
    ),
    Case("train-integer-flag-text", ["train", "sft", "--seed", "one"], expect=("--seed: invalid int value: 'one'",)),
    Case(
        "train-dpo-reference-vocabulary",
        [
            "train",
            "dpo",
            "--data",
            "{lpairs}",
            "--policy",
            "{lm}",
            "--reference",
            "{lm_othervocab}",
            "--out",
            "{scratch}/{case}/out",
        ],
        expect=("--reference has a vocabulary of 270 tokens and --policy one of 300",),
    ),
    Case(
        "train-dpo-tokenizer-larger-than-model",
        ["train", "dpo", "--data", "{lpairs}", "--policy", "{lm_smallvocab}", "--out", "{scratch}/{case}/out"],
        expect=("the tokenizer has 300 tokens but the --policy model's embeddings hold 40",),
    ),
    Case(
        "train-figa-tokenizer-larger-than-model",
        ["train", "figa", "--labels", "{labels}", "--policy", "{lm_smallvocab}", "--out", "{scratch}/{case}/out"],
        expect=("the tokenizer has 300 tokens but the --policy model's embeddings hold 40",),
    ),
    Case(
        "train-reward-model-two-way-head",
        ["train", "reward-model", "--data", "{lpairs}", "--model", "{rm_twolabels}", "--out", "{scratch}/{case}/out"],
        expect=("{rm_twolabels} holds a model with a 2-way head",),
    ),
    Case(
        "train-reward-model-pairs-all-equal",
        ["train", "reward-model", "--data", "{l_equal}", "--model", "{lm}", "--out", "{scratch}/{case}/out"],
        expect=("{l_equal}: in every pair chosen equals rejected",),
    ),
    Case(
        "train-reward-model-empty-data",
        ["train", "reward-model", "--data", "{zero_jsonl}", "--model", "{lm}", "--out", "{scratch}/{case}/out"],
        expect=("{zero_jsonl}: no preference pairs to train on",),
    ),
    Case(
        "train-sft-empty-data",
        ["train", "sft", "--data", "{zero_jsonl}", "--policy", "{lm}", "--out", "{scratch}/{case}/out"],
        expect=("{zero_jsonl}: no records to train on",),
    ),
    Case(
        "train-dpo-empty-data",
        ["train", "dpo", "--data", "{zero_jsonl}", "--policy", "{lm}", "--out", "{scratch}/{case}/out"],
        expect=("{zero_jsonl} has no rows",),
    ),
    Case(
        "train-dpo-pairs-all-equal",
        ["train", "dpo", "--data", "{l_equal}", "--policy", "{lm}", "--out", "{scratch}/{case}/out"],
        expect=("{l_equal}: no usable rows", "chosen identical to rejected"),
    ),
    *(
        Case(
            f"train-{name}-bad-row-line-{line}",
            ["train", name, "--data", f"{{{data}{line}}}", model, "{lm}", "--out", "{scratch}/{case}/out"],
            expect=(f"{{{data}{line}}} line {line}: {reason}",),
        )
        for line in (1, 2, 3)
        for name, data, model, reason in (
            ("sft", "sft_bad", "--policy", "neither prompt/completion nor messages"),
            ("reward-model", "l_bad", "--model", "lacks rejected"),
            ("dpo", "l_bad", "--policy", "no 'rejected' column"),
        )
    ),
    *(
        Case(
            f"train-{name}-malformed-line",
            ["train", name, "--data", "{l_bad_json}", model, "{lm}", "--out", "{scratch}/{case}/out"],
            expect=("{l_bad_json} line 2: not valid JSON",),
        )
        for name, model in (("sft", "--policy"), ("reward-model", "--model"), ("dpo", "--policy"))
    ),
    Case(
        "train-dpo-world-pairs-malformed-line",
        ["train", "dpo", "--world", "{world_badline}", "--out", "{scratch}/{case}/out"],
        expect=("{world_badline}/data/pairs.reward.jsonl line 2: not valid JSON",),
    ),
    Case(
        "demo-steps-zero",
        ["demo", "--steps", "0", "--out", "{scratch}/demo"],
        expect=("--steps must be at least 1, got 0",),
    ),
    Case(
        "demo-heatmaps-negative",
        ["demo", "--heatmaps", "-1", "--out", "{scratch}/demo"],
        expect=("--heatmaps must be at least 0, got -1",),
    ),
    Case(
        "demo-learning-rate-zero",
        ["demo", "--learning-rate", "0", "--out", "{scratch}/demo"],
        expect=("--learning-rate must be greater than 0",),
    ),
    Case("demo-out-is-a-file", ["demo", "--out", "{a_file}"], expect=("--out {a_file}: is a file, not a folder",)),
    Case(
        "demo-world-not-a-world",
        ["demo", "--world", "{empty_dir}", "--out", "{scratch}/demo"],
        expect=("{empty_dir} is not a world folder",),
    ),
    Case(
        "serve-port-out-of-range",
        ["serve", "--rewarder", "red", "--reward-model", "{rm}", "--port", "70000"],
        expect=("--port must lie in [0, 65535], got 70000",),
    ),
    Case(
        "serve-max-batch-zero",
        ["serve", "--rewarder", "red", "--reward-model", "{rm}", "--max-batch", "0"],
        expect=("--max-batch must be at least 1, got 0",),
    ),
    Case(
        "serve-max-wait-negative",
        ["serve", "--rewarder", "red", "--reward-model", "{rm}", "--max-wait-ms", "-1"],
        expect=("--max-wait-ms must be a finite number of at least 0",),
    ),
    Case(
        "serve-max-wait-nan",
        ["serve", "--rewarder", "red", "--reward-model", "{rm}", "--max-wait-ms", "nan"],
        expect=("--max-wait-ms must be a finite number of at least 0, got nan",),
    ),
    Case(
        "serve-drain-timeout-zero",
        ["serve", "--rewarder", "red", "--reward-model", "{rm}", "--drain-timeout", "0"],
        expect=("--drain-timeout must be a finite positive number",),
    ),
    Case(
        "serve-model-truncated",
        ["serve", "--rewarder", "red", "--reward-model", "{rm_trunc}", "--port", "0"],
        expect=("{rm_trunc}/model.safetensors", "truncated or damaged"),
    ),
    Case(
        "serve-option-misspelt",
        ["serve", "--rewarder", "red", "--reward-model", "{rm}", "--port", "0", "--option", "kep_sum=1"],
        expect=("rewarder 'red' takes no option 'kep_sum'; its options: beta_c",),
    ),
    Case("unknown-command", ["rewards"], expect=("invalid choice: 'rewards'",)),
]


# ---------------------------------------------------------------- the Python API


def _rewarder(fx, path_key="rm", name="red"):
    from tokenreward.rewards import build_rewarder

    return build_rewarder(name, reward_model=str(fx[path_key]), device="cpu")


def _tokenizer(fx, key="tok"):
    from tokenreward.models import load_tokenizer

    return load_tokenizer(str(fx[key]))


def _atomic_failure(fx):
    from tokenreward.io import atomic_write

    with atomic_write(fx["old"]) as handle:
        handle.write("half a new file")
        raise ValueError("the run failed midway")


def _busy(fx):
    from tokenreward.io import FolderLock

    FolderLock(fx["locked"], "tokenreward train").acquire()


def _reviser(**options):
    from tokenreward.revisers.openai import OpenAIReviser

    return OpenAIReviser(**{"model": "ok", "base_url": "http://127.0.0.1:9/v1", **options})


def _world_build(fx, folder, size="tiny", seed=3):
    from tokenreward.worldbuild.build import build_world

    build_world(fx[folder], size=size, seed=seed, progress=False)


def _api(id: str, call, *expect: str, raises=(ValueError,)) -> Case:
    return Case(f"api-{id}", call=call, expect=expect, raises=raises)


def _from_lists(rewards, sequence=(1.0,), responses=("ab",), offsets=(((0, 1), (1, 2)),)):
    from tokenreward.rewards import TokenRewards

    TokenRewards.from_lists("test", list(responses), [list(o) for o in offsets], rewards, list(sequence))


API_CASES = [
    _api(
        "score-two-strings",
        lambda fx: _rewarder(fx).score("What is 17 + 25?", " 42 exactly, yes."),
        "prompts is a single string; pass a list",
        raises=(TypeError,),
    ),
    _api(
        "load-tokenizer-gguf-garbage", lambda fx: _tokenizer(fx, "gguf_garbage"), "{gguf_garbage}", "not a GGUF file"
    ),
    _api(
        "build-rewarder-unknown",
        lambda fx: __import__("tokenreward.rewards").rewards.build_rewarder("nope"),
        "unknown rewarder 'nope'",
        raises=(KeyError,),
    ),
    _api(
        "build-rewarder-missing-resource",
        lambda fx: __import__("tokenreward.rewards").rewards.build_rewarder("red"),
        "rewarder 'red' needs --reward-model",
    ),
    _api(
        "load-reward-model-truncated",
        lambda fx: _rewarder(fx, "rm_trunc"),
        "{rm_trunc}/model.safetensors",
        "truncated",
    ),
    _api("load-reward-model-zero", lambda fx: _rewarder(fx, "rm_zero"), "{rm_zero}/model.safetensors (0 bytes)"),
    _api(
        "load-causal-lm-truncated",
        lambda fx: __import__("tokenreward.models").models.load_causal_lm(str(fx["lm_trunc"])),
        "{lm_trunc}/model.safetensors",
        "truncated",
    ),
    _api("load-tokenizer-damaged", lambda fx: _tokenizer(fx, "tok_bad"), "{tok_bad}/tokenizer.json", "damaged"),
    _api(
        "load-tokenizer-missing",
        lambda fx: __import__("tokenreward.models").models.load_tokenizer(str(fx["root"] / "gone")),
        "{root}/gone does not exist",
        raises=(FileNotFoundError,),
    ),
    _api("score-length-mismatch", lambda fx: _rewarder(fx).score(["a"], [" b", " c"]), "1 prompts but 2 responses"),
    _api("score-empty-response", lambda fx: _rewarder(fx).score(["a"], [""]), "response 0 is empty"),
    _api(
        "score-response-not-text",
        lambda fx: _rewarder(fx).score(["a"], [3]),
        "response 0: expected a string",
        raises=(TypeError,),
    ),
    _api(
        "score-nan-model",
        lambda fx: _rewarder(fx, "rm_nan").score(["a"], [" b"]),
        "not finite",
        raises=(FloatingPointError,),
    ),
    _api(
        "score-over-long",
        lambda fx: _rewarder(fx).score(["word " * 300], [" b"]),
        "longer than the model's context of 128",
    ),
    _api(
        "score-small-vocab",
        lambda fx: _rewarder(fx, "rm_smallvocab").score(["What is 17 + 25?"], [" 42."]),
        "outside the reward model's vocabulary",
    ),
    _api("score-tokenizer-without-pad", lambda fx: _rewarder(fx, "rm_nopad").score(["a"], [" b"]), "no pad token"),
    _api("token-rewards-ragged", lambda fx: _from_lists([[1.0]]), "response 0 has 1 rewards for 2 tokens"),
    _api(
        "token-rewards-nan", lambda fx: _from_lists([[1.0, float("nan")]]), "not finite", raises=(FloatingPointError,)
    ),
    _api("token-rewards-lengths", lambda fx: _from_lists([[1.0, 2.0]], sequence=(1.0, 2.0)), "differ in length"),
    _api(
        "project-rewards-bad-offsets",
        lambda fx: __import__("tokenreward.align").align.project_rewards([(0, 5)], [1.0], [(0, 1)], 3),
        "token 0 has offsets (0, 5)",
    ),
    _api("reviser-timeout-zero", lambda fx: _reviser(timeout=0), "need timeout > 0"),
    _api("reviser-bad-url", lambda fx: _reviser(base_url="localhost:8000"), "expected an http:// or https:// URL"),
    _api(
        "read-labels-missing",
        lambda fx: __import__("tokenreward.labels").labels.read_labels(fx["missing"]),
        "{missing} does not exist",
        raises=(FileNotFoundError,),
    ),
    _api(
        "read-labels-only-failed",
        lambda fx: __import__("tokenreward.labels").labels.read_labels(fx["l_other"]),
        "{l_other} holds no labelled record",
    ),
    _api(
        "split-by-prompt-fraction",
        lambda fx: __import__("tokenreward.labels").labels.split_by_prompt([], 1.5, 0),
        "must lie in [0, 1)",
    ),
    _api(
        "label-pair-tokenizer-without-pad",
        lambda fx: __import__("tokenreward.labels").labels.label_pair(_tokenizer(fx, "rm_nopad"), "Hi", " a", " b"),
        "no pad token",
    ),
    _api(
        "open-world-not-a-world",
        lambda fx: __import__("tokenreward.world").world.open_world(fx["empty_dir"]),
        "{empty_dir} is not a world folder",
        raises=(FileNotFoundError,),
    ),
    _api(
        "open-world-truncated",
        lambda fx: __import__("tokenreward.world").world.open_world(fx["world_trunc"]),
        "truncated or changed",
    ),
    _api(
        "world-unknown-split",
        lambda fx: __import__("tokenreward.world").world.open_world(fx["world"]).pairs("dev"),
        "unknown split 'dev'",
    ),
    _api(
        "build-world-other-seed",
        lambda fx: _world_build(fx, "world", seed=9),
        "finished world of size 'tiny' and seed 3",
    ),
    _api(
        "build-world-flipped-byte",
        lambda fx: _world_build(fx, "world_flip"),
        "{world_flip}/policy/model.safetensors changed",
        "SHA-256 differs",
    ),
    _api(
        "build-world-truncated",
        lambda fx: _world_build(fx, "world_trunc"),
        "{world_trunc}/reward-model/model.safetensors",
        "truncated or changed",
    ),
    _api(
        "build-world-file-missing",
        lambda fx: _world_build(fx, "world_missing"),
        "lacks its file data/pairs.test.jsonl",
        raises=(FileNotFoundError,),
    ),
    _api("build-world-into-a-file", lambda fx: _world_build(fx, "a_file"), "{a_file}: is a file, not a folder"),
    _api(
        "build-world-unknown-size", lambda fx: _world_build(fx, "world", size="medium"), "unknown world size 'medium'"
    ),
    _api(
        "folder-lock-busy", _busy, "{locked} is in use by pid {holder_pid}", raises=(RuntimeError,)
    ),  # tokenreward.io.FolderBusyError
    _api("atomic-write-failure-keeps-the-file", _atomic_failure, "the run failed midway"),
    _api(
        "check-writable-folder",
        lambda fx: __import__("tokenreward.io").io.check_writable(fx["empty_dir"], "--output"),
        "--output {empty_dir}: is a folder",
    ),
    _api(
        "check-writable-read-only-folder",
        lambda fx: __import__("tokenreward.io").io.check_writable(fx["ro_dir"] / "x", "--output"),
        "folder {ro_dir} is read-only",
    ),
    _api(
        "read-jsonl-damaged-middle",
        lambda fx: __import__("tokenreward.io").io.read_jsonl_for_append(fx["l_damaged"]),
        "{l_damaged} line 2: not a JSON object",
    ),
    _api(
        "read-jsonl-not-objects",
        lambda fx: __import__("tokenreward.io").io.read_jsonl(fx["list_row"], "--input"),
        "--input {list_row} line 1: expected a JSON object, got list",
    ),
]


def _serve(id: str, path: str, body: Any, *expect: str) -> Case:
    """A request to the served application that must be refused 4xx with `expect` in its message."""
    return _api(f"serve-{id}", lambda fx: fx["served"].post(path, body), *expect)


def _client(kind: str = "ok", **settings):
    from tokenreward.client import TokenRewardClient

    def make(fx):
        return TokenRewardClient(fx["rewards_api"].url(kind), **{"retries": 1, "backoff": 0.01, **settings})

    return make


def _client_case(id: str, kind: str, call, *expect: str) -> Case:
    from tokenreward.client import TokenRewardError

    return _api(f"client-{id}", lambda fx: call(_client(kind)(fx)), *expect, raises=(TokenRewardError,))


ONE_REWARD = {"query": ["Hi Hello!"], "prompts": ["Hi"], "labels": [None]}
ONE_PAIR = {"prompts": ["Hi"], "responses": [" Hello!"]}

SERVE_CASES = [
    _serve(
        "option-bool-as-number",
        "/get_reward",
        {**ONE_REWARD, "options": {"keep_sum": 2}},
        "HTTP 400",
        "options.keep_sum: expected a boolean, got 2",
    ),
    _serve(
        "option-bool-as-text",
        "/v1/token_rewards",
        {**ONE_PAIR, "options": {"keep_sum": "maybe"}},
        "HTTP 400",
        "options.keep_sum: expected a boolean, got 'maybe'",
    ),
    _serve(
        "option-float-infinite",
        "/v1/token_rewards",
        b'{"prompts": ["Hi"], "responses": [" Hello!"], "options": {"beta_c": 1e999}}',
        "HTTP 400",
        "options.beta_c: expected a finite number, got inf",
    ),
    _serve(
        "option-float-as-bool",
        "/get_reward",
        {**ONE_REWARD, "options": {"beta_c": True}},
        "HTTP 400",
        "options.beta_c: expected a number, got a boolean",
    ),
    _serve(
        "option-names-unknown",
        "/get_reward",
        {**ONE_REWARD, "options": {"beta": 0.5, "gama": 1}},
        "HTTP 400",
        "options.beta, options.gama: not options of this rewarder (options: alpha, beta_c, keep_sum)",
    ),
    _serve(
        "nan-literal",
        "/v1/token_rewards",
        b'{"prompts": ["Hi"], "responses": [" Hello!"], "options": {"alpha": NaN}}',
        "HTTP 400",
        "body: not valid JSON (NaN is not a JSON number)",
    ),
    _serve(
        "id-outside-vocabulary",
        "/get_reward",
        {"query": ["x", "y"], "prompts": ["Hi", "Hi"], "response_ids": [[5, 6], [5, 6, 7, 50000]]},
        "HTTP 400",
        "response_ids[1][3]: id 50000 is outside the policy tokenizer's vocabulary (0..",
    ),
    _serve(
        "id-negative",
        "/get_reward",
        {"query": ["x"], "prompts": ["Hi"], "response_ids": [[5, -1]]},
        "HTTP 400",
        "response_ids[0][1]: id -1 is outside the policy tokenizer's vocabulary",
    ),
    _serve(
        "id-bool",
        "/get_reward",
        {"query": ["x"], "prompts": ["Hi"], "response_ids": [[True]]},
        "HTTP 400",
        "response_ids[0][0]: expected an integer token id, got a boolean",
    ),
    _serve(
        "id-fraction",
        "/get_reward",
        {"query": ["x"], "prompts": ["Hi"], "response_ids": [[5, 6.5]]},
        "HTTP 400",
        "response_ids[0][1]: expected an integer token id, got 6.5",
    ),
    _serve(
        "nested-100000-deep",
        "/get_reward",
        b"[" * 100_000 + b"]" * 100_000,
        "HTTP 400",
        "body: arrays or objects nested too deeply to read",
    ),
    _serve(
        "lone-surrogate-response",
        "/v1/token_rewards",
        b'{"prompts": ["Hi"], "responses": [" He\\ud800llo"]}',
        "HTTP 400",
        "responses[0]: not valid Unicode (lone surrogate \\ud800 at character 3)",
    ),
    _serve(
        "lone-surrogate-query",
        "/get_reward",
        b'{"query": ["Hi \\udc00"], "prompts": ["Hi"]}',
        "HTTP 400",
        "query[0]: not valid Unicode (lone surrogate \\udc00 at character 3)",
    ),
]

CLIENT_CASES = [
    _client_case(
        "html-answer",
        "html",
        lambda c: c.get_reward(["p a"], ["p"]),
        "/html/get_reward: HTTP 200 answer is not JSON (text/html)",
    ),
    _client_case(
        "json-without-results",
        "no-results",
        lambda c: c.token_rewards(["p"], [" a"]),
        "/no-results/v1/token_rewards: unusable answer: no 'results' list",
    ),
    _client_case(
        "too-few-records", "short", lambda c: c.token_rewards(["p"], [" a"]), "unusable answer: 0 results for 1 pairs"
    ),
    _client_case(
        "nan-reward",
        "nan",
        lambda c: c.get_reward(["p a"], ["p"]),
        "unusable answer: 'rewards' holds something other than finite numbers",
    ),
    _client_case(
        "proxy-502-page", "html-502", lambda c: c.health(), "gave up after 2 attempt(s)", "HTTP 502: <html><body> <h1>"
    ),
    _api("client-timeout-nan", lambda fx: _client(timeout=float("nan"))(fx), "timeout must be a finite number > 0"),
    _api(
        "client-retries-fraction", lambda fx: _client(retries=2.5)(fx), "retries must be a whole number >= 0, got 2.5"
    ),
    _api(
        "client-url-bad-port",
        lambda fx: __import__("tokenreward.client").client.TokenRewardClient("http://127.0.0.1:99999"),
        "server URL 'http://127.0.0.1:99999' is malformed",
    ),
    _api(
        "client-float-tensor-ids",
        lambda fx: _client()(fx).get_reward(["p a"], ["p"], response_ids=[torch.tensor([1.0, 2.5])]),
        "response_ids[0][0]: expected an integer token id, got float",
    ),
]

# ---------------------------------------------------------------- numbers and method-specific settings

RUN = ["--out", "{root}/runs/{case}"]  # outside the scratch folder: a refused run must write nothing there


def train_case(id: str, method: str, args: list[str], *expect: str) -> Case:
    return Case(f"train-{method}-{id}", argv=["train", method, *args, *RUN], expect=expect)


def _trl_config(name: str, **values):
    from tokenreward.integrations.trl import preference

    return getattr(preference, name)(output_dir="unused", bf16=False, use_cpu=True, **values)


def _ppo_config(**values):
    from tokenreward.trainers.ppo.config import PPOConfig

    return PPOConfig(out="unused", **values)


def _preference_config(**values):
    from tokenreward.trainers.preference import PreferenceConfig

    return PreferenceConfig(out="unused", **values)


VALIDATION_CASES = [
    # every number finite (inf, -inf, nan), whole numbers for int fields
    train_case(
        "learning-rate-inf", "dpo", ["--learning-rate", "inf"], "--learning-rate must be a finite number, got inf"
    ),
    train_case(
        "warmup-ratio-inf", "dpo", ["--warmup-ratio", "inf"], "--warmup-ratio must be a finite number, got inf"
    ),
    train_case("gamma-nan", "simpo", ["--gamma", "nan"], "--gamma must be a finite number, got nan"),
    train_case(
        "learning-rate-inf", "ppo", ["--learning-rate", "inf"], "--learning-rate must be a finite number, got inf"
    ),
    train_case("kl-coef-inf", "rloo", ["--kl-coef", "inf"], "--kl-coef must be a finite number, got inf"),
    train_case("alpha-minus-inf", "figa", ["--alpha=-inf"], "--alpha must be a finite number, got -inf"),
    train_case(
        "max-grad-norm-nan",
        "sft",
        ["--model", "{lm}", "--data", "{pairs}", "--max-grad-norm", "nan"],
        "--max-grad-norm must be a finite number, got nan",
    ),
    # upper bounds and cross-field ranges
    train_case("gamma-above-1", "ppo", ["--gamma", "5"], "--gamma must be at most 1.0, got 5.0"),
    train_case("lam-above-1", "ppo", ["--lam", "2"], "--lam must be at most 1.0, got 2.0"),
    train_case(
        "warmup-ratio-above-1", "dpo", ["--warmup-ratio", "1.5"], "--warmup-ratio must be at most 1.0, got 1.5"
    ),
    train_case("sepo-ratio-above-1", "sepo", ["--sepo-ratio", "2"], "--sepo-ratio must be at most 1.0, got 2.0"),
    train_case(
        "ce-low-above-ce-high", "figa", ["--ce-low", "2", "--ce-high", "1"], "--ce-low must be below --ce-high"
    ),
    train_case("ce-low-negative", "figa", ["--ce-low=-1"], "--ce-low must be at least 0.0, got -1.0"),
    train_case(
        "eval-fraction-1", "discriminator", ["--eval-fraction", "1"], "--eval-fraction must be less than 1.0, got 1.0"
    ),
    Case("bench-rl-jobs-zero", ["bench", "rl", "--jobs", "0", *RUN], expect=("--jobs must be at least 1, got 0",)),
    # a method-specific flag the method does not read
    train_case("gamma-unused", "dpo", ["--gamma", "3"], "--gamma: dpo does not use it (used by: simpo, simpo_reg)"),
    train_case(
        "guide-policy-unused", "dpo", ["--guide-policy", "{lm}"], "--guide-policy: dpo does not use it (used by:"
    ),
    train_case("alpha-unused", "tdpo1", ["--alpha", "0.3"], "--alpha: tdpo1 does not use it (used by: dpo_reg"),
    train_case(
        "sepo-ratio-unused", "simpo", ["--sepo-ratio", "0.5"], "--sepo-ratio: simpo does not use it (used by: sepo)"
    ),
    train_case("reward-model-unused", "simpo", ["--reward-model", "{rm}"], "--reward-model: simpo does not use it"),
    train_case(
        "critic-learning-rate-unused",
        "rloo",
        ["--critic-learning-rate", "1e-3"],
        "--critic-learning-rate: --estimator rloo_token has no critic and does not use it (used by: gae)",
    ),
    train_case("gamma-unused", "remax", ["--gamma", "0.9"], "--gamma: --estimator remax_token has no critic"),
    # rewarder options checked against the rewarder's constructor
    train_case(
        "rewarder-option-unknown",
        "ppo",
        ["--rewarder", "red", "--rewarder-options", "kep_sum=true"],
        "--rewarder-options kep_sum: rewarder 'red' does not take it (it takes reward_model,",
    ),
    train_case(
        "rewarder-option-infinite",
        "ppo",
        ["--rewarder", "red", "--rewarder-options", "beta_c=inf"],
        "--rewarder-options beta_c takes a finite number, got 'inf'",
    ),
    train_case("rewarder-unknown", "ppo", ["--rewarder", "nosuch"], "--rewarder 'nosuch' is not registered"),
    # the Python API: a bool is not a number; the TRL configs check what the CLI checks
    _api(
        "config-int-given-bool", lambda fx: _preference_config(steps=True), "--steps must be a whole number, got True"
    ),
    _api("config-float-given-bool", lambda fx: _ppo_config(gamma=True), "--gamma must be a number, got True"),
    _api(
        "config-int-given-float",
        lambda fx: _ppo_config(batch_size=2.5),
        "--batch-size must be a whole number, got 2.5",
    ),
    _api(
        "trl-rewarder-option-unknown",
        lambda fx: _trl_config("TRegDPOConfig", rewarder_options={"kep": 1}),
        "rewarder_options.kep: rewarder 'contrastive' does not take it",
    ),
    _api(
        "trl-rewarder-option-bool-for-number",
        lambda fx: _trl_config("SePOConfig", token_rewarder="red", rewarder_options={"beta_c": True}),
        "rewarder_options.beta_c: expected a number, got a boolean",
    ),
    _api(
        "trl-tdpo1-alpha-unused",
        lambda fx: _trl_config("TDPOConfig", tdpo_variant="tdpo1", alpha=0.9),
        "alpha: tdpo1 does not use it (used by: tdpo2)",
    ),
]


CASES = (
    SCORE_CASES + LABEL_CASES + WORLD_CASES + OTHER_CASES + VALIDATION_CASES + API_CASES + SERVE_CASES + CLIENT_CASES
)
