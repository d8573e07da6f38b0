"""`tokenreward.client.TokenRewardClient`: retries, round-robin, refusals, deadline, payloads."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from tokenreward.client import TokenRewardClient, TokenRewardError


def test_retries_5xx_and_429_round_robin():
    seen = []
    answers = iter(
        [
            httpx.Response(503, json={"error": "busy"}),
            httpx.Response(429, headers={"retry-after": "0"}),
            httpx.Response(200, json={"results": [{"ok": 1}]}),
        ]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return next(answers)

    client = TokenRewardClient(
        "http://a:1, http://b:2/", retries=3, backoff=0.01, transport=httpx.MockTransport(handler)
    )
    assert client.token_rewards(["p"], [" r"]) == [{"ok": 1}]
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
    "url, message", [("localhost:5000", "must start with http"), (" , ", "at least one server URL")]
)
def test_bad_urls(url, message):
    with pytest.raises(ValueError, match=message):
        TokenRewardClient(url)
