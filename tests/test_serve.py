"""`tokenreward serve` over a real uvicorn server on a free loopback port, and its client.

Records are checked against `tokenreward score --format json` for the same inputs, OpenRLHF's
payload against its own request code (`openrlhf/utils/agent.py`,
`SingleTurnAgentExecutor._fetch_rewards_via_http`, release 0.11.2) where it imports, and
against an exact replica of that payload always.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from tokenreward.align import offsets_from_ids
from tokenreward.cli import main
from tokenreward.client import TokenRewardClient, TokenRewardError
from tokenreward.rewards import build_rewarder
from tokenreward.serve import build_state
from tokenreward.serve.metrics import parse_histogram
from tokenreward.testing import tiny_reward_model, train_tokenizer
from tokenreward.testing.serving import ThreadServer

CHAT = "{% for m in messages %}<bos>{{ m['role'] }}: {{ m['content'] }}<eos>{% endfor %}"
OPTIONS = {"keep_sum": True}
PAIRS = [
    ("What is 17 + 25?", " The answer is 42."),
    ("Name a colour.", " Blue, like the sea."),
    ("Hi", " Hello!"),
    ([{"role": "user", "content": "Capital of Peru?"}], [{"role": "assistant", "content": " Lima."}]),
    ("2 + 3?", " 5"),
]
LONG = " more" * 400  # past the tiny model's context


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    tokenizer = train_tokenizer(chat_template=CHAT)
    path = tmp_path_factory.mktemp("serve") / "reward-model"
    tiny_reward_model("llama", tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def policy_tokenizer():
    return train_tokenizer(vocab_size=270)


def start(model_dir, policy_tokenizer=None, **batching) -> ThreadServer:
    resources = {"reward_model": str(model_dir), **OPTIONS}
    return ThreadServer(build_state(build_rewarder("red", **resources), resources, policy_tokenizer, **batching))


@pytest.fixture(scope="module")
def server(model_dir, policy_tokenizer):
    running = start(model_dir, policy_tokenizer, max_batch=8, max_wait_ms=20)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def cli_records(model_dir, tmp_path_factory):
    """`tokenreward score --format json` for PAIRS (keep_sum on)."""
    folder = tmp_path_factory.mktemp("cli")
    source, out = folder / "pairs.jsonl", folder / "scored.jsonl"
    source.write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in PAIRS))
    args = f"score --rewarder red --reward-model {model_dir} --option keep_sum=true --input {source} --format json"
    assert main([*args.split(), "--output", str(out)]) == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def assert_same_record(got: dict, expected: dict) -> None:
    """Equal up to float rounding; `row` (the pair's index in its request or file) is not compared."""
    assert list(got) == list(expected)
    assert got["rewarder"] == expected["rewarder"]
    assert got["tokens"] == expected["tokens"] and got["offsets"] == expected["offsets"]
    assert got["sequence_reward"] == pytest.approx(expected["sequence_reward"], rel=1e-6, abs=1e-6)
    assert got["rewards"] == pytest.approx(expected["rewards"], rel=1e-6, abs=1e-6)  # float32 padding rounding


def post(server, path: str, body) -> httpx.Response:
    if isinstance(body, (bytes, str)):
        return httpx.post(server.url + path, content=body, headers={"content-type": "application/json"})
    return httpx.post(server.url + path, json=body)


def test_token_rewards_equal_score_cli_single_and_concurrent(server, cli_records):
    whole = post(server, "/v1/token_rewards", {"prompts": [p for p, _ in PAIRS], "responses": [r for _, r in PAIRS]})
    assert whole.status_code == 200 and "errors" not in whole.json()
    assert [r["row"] for r in whole.json()["results"]] == [r["row"] for r in cli_records] == list(range(len(PAIRS)))
    for got, expected in zip(whole.json()["results"], cli_records):
        assert_same_record(got, expected)
    with ThreadPoolExecutor(len(PAIRS)) as pool:
        answers = list(
            pool.map(lambda pr: post(server, "/v1/token_rewards", {"prompts": [pr[0]], "responses": [pr[1]]}), PAIRS)
        )
    for answer, expected in zip(answers, cli_records):
        assert answer.status_code == 200
        assert_same_record(answer.json()["results"][0], expected)


def test_micro_batches_gather_concurrent_requests(model_dir, cli_records):
    batching = start(model_dir, max_batch=4, max_wait_ms=2000)
    try:
        with TokenRewardClient(batching.url, timeout=60) as client, ThreadPoolExecutor(8) as pool:
            records = list(pool.map(lambda k: client.token_rewards([PAIRS[k % 5][0]], [PAIRS[k % 5][1]])[0], range(8)))
        for k, record in enumerate(records):
            assert_same_record(record, cli_records[k % 5])
        text = batching.metrics()
        sizes = parse_histogram(text, "tokenreward_batch_size")
        assert "tokenreward_batch_size_sum 8.0" in text
        assert {le for le, n in sizes.items() if n} <= {"1", "2", "4"}  # never above --max-batch
        assert sum(sizes.values()) < 8  # some requests shared a micro-batch
    finally:
        batching.stop()


def test_get_reward_replica_of_openrlhf_payload(server, cli_records):
    prompt, response = PAIRS[0]
    # OpenRLHF decodes prompt + generated ids with skip_special_tokens=False, so the EOS is in the query
    payload = {"query": [prompt + response + "<eos>"], "prompts": [prompt], "labels": [None]}
    answer = post(server, "/get_reward", payload)
    assert answer.status_code == 200
    body, expected = answer.json(), cli_records[0]
    assert list(body) == ["rewards", "scores", "extra_logs", "token_rewards", "token_offsets"]
    assert body["rewards"] == body["scores"] == [pytest.approx(expected["sequence_reward"], abs=1e-6)]
    assert body["token_rewards"][0] == pytest.approx(expected["rewards"], abs=1e-6)
    assert body["token_offsets"][0] == expected["offsets"]
    assert sum(body["token_rewards"][0]) == pytest.approx(body["rewards"][0], abs=1e-5)  # keep_sum
    assert [response[s:e] for s, e in body["token_offsets"][0]] == expected["tokens"]
    assert body["extra_logs"] == {
        "token_reward_sum": [pytest.approx(sum(expected["rewards"]), abs=1e-5)],
        "num_tokens": [len(expected["tokens"])],
    }


def test_get_reward_through_openrlhf_own_client(server, model_dir, cli_records):
    agent = pytest.importorskip("openrlhf.utils.agent", reason="OpenRLHF's agent module (and aiohttp) not installed")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompt, response = PAIRS[1]
    generated = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]

    class Engine:  # stands in for vLLM: "generates" the response's ids
        async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
            output = SimpleNamespace(token_ids=generated, finish_reason="stop", logprobs=None)
            return SimpleNamespace(outputs=[output])

    executor = agent.SingleTurnAgentExecutor(server.url + "/get_reward")
    params = SimpleNamespace(max_tokens=32, logprobs=None)
    output = asyncio.run(executor.execute(prompt, "label", params, 128, tokenizer, Engine()))
    assert output["reward"] == output["scores"] == [pytest.approx(cli_records[1]["sequence_reward"], abs=1e-6)]
    assert output["extra_logs"]["num_tokens"] == [len(cli_records[1]["tokens"])]


def test_response_ids_align_rewards_to_policy_tokens(server, model_dir, policy_tokenizer):
    prompt, response = PAIRS[0]
    ids = policy_tokenizer(response, add_special_tokens=False)["input_ids"] + [policy_tokenizer.eos_token_id]
    answer = post(server, "/get_reward", {"query": ["ignored"], "prompts": [prompt], "response_ids": [ids]})
    assert answer.status_code == 200
    body = answer.json()
    text, offsets = offsets_from_ids(policy_tokenizer, ids)
    own = build_rewarder("red", reward_model=str(model_dir), **OPTIONS).score([prompt], [text], align_to=[offsets])
    assert len(body["token_rewards"][0]) == len(ids)
    assert body["token_rewards"][0] == pytest.approx(own.token_rewards(0), abs=1e-6)
    assert body["token_offsets"][0] == [list(o) for o in offsets]
    assert sum(body["token_rewards"][0]) == pytest.approx(body["rewards"][0], abs=1e-5)


def good(**change):
    return {"prompts": ["Hi"], "responses": [" Hello!"], **change}


BAD_REQUESTS = [
    ("/v1/token_rewards", b"{not json", 400, "body: not valid JSON"),
    ("/v1/token_rewards", [1, 2], 400, "body: expected a JSON object, got an array"),
    ("/v1/token_rewards", {"responses": [" a"]}, 400, "prompts: missing field"),
    ("/v1/token_rewards", good(prompts="Hi"), 400, "prompts: expected an array, got a string"),
    ("/v1/token_rewards", good(responses=[3]), 400, "responses[0]: expected a string or a list of messages, got a"),
    ("/v1/token_rewards", good(responses=[" a", " b"]), 400, "responses: 2 entries, but 1 prompts"),
    ("/v1/token_rewards", good(responses=[""]), 400, "responses[0]: empty response"),
    ("/v1/token_rewards", good(prompts=[[{"role": "user"}]]), 400, "prompts[0]: every message needs a string 'role'"),
    ("/v1/token_rewards", good(responses=[LONG]), 422, "responses[0]: prompt+response is"),
    (
        "/v1/token_rewards",
        good(options={"beta": 0.5}),
        400,
        "options.beta: not an option of this rewarder (options: alpha",
    ),
    ("/v1/token_rewards", good(options={"beta_c": 2}), 400, "options: beta_c must lie in [0, 1], got 2"),
    ("/get_reward", {"query": ["x y"], "prompts": ["Q"]}, 400, "query[0]: does not start with prompts[0]"),
    ("/get_reward", {"query": ["Q a"], "prompts": ["Q"], "labels": [1, 2]}, 400, "labels: 2 entries, but 1 queries"),
    ("/get_reward", {"query": "Q a", "prompts": ["Q"]}, 400, "query: expected an array, got a string"),
    (
        "/get_reward",
        {"query": ["Q a"], "prompts": ["Q"], "response_ids": [["x"]]},
        400,
        "response_ids[0][0]: expected an integer token id, got a string",
    ),
    (
        "/get_reward",
        {"query": ["Q a"], "prompts": ["Q"], "response_ids": [[]]},
        400,
        "response_ids[0]: expected a non-",
    ),
    # option types: a boolean option takes a JSON boolean, a float option a finite number
    ("/v1/token_rewards", good(options={"keep_sum": 2}), 400, "options.keep_sum: expected a boolean, got 2"),
    (
        "/v1/token_rewards",
        good(options={"keep_sum": "maybe"}),
        400,
        "options.keep_sum: expected a boolean, got 'maybe'",
    ),
    ("/v1/token_rewards", good(options={"keep_sum": "true"}), 400, "options.keep_sum: expected a boolean, got 'true'"),
    ("/v1/token_rewards", good(options={"beta_c": True}), 400, "options.beta_c: expected a number, got a boolean"),
    ("/v1/token_rewards", good(options={"beta_c": "0.5"}), 400, "options.beta_c: expected a number, got '0.5'"),
    ("/v1/token_rewards", good(options={"beta_c": [0.5]}), 400, "options.beta_c: expected a number, got an array"),
    (
        "/v1/token_rewards",
        b'{"prompts": ["Hi"], "responses": [" Hello!"], "options": {"beta_c": 1e999}}',
        400,
        "options.beta_c: expected a finite number, got inf",
    ),
    (
        "/v1/token_rewards",
        b'{"prompts": ["Hi"], "responses": [" Hello!"], "options": {"beta_c": NaN}}',
        400,
        "body: not valid JSON (NaN is not a JSON number)",
    ),
    (
        "/get_reward",
        {"query": ["Q a"], "prompts": ["Q"], "options": {"beta": 0.5, "gamma": 1}},
        400,
        "options.beta, options.gamma: not options of this rewarder (options: alpha, beta_c, keep_sum)",
    ),
    # nesting deeper than the parser's recursion: a 400, not a 500 the client would retry
    ("/get_reward", b"[" * 100_000 + b"]" * 100_000, 400, "body: arrays or objects nested too deeply to read"),
    ("/v1/token_rewards", b'{"prompts": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, "body: arrays or objects"),
    # lone surrogates (valid JSON escapes, not valid Unicode)
    (
        "/v1/token_rewards",
        b'{"prompts": ["Hi"], "responses": [" He\\ud800llo"]}',
        400,
        "responses[0]: not valid Unicode (lone surrogate \\ud800 at character 3)",
    ),
    (
        "/v1/token_rewards",
        b'{"prompts": [[{"role": "user", "content": "\\udfff"}]], "responses": [" a"]}',
        400,
        "prompts[0][0].content: not valid Unicode (lone surrogate \\udfff at character 0)",
    ),
    (
        "/get_reward",
        b'{"query": ["Q a", "Q \\ud83d"], "prompts": ["Q", "Q"]}',
        400,
        "query[1]: not valid Unicode (lone surrogate \\ud83d at character 2)",
    ),
    (
        "/get_reward",
        b'{"query": ["Q a"], "prompts": ["Q"], "options": {"\\ud800": 1}}',
        400,
        "options.\\ud800: not an option of this rewarder",
    ),
]


def test_a_body_over_the_limit_is_413(server, monkeypatch):
    from tokenreward.serve import app

    monkeypatch.setattr(app, "MAX_BODY_BYTES", 1000)  # the server runs in this process's thread
    answer = post(server, "/v1/token_rewards", good(responses=[" a" * 600]))
    assert answer.status_code == 413 and answer.json()["error"].startswith("body: 1")
    assert post(server, "/v1/token_rewards", good()).status_code == 200


@pytest.mark.parametrize("path, body, status, message", BAD_REQUESTS, ids=[m for *_, m in BAD_REQUESTS])
def test_bad_requests_are_4xx_naming_the_field(server, path, body, status, message):
    answer = post(server, path, body)
    assert answer.status_code == status
    assert answer.json()["error"].startswith(message)
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}


def test_unknown_path_and_method_and_no_policy_tokenizer(model_dir):
    bare = start(model_dir)
    try:
        assert httpx.get(bare.url + "/nope").json() == {"error": "GET /nope: Not Found"}
        assert httpx.get(bare.url + "/get_reward").status_code == 405
        answer = post(bare, "/get_reward", {"query": ["Q a"], "prompts": ["Q"], "response_ids": [[5]]})
        assert answer.status_code == 400 and answer.json()["error"].startswith(
            "response_ids: the server has no --policy-tokenizer"
        )
    finally:
        bare.stop()


def test_a_failing_sample_does_not_fail_its_batch(server, cli_records):
    mixed = post(
        server, "/v1/token_rewards", {"prompts": ["Hi", PAIRS[0][0]], "responses": [LONG, PAIRS[0][1]]}
    ).json()
    assert (
        mixed["results"][0] == {"error": mixed["errors"][0], "row": 0}
        and "longer than the model's context" in mixed["errors"][0]
    )
    assert mixed["errors"][1] is None
    assert_same_record(mixed["results"][1], cli_records[0])
    bodies = [good(responses=[LONG])] + [{"prompts": [p], "responses": [r]} for p, r in PAIRS[:3]]
    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(lambda b: post(server, "/v1/token_rewards", b), bodies))
    assert answers[0].status_code == 422
    for answer, expected in zip(answers[1:], cli_records):
        assert answer.status_code == 200
        assert_same_record(answer.json()["results"][0], expected)


def test_request_options_match_score_with_that_option(server, model_dir, capsys):
    answer = post(
        server, "/v1/token_rewards", {"prompts": [PAIRS[0][0]], "responses": [PAIRS[0][1]], "options": {"beta_c": 0.5}}
    )
    args = f"score --rewarder red --reward-model {model_dir} --option keep_sum=true --option beta_c=0.5 --format json"
    assert main([*args.split(), "--prompt", PAIRS[0][0], "--response", PAIRS[0][1]]) == 0
    assert_same_record(answer.json()["results"][0], json.loads(capsys.readouterr().out))


def test_info_and_metrics(server, model_dir):
    info = httpx.get(server.url + "/info").json()
    assert (
        info["rewarder"] == "red"
        and info["options"] == OPTIONS
        and info["resources"] == {"reward_model": str(model_dir)}
    )
    assert (info["dtype"], info["device"], info["max_batch"], info["max_wait_ms"]) == ("float32", "cpu", 8, 20.0)
    assert info["tokenizer"] == str(model_dir)

    def count(text: str, status: str) -> int:
        line = f'tokenreward_requests_total{{endpoint="/v1/token_rewards",status="{status}"}} '
        return next((int(x.split()[-1]) for x in text.splitlines() if x.startswith(line)), 0)

    before = server.metrics()
    post(server, "/v1/token_rewards", good())
    post(server, "/v1/token_rewards", good(responses=[""]))
    post(server, "/v1/token_rewards", good())
    after = server.metrics()
    assert count(after, "200") - count(before, "200") == 2 and count(after, "400") - count(before, "400") == 1
    assert "# TYPE tokenreward_request_seconds histogram" in after and "tokenreward_queue_depth 0" in after


def test_client_fails_over_to_a_live_replica(server, cli_records):
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))  # bound, not listening: connection refused
    try:
        with TokenRewardClient(
            f"http://127.0.0.1:{dead.getsockname()[1]},{server.url}", retries=2, backoff=0.01
        ) as client:
            assert client.health() == {"status": "ok"}
            assert_same_record(
                client.token_rewards(["Hi"], [" Hello!"])[0], client.token_rewards(["Hi"], [" Hello!"])[0]
            )
    finally:
        dead.close()


EMPTY_REWARD = -2.5


@pytest.fixture(scope="module")
def cli_server(model_dir, policy_tokenizer, tmp_path_factory):
    """A server built as `tokenreward serve --option keep_sum=true --empty-reward -2.5
    --policy-tokenizer DIR` builds it (its flags parsed by the CLI's own parser)."""
    from tokenreward.cli import build_parser
    from tokenreward.commands.serve import server_state

    policy_dir = tmp_path_factory.mktemp("policy-tokenizer")
    policy_tokenizer.save_pretrained(policy_dir)
    flags = f"--reward-model {model_dir} --option keep_sum=true --empty-reward {EMPTY_REWARD} --max-wait-ms 20"
    args = build_parser().parse_args(
        ["serve", "--rewarder", "red", *flags.split(), "--policy-tokenizer", str(policy_dir)]
    )
    running = ThreadServer(server_state(args, "http://unused"))
    yield running
    running.stop()


def sums_match(body: dict) -> None:
    for reward, rewards in zip(body["rewards"], body["token_rewards"]):
        assert sum(rewards) == pytest.approx(reward, rel=1e-6, abs=1e-6)


def test_request_options_apply_on_top_of_the_servers(cli_server, model_dir):
    assert httpx.get(cli_server.url + "/info").json()["options"] == {"keep_sum": True}
    prompts, responses = [p for p, _ in PAIRS[:3]], [r for _, r in PAIRS[:3]]
    query = {"query": [p + r for p, r in zip(prompts, responses)], "prompts": prompts, "labels": [None] * 3}
    for options, expected in [
        ({}, {"keep_sum": True}),
        ({"beta_c": 1.0}, {"keep_sum": True, "beta_c": 1.0}),
        ({"beta_c": 0.5}, {"keep_sum": True, "beta_c": 0.5}),
        ({"keep_sum": False, "beta_c": 0.5}, {"keep_sum": False, "beta_c": 0.5}),
    ]:
        own = build_rewarder("red", reward_model=str(model_dir), **expected).score(prompts, responses)
        body = post(cli_server, "/get_reward", {**query, "options": options}).json()
        assert body["rewards"] == pytest.approx(own.sequence_rewards.tolist(), rel=1e-6, abs=1e-6)
        for i in range(3):
            assert body["token_rewards"][i] == pytest.approx(list(own.token_rewards(i)), rel=1e-6, abs=1e-6)
        if expected["keep_sum"]:
            sums_match(body)
        else:  # the request's keep_sum=false took effect: the sums part from the rewards
            assert all(abs(sum(t) - r) > 1e-3 for t, r in zip(body["token_rewards"], body["rewards"]))
        records = post(
            cli_server, "/v1/token_rewards", {"prompts": prompts, "responses": responses, "options": options}
        ).json()["results"]
        for i, record in enumerate(records):
            assert record["rewards"] == pytest.approx(list(own.token_rewards(i)), rel=1e-6, abs=1e-6)


def test_out_of_vocabulary_ids_are_refused_naming_row_and_position(cli_server, policy_tokenizer):
    top = len(policy_tokenizer) - 1
    ok = policy_tokenizer(" Hello!", add_special_tokens=False)["input_ids"]
    for bad, problem in [
        (top + 1, f"id {top + 1} is outside the policy tokenizer's vocabulary (0..{top})"),
        (50_000, f"id 50000 is outside the policy tokenizer's vocabulary (0..{top})"),
        (-1, f"id -1 is outside the policy tokenizer's vocabulary (0..{top})"),
        (2.5, "expected an integer token id, got 2.5"),
        (True, "expected an integer token id, got a boolean"),
        (None, "expected an integer token id, got null"),
    ]:
        body = {"query": ["Hi a", "Hi b"], "prompts": ["Hi", "Hi"], "response_ids": [ok, [*ok, bad]]}
        answer = post(cli_server, "/get_reward", body)
        assert answer.status_code == 400
        assert answer.json() == {"error": f"response_ids[1][{len(ok)}]: {problem}"}
    edge = post(cli_server, "/get_reward", {"query": ["Hi a"], "prompts": ["Hi"], "response_ids": [[*ok, top]]})
    assert edge.status_code == 200 and len(edge.json()["token_rewards"][0]) == len(ok) + 1


def test_blank_rollouts_get_the_empty_reward_and_the_batch_is_answered(cli_server, cli_records, policy_tokenizer):
    """OpenRLHF sends the whole rollout batch; a blank response must not make it a 4xx."""
    (p0, r0), (p1, _), (p2, r2) = PAIRS[:3]
    payload = {"query": [p0 + r0 + "<eos>", p1 + "<eos>", p2 + r2, p1 + "  \n"], "prompts": [p0, p1, p2, p1]}
    answer = post(cli_server, "/get_reward", {**payload, "labels": [None] * 4})
    assert answer.status_code == 200
    body = answer.json()
    assert body["rewards"][1] == body["rewards"][3] == EMPTY_REWARD and body["scores"] == body["rewards"]
    assert body["token_rewards"][1] == body["token_offsets"][1] == body["token_rewards"][3] == []
    assert body["extra_logs"]["num_tokens"][1] == 0 and "errors" not in body
    for i, k in ((0, 0), (2, 2)):  # the others exactly as scored alone
        assert body["rewards"][i] == pytest.approx(cli_records[k]["sequence_reward"], rel=1e-6, abs=1e-6)
        assert body["token_rewards"][i] == pytest.approx(cli_records[k]["rewards"], rel=1e-6, abs=1e-6)
    only_blank = post(cli_server, "/get_reward", {"query": [p1], "prompts": [p1], "labels": [None]})
    assert only_blank.status_code == 200 and only_blank.json()["rewards"] == [EMPTY_REWARD]
    eos = policy_tokenizer.eos_token_id
    ids = [policy_tokenizer(r0, add_special_tokens=False)["input_ids"], [eos], [eos, eos]]
    by_ids = post(cli_server, "/get_reward", {"query": ["x"] * 3, "prompts": [p0, p1, p2], "response_ids": ids})
    assert by_ids.status_code == 200
    body = by_ids.json()
    assert body["rewards"][1:] == [EMPTY_REWARD, EMPTY_REWARD]
    assert body["token_rewards"][1:] == [[EMPTY_REWARD], [0.0, EMPTY_REWARD]]  # one per id, the last holds it
    sums_match(body)
    assert httpx.get(cli_server.url + "/info").json()["empty_reward"] == EMPTY_REWARD
    # /v1/token_rewards is not a rollout batch: a blank response there stays a 400 naming it
    assert post(cli_server, "/v1/token_rewards", good(responses=[""])).status_code == 400


def test_the_client_does_not_retry_a_4xx_from_a_real_server(cli_server):
    def refused() -> int:
        line = 'tokenreward_requests_total{endpoint="/get_reward",status="400"} '
        return next((int(x.split()[-1]) for x in cli_server.metrics().splitlines() if x.startswith(line)), 0)

    before = refused()
    with TokenRewardClient(cli_server.url, retries=3, backoff=0.01) as client:
        with pytest.raises(TokenRewardError, match=r"HTTP 400: options\.keep_sum: expected a boolean, got 2") as err:
            client.get_reward(["Hi a"], ["Hi"], options={"keep_sum": 2})
    assert err.value.status == 400 and refused() - before == 1


def test_cli_refuses_bad_settings(model_dir, capsys):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    rm = ["serve", "--rewarder", "red", "--reward-model", str(model_dir)]
    cases = [
        (["--port", "70000"], "--port must lie in [0, 65535], got 70000"),
        (["--max-batch", "0"], "--max-batch must be at least 1, got 0"),
        (["--max-wait-ms", "-1"], "--max-wait-ms must be a finite number of at least 0, got -1.0"),
        (["--max-wait-ms", "nan"], "--max-wait-ms must be a finite number of at least 0, got nan"),
        (["--port", str(taken.getsockname()[1])], f"cannot listen on 127.0.0.1:{taken.getsockname()[1]}"),
        (["--option", "beta_c=2", "--port", "0"], "beta_c must lie in [0, 1], got 2"),
        (["--empty-reward", "nan", "--port", "0"], "--empty-reward must be a finite number, got nan"),
    ]
    try:
        for extra, message in cases:
            assert main([*rm, *extra]) == 2
            assert message in capsys.readouterr().err
        assert main(["serve", "--rewarder", "red", "--port", "0"]) == 2
        assert "needs --reward-model" in capsys.readouterr().err
    finally:
        taken.close()


def test_sigterm_drains_in_flight_and_refuses_new(model_dir, cli_records):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tokenreward.cli",
            "serve",
            "--rewarder",
            "red",
            "--reward-model",
            str(model_dir),
            "--option",
            "keep_sum=true",
            "--port",
            "0",
            "--max-wait-ms",
            "1500",
            "--max-batch",
            "64",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stderr.readline()
        assert "ready on http://127.0.0.1:" in line, line
        url = line.split("ready on ")[1].strip()
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(
                httpx.post,
                url + "/v1/token_rewards",
                json=good(prompts=[PAIRS[2][0]], responses=[PAIRS[2][1]]),
                timeout=30,
            )
            deadline = time.monotonic() + 20
            while "tokenreward_queue_depth 1" not in httpx.get(url + "/metrics").text:
                assert time.monotonic() < deadline, "the request never reached the queue"
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            try:
                refused = httpx.post(url + "/v1/token_rewards", json=good(), timeout=5).status_code
            except httpx.TransportError:
                refused = "connection refused"
            answer = in_flight.result()
        assert refused in (503, "connection refused")
        assert answer.status_code == 200
        assert_same_record(answer.json()["results"][0], cli_records[2])
        assert proc.wait(timeout=30) == 0
        assert "Traceback" not in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
