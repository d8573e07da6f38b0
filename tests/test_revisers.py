"""Revisers. The OpenAI-compatible client is tested against a real HTTP server on 127.0.0.1
that speaks the chat-completions protocol and answers with the world oracle's revision."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tokenreward.revisers.base import REVISERS, ReviserError, RevisionRequest, build_reviser
from tokenreward.revisers.openai import OpenAIReviser
from tokenreward.revisers.prompt import parse_reply, reviser_prompt


def between(text: str, start: str, end: str) -> str:
    return re.search(re.escape(start) + r"\n(.*?)\n" + re.escape(end), text, flags=re.S).group(1)


class ChatServer:
    """A chat-completions endpoint. The model name picks the behaviour:
    `oracle` answers; `slow-once` / `error-once` first time out / answer 500 for each request
    and answer on the retry; `always-500`, `always-slow` never answer; `no-markers` answers
    without the markers; `bad-request` answers 400."""

    def __init__(self, revise, delay: float):
        self.revise, self.delay = revise, delay
        self.calls: list[dict] = []
        self.seen: set[tuple[str, str]] = set()
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.calls.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    status, payload = server.answer(body)
                    data = json.dumps(payload).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (the timeout case)
                finally:
                    with server.lock:
                        server.in_flight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, body):
        model, content = body["model"], body["messages"][-1]["content"]
        context = between(content, "<|Start of Context|>", "<|End of Context|>")
        rejected = between(content, "<|Start of Non-Preferred Response|>", "<|End of Non-Preferred Response|>")
        with self.lock:
            first = (model, content) not in self.seen
            self.seen.add((model, content))
        time.sleep(self.delay)  # a little work, so that concurrent requests overlap
        if model == "always-slow" or (model == "slow-once" and first):
            time.sleep(1.5)
        if model == "always-500" or (model == "error-once" and first):
            return 500, {"error": {"message": "internal error"}}
        if model == "bad-request":
            return 400, {"error": {"message": "unknown model"}}
        if model == "no-markers":
            text = "I think the response is fine as it is."
        else:
            text = (
                "<|Start of Reasoning|>\nThe non-preferred response has defects the preferred one avoids.\n"
                "<|End of Reasoning|>\n\n<|Start of Modified Response|>\n"
                f"{self.revise(context, rejected)}\n<|End of Modified Response|>"
            )
        return 200, {
            "id": "x",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
        }

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def oracle_pairs(small_world):
    """(prompt record, rejected, chosen) from the world's reward split, and the oracle."""
    from tokenreward.world.oracle import revise

    records = {r["prompt"]: r for r in small_world.prompts("reward")}
    pairs = [p for p in small_world.pairs("reward") if p["prompt"] in records][:8]
    assert len(pairs) == 8
    by_context = {p.strip(): r for p, r in records.items()}
    return [(records[p["prompt"]], p["rejected"], p["chosen"]) for p in pairs], lambda ctx, rej: revise(
        by_context[ctx], rej
    )


@pytest.fixture
def server(oracle_pairs):
    srv = ChatServer(oracle_pairs[1], delay=0.05)
    yield srv
    srv.close()


def requests_of(oracle_pairs):
    return [RevisionRequest(record["prompt"], rejected, chosen) for record, rejected, chosen in oracle_pairs[0]]


def test_success_matches_the_oracle_and_is_cached(server, oracle_pairs, tmp_path, monkeypatch):
    from tokenreward.world.oracle import revise

    monkeypatch.setenv("TEST_REVISER_KEY", "sk-test")
    options = dict(
        model="oracle",
        base_url=server.url,
        api_key_env="TEST_REVISER_KEY",
        concurrency=3,
        cache_dir=tmp_path / "cache",
    )
    reviser = OpenAIReviser(**options)
    requests = requests_of(oracle_pairs)
    results = reviser.revise_batch(requests)
    for (record, rejected, _), result in zip(oracle_pairs[0], results):
        assert result.ok, result.failure
        assert result.revision == revise(record, rejected)
        assert result.reasoning == "The non-preferred response has defects the preferred one avoids."
    assert len(server.calls) == len(requests)
    assert 1 < server.max_in_flight <= 3
    call = server.calls[0]
    assert call["path"] == "/v1/chat/completions"
    assert call["auth"] == "Bearer sk-test"
    assert call["body"]["messages"][0]["content"].startswith("Below is an instruction that describes a task.")
    # a rerun with the same cache never reaches the server
    again = OpenAIReviser(**options).revise_batch(requests)
    assert [r.revision for r in again] == [r.revision for r in results]
    assert len(server.calls) == len(requests)


def test_timeout_is_retried(server, oracle_pairs):
    reviser = OpenAIReviser(
        model="slow-once", base_url=server.url, timeout=0.5, retries=2, backoff=0.01, concurrency=2
    )
    results = reviser.revise_batch(requests_of(oracle_pairs)[:2])
    assert all(r.ok for r in results)
    assert reviser.stats["retries"] == 2 and len(server.calls) == 4


def test_timeout_that_persists_fails_the_pair(server, oracle_pairs):
    reviser = OpenAIReviser(model="always-slow", base_url=server.url, timeout=0.3, retries=1, backoff=0.01)
    result = reviser.revise_batch(requests_of(oracle_pairs)[:1])[0]
    assert not result.ok and result.request_failed
    assert result.failure == "request failed: no complete reply within the 0.3 s deadline (gave up after 2 attempts)"


def test_http_500_is_retried_then_gives_up(server, oracle_pairs):
    reviser = OpenAIReviser(model="error-once", base_url=server.url, retries=3, backoff=0.01)
    result = reviser.revise_batch(requests_of(oracle_pairs)[:1])[0]
    assert result.ok and len(server.calls) == 2
    failing = OpenAIReviser(model="always-500", base_url=server.url, retries=2, backoff=0.01)
    failed = failing.revise_batch(requests_of(oracle_pairs)[:1])[0]
    assert failed.request_failed and re.search(r"HTTP 500.*gave up after 3 attempts", failed.failure)
    assert len(server.calls) == 2 + 3


def test_client_errors_are_not_retried(server, oracle_pairs):
    reviser = OpenAIReviser(model="bad-request", base_url=server.url, retries=3, backoff=0.01)
    result = reviser.revise_batch(requests_of(oracle_pairs)[:1])[0]
    assert result.request_failed and result.failure.startswith("request failed: HTTP 400: ")
    assert "unknown model" in result.failure
    assert len(server.calls) == 1


def test_reply_without_markers_is_recorded_as_failed(server, oracle_pairs):
    reviser = OpenAIReviser(model="no-markers", base_url=server.url)
    result = reviser.revise_batch(requests_of(oracle_pairs)[:1])[0]
    assert not result.ok and result.revision is None
    assert "no <|Start of Modified Response|> marker" in result.failure
    assert result.reply == "I think the response is fine as it is."


def test_unreachable_server_raises(oracle_pairs):
    reviser = OpenAIReviser(model="oracle", base_url="http://127.0.0.1:9/v1", retries=1, backoff=0.01, timeout=1)
    with pytest.raises(ReviserError, match="gave up after 2 attempts"):
        reviser.revise_batch(requests_of(oracle_pairs)[:1])


def test_parse_reply_cases():
    reply = "<|Start of Reasoning|>\nwhy\n<|End of Reasoning|>\n<|Start of Modified Response|>\n  Better text. \n<|End of Modified Response|>"
    parsed = parse_reply(reply, " Bad text.\n")
    assert parsed.ok and parsed.revision == " Better text.\n" and parsed.reasoning == "why"
    no_reasoning = parse_reply("<|Start of Modified Response|>x<|End of Modified Response|>", "y")
    assert no_reasoning.revision == "x" and no_reasoning.reasoning is None
    assert "no <|End of Modified Response|>" in parse_reply("<|Start of Modified Response|> x", "y").failure
    assert "empty" in parse_reply("<|Start of Modified Response|>\n\n<|End of Modified Response|>", "y").failure


def test_prompt_holds_the_pair_and_a_rendered_conversation():
    text = reviser_prompt(
        [
            {"role": "user", "content": "Hi?"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "Sum 2+2?"},
        ],
        " 5",
        " 4",
    )
    assert "<|Start of Context|>\n###Human: Hi?\n###Assistant: Hello.\n###Human: Sum 2+2?\n<|End of Context|>" in text
    assert "<|Start of Preferred Response|>\n4\n<|End of Preferred Response|>" in text
    assert "<|Start of Non-Preferred Response|>\n5\n<|End of Non-Preferred Response|>" in text


def test_registry_and_missing_model(monkeypatch):
    assert {"openai", "hf", "world"} <= set(REVISERS.names())
    monkeypatch.delenv("OPENAI_MODEL", raising=False)
    with pytest.raises(ValueError, match="needs a model name"):
        build_reviser("openai", base_url="http://127.0.0.1:9/v1")


def test_hf_reviser_records_unparsable_generations_as_failed(tokenizer):
    from tokenreward.testing import tiny_causal_lm

    model = tiny_causal_lm("llama", tokenizer)
    model.config.max_position_embeddings = 4096  # the Appendix A prompt is long for a tiny BPE vocabulary
    reviser = build_reviser("hf", model=model, tokenizer=tokenizer, max_new_tokens=5, device="cpu")
    results = reviser.revise_batch(
        [RevisionRequest("What is 2+2?", " 5", " 4"), RevisionRequest("Hi", " go away", " hello")]
    )
    assert len(results) == 2
    assert all(not r.ok and "no <|Start of Modified Response|> marker" in r.failure for r in results)


def test_world_reviser_is_the_oracle(small_world, oracle_pairs):
    from tokenreward.world.oracle import revise

    reviser = build_reviser("world", world=small_world)
    results = reviser.revise_batch(requests_of(oracle_pairs) + [RevisionRequest("not a world prompt", " a", " b")])
    for (record, rejected, _), result in zip(oracle_pairs[0], results):
        assert result.revision == revise(record, rejected)
    assert "not one of the world's prompts" in results[-1].failure


def test_hf_reviser_uses_the_chat_template_when_there_is_one(tokenizer):
    from tokenreward.testing import tiny_causal_lm, train_tokenizer

    template = "{% for m in messages %}[{{ m.role }}] {{ m.content }}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}"
    chat_tokenizer = train_tokenizer(chat_template=template)
    reviser = build_reviser("hf", model=tiny_causal_lm("gpt2", chat_tokenizer), tokenizer=chat_tokenizer, device="cpu")
    request = RevisionRequest("What is 2+2?", " 5", " 4")
    text = reviser_prompt(request.prompt, request.rejected, request.chosen)
    assert chat_tokenizer.decode(reviser.prompt_ids(request)) == f"[user] {text}[assistant]"
    plain = build_reviser("hf", model=tiny_causal_lm("gpt2", tokenizer), tokenizer=tokenizer, device="cpu")
    assert plain.prompt_ids(request) == tokenizer(text)["input_ids"]
