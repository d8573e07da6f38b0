"""`tokenreward.client.TokenRewardClient`: retries, round-robin, refusals, deadline, payloads."""

from __future__ import annotations

import json
import re
import socket
import time

import httpx
import pytest

from bad_input_cases import FakeRewardServer
from tokenreward.client import TokenRewardClient, TokenRewardError

RECORD = {**FakeRewardServer.RECORD, "row": 0}


def test_retries_5xx_and_429_round_robin():
    seen = []
    answers = iter(
        [
            httpx.Response(503, json={"error": "busy"}),
            httpx.Response(429, headers={"retry-after": "0"}),
            httpx.Response(200, json={"results": [RECORD]}),
        ]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return next(answers)

    client = TokenRewardClient(
        "http://a:1, http://b:2/", retries=3, backoff=0.01, transport=httpx.MockTransport(handler)
    )
    assert client.token_rewards(["p"], [" r"]) == [RECORD]
    assert seen == ["http://a:1/v1/token_rewards", "http://b:2/v1/token_rewards", "http://a:1/v1/token_rewards"]


def test_gives_up_after_the_retries():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(500, json={"error": "internal error: boom"})

    client = TokenRewardClient("http://a:1", retries=2, backoff=0.0, transport=httpx.MockTransport(handler))
    with pytest.raises(TokenRewardError, match=r"gave up after 3 attempt\(s\).*HTTP 500: internal error: boom") as err:
        client.health()
    assert len(calls) == 3 and err.value.status == 500


def test_4xx_is_raised_at_once_with_the_servers_message():
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(400, json={"error": "prompts: missing field"})

    client = TokenRewardClient("http://a:1", retries=5, transport=httpx.MockTransport(handler))
    with pytest.raises(TokenRewardError, match="HTTP 400: prompts: missing field") as err:
        client.get_reward(["q"], ["p"])
    assert err.value.status == 400 and len(calls) == 1


def test_get_reward_payload():
    bodies = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json={"rewards": [0.5]})

    client = TokenRewardClient("http://a:1", transport=httpx.MockTransport(handler))
    assert client.get_reward(("p r",), ["p"], labels=[None], response_ids=[(5, 6)], options={"beta_c": 0.5}) == {
        "rewards": [0.5]
    }
    assert bodies == [
        {"query": ["p r"], "prompts": ["p"], "labels": [None], "response_ids": [[5, 6]], "options": {"beta_c": 0.5}}
    ]


def test_deadline_bounds_the_whole_call():
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts connections, never answers
    try:
        started = time.monotonic()
        with pytest.raises(TokenRewardError, match="gave up"):
            TokenRewardClient(
                f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.6, retries=10, backoff=0.05
            ).health()
        assert 0.5 < time.monotonic() - started < 3.0
    finally:
        silent.close()


@pytest.mark.parametrize(
    "url, message",
    [
        ("localhost:5000", "must start with http"),
        (" , ", "at least one server URL"),
        ("http://", "server URL 'http://' has no host"),
        ("http://:5000", "server URL 'http://:5000' has no host"),
        ("http://host:99999", "server URL 'http://host:99999' is malformed (Port out of range 0-65535)"),
        ("http://host:port", "server URL 'http://host:port' is malformed"),
        ("http://host:5000/?a=1", "must be a base URL, without spaces, query or fragment"),
        ("http://ho st:5000", "must be a base URL, without spaces, query or fragment"),
    ],
)
def test_bad_urls(url, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        TokenRewardClient(url)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"timeout": float("nan")}, "timeout must be a finite number > 0, got nan"),
        ({"timeout": float("inf")}, "timeout must be a finite number > 0, got inf"),
        ({"timeout": 0}, "timeout must be a finite number > 0, got 0"),
        ({"timeout": "60"}, "timeout must be a finite number > 0, got '60'"),
        ({"timeout": True}, "timeout must be a finite number > 0, got True"),
        ({"retries": 2.5}, "retries must be a whole number >= 0, got 2.5"),
        ({"retries": -1}, "retries must be a whole number >= 0, got -1"),
        ({"retries": True}, "retries must be a whole number >= 0, got True"),
        ({"backoff": float("nan")}, "backoff must be a finite number >= 0, got nan"),
        ({"max_backoff": -1.0}, "max_backoff must be a finite number >= 0, got -1.0"),
    ],
)
def test_bad_settings_are_refused_when_the_client_is_built(settings, message):
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        TokenRewardClient("http://127.0.0.1:5000", **settings)


@pytest.fixture(scope="module")
def fake():
    server = FakeRewardServer()
    yield server
    server.close()


@pytest.mark.parametrize(
    "kind, call, message",
    [
        (
            "html",
            "token_rewards",
            r"/html/v1/token_rewards: HTTP 200 answer is not JSON \(text/html\): '<html><body><h1>",
        ),
        ("html", "get_reward", r"/html/get_reward: HTTP 200 answer is not JSON \(text/html\)"),
        ("html", "health", r"/html/health: HTTP 200 answer is not JSON"),
        ("no-results", "token_rewards", r"/no-results/v1/token_rewards: unusable answer: no 'results' list$"),
        ("no-results", "get_reward", r"/no-results/get_reward: unusable answer: no 'rewards'$"),
        ("array", "token_rewards", r"/array/v1/token_rewards: unusable answer: not a JSON object$"),
        ("array", "info", r"/array/info: unusable answer: not a JSON object$"),
        ("short", "token_rewards", r"unusable answer: 0 results for 1 pairs$"),
        ("short", "get_reward", r"unusable answer: 'rewards' is not a list of 1 entries$"),
        ("nan", "token_rewards", r"unusable answer: results\[0\]: sequence_reward is nan, not a finite number$"),
        ("nan", "get_reward", r"unusable answer: 'rewards' holds something other than finite numbers or null$"),
    ],
)
def test_an_answer_the_client_cannot_use_raises_one_line(fake, kind, call, message):
    calls = {
        "token_rewards": lambda c: c.token_rewards(["p"], [" a"]),
        "get_reward": lambda c: c.get_reward(["p a"], ["p"]),
        "health": lambda c: c.health(),
        "info": lambda c: c.info(),
    }
    before = fake.calls.get(kind, 0)
    with TokenRewardClient(fake.url(kind), retries=2, backoff=0.01) as client:
        with pytest.raises(TokenRewardError, match=message) as err:
            calls[call](client)
    assert err.value.status == 200 and "\n" not in str(err.value)
    assert fake.calls[kind] - before == 1  # an unusable 200 is not retried


def test_a_5xx_html_page_is_retried_then_reported_on_one_line(fake):
    with TokenRewardClient(fake.url("html-502"), retries=1, backoff=0.01) as client:
        with pytest.raises(TokenRewardError, match="HTTP 502: <html><body> <h1>502 Bad Gateway</h1> </body></html>$"):
            client.get_reward(["p a"], ["p"])
    assert fake.calls["html-502"] == 2


def test_a_good_answer_passes_the_checks(fake):
    with TokenRewardClient(fake.url("ok")) as client:
        assert client.token_rewards(["p"], [" a"]) == [{**FakeRewardServer.RECORD, "row": 0}]
        assert client.get_reward(["p a"], ["p"])["rewards"] == [0.5]


def test_token_ids_may_be_tensors_or_arrays_and_bad_ones_are_named():
    import numpy
    import torch

    bodies = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json={"rewards": [0.5, 0.25]})

    client = TokenRewardClient("http://a:1", transport=httpx.MockTransport(handler))
    ids = [torch.tensor([5, 6, 7]), numpy.array([8, 9], dtype=numpy.int64)]
    client.get_reward(["q1", "q2"], ("p1", "p2"), response_ids=ids)
    assert bodies[-1]["response_ids"] == [[5, 6, 7], [8, 9]]
    client.get_reward(["q1", "q2"], ["p1", "p2"], response_ids=torch.tensor([[5, 6], [7, 8]]))
    assert bodies[-1]["response_ids"] == [[5, 6], [7, 8]]
    for bad, message in [
        ([[5, 6.5]], r"response_ids\[0\]\[1\]: expected an integer token id, got float"),
        ([[5], [True]], r"response_ids\[1\]\[0\]: expected an integer token id, got bool"),
        ([torch.tensor([0.5])], r"response_ids\[0\]\[0\]: expected an integer token id, got float"),
        (["abc"], r"response_ids\[0\]: expected a sequence of token ids, got str"),
    ]:
        with pytest.raises(ValueError, match=message):
            client.get_reward(["q"] * len(bad), ["p"] * len(bad), response_ids=bad)
    with pytest.raises(ValueError, match="queries: expected a sequence, got str"):
        client.get_reward("q a", ["q"])
    with pytest.raises(ValueError, match=r"request: cannot be sent as JSON \(Object of type object"):
        client.token_rewards([object()], [" a"])
    with pytest.raises(ValueError, match=r"request: cannot be sent as JSON \(Out of range float values"):
        client.get_reward(["q a"], ["q"], options={"beta_c": float("nan")})
    assert len(bodies) == 2  # nothing unusable was sent
