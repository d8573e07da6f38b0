"""A Python client of `tokenreward serve`.

    from tokenreward.client import TokenRewardClient
    with TokenRewardClient("http://127.0.0.1:5000,http://127.0.0.1:5001", timeout=60, retries=3) as client:
        records = client.token_rewards(prompts, responses)   # records of `tokenreward score --format json`
        answer = client.get_reward(queries, prompts)          # OpenRLHF's shape + token_rewards, token_offsets

`timeout` is a deadline for the whole call: every attempt and every backoff pause together
end within it (each attempt's connect, read and write waits are capped by the time left).
Connection errors, 5xx and 429 answers are retried up to `retries` times, with exponential
backoff (`backoff * 2**k` seconds, at most `max_backoff`, or the server's `Retry-After`);
other 4xx answers raise at once. Several comma-separated URLs are used round-robin, each
call and each retry going to the next one. Needs httpx (the `serve` extra).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence
from typing import Any

import httpx

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class TokenRewardError(RuntimeError):
    """The server refused the request (`status` 4xx) or gave up after retrying (`status` None or 5xx/429)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def parse_urls(url: str | Sequence[str]) -> list[str]:
    """`"http://a:1,http://b:2"` or a list of URLs -> base URLs without trailing slashes."""
    items = url.split(",") if isinstance(url, str) else list(url)
    urls = [u.strip().rstrip("/") for u in items if u and u.strip()]
    if not urls:
        raise ValueError("TokenRewardClient needs at least one server URL")
    for u in urls:
        if not u.startswith(("http://", "https://")):
            raise ValueError(f"server URL {u!r} must start with http:// or https://")
    return urls


def error_message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200] or response.reason_phrase


class TokenRewardClient:
    """Calls one or several `tokenreward serve` replicas (see the module docstring)."""

    def __init__(
        self,
        url: str | Sequence[str],
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.25,
        max_backoff: float = 8.0,
        transport: httpx.BaseTransport | None = None,
    ):
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if retries < 0:
            raise ValueError(f"retries must be at least 0, got {retries}")
        self.urls = parse_urls(url)
        self.timeout, self.retries, self.backoff, self.max_backoff = timeout, retries, backoff, max_backoff
        self._turn = itertools.cycle(range(len(self.urls)))
        self._turn_lock = threading.Lock()
        self._http = httpx.Client(transport=transport)

    def __enter__(self) -> TokenRewardClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _next_url(self) -> str:
        with self._turn_lock:
            return self.urls[next(self._turn)]

    def _pause(self, attempt: int, response: httpx.Response | None) -> float:
        retry_after = response.headers.get("retry-after") if response is not None else None
        if retry_after is not None:
            try:
                return min(float(retry_after), self.max_backoff)
            except ValueError:
                pass
        return min(self.backoff * 2**attempt, self.max_backoff)

    def request(self, method: str, path: str, payload: Any = None) -> Any:
        """One call with deadline, retries and round-robin; the decoded JSON answer."""
        deadline = time.monotonic() + self.timeout
        last, response, attempt = "no attempt made", None, 0
        for attempt in range(self.retries + 1):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            url = self._next_url() + path
            response = None
            try:
                response = self._http.request(method, url, json=payload, timeout=httpx.Timeout(left))
            except httpx.TransportError as err:
                last = f"{url}: {type(err).__name__}: {err}"
            else:
                if response.status_code < 400:
                    return response.json()
                last = f"{url}: HTTP {response.status_code}: {error_message(response)}"
                if response.status_code not in RETRY_STATUSES:
                    raise TokenRewardError(last, response.status_code)
            if attempt < self.retries:
                time.sleep(max(0.0, min(self._pause(attempt, response), deadline - time.monotonic())))
        status = response.status_code if response is not None else None
        raise TokenRewardError(
            f"gave up after {attempt + 1} attempt(s) within {self.timeout:g} s; last: {last}", status
        )

    def token_rewards(
        self, prompts: Sequence[Any], responses: Sequence[Any], options: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Records of `tokenreward score --format json`, one per pair (a sample the server could
        not score, when others could, is `{"error": message}`)."""
        payload: dict[str, Any] = {"prompts": list(prompts), "responses": list(responses)}
        if options:
            payload["options"] = options
        return self.request("POST", "/v1/token_rewards", payload)["results"]

    def get_reward(
        self,
        queries: Sequence[str],
        prompts: Sequence[str],
        labels: Sequence[Any] | None = None,
        responses: Sequence[str] | None = None,
        response_ids: Sequence[Sequence[int]] | None = None,
        options: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """OpenRLHF's `/get_reward`: `{"rewards", "scores", "extra_logs", "token_rewards", "token_offsets"}`."""
        payload: dict[str, Any] = {"query": list(queries), "prompts": list(prompts)}
        optional = {"labels": labels, "responses": responses, "response_ids": response_ids}
        payload.update(
            {
                k: [list(v) if k == "response_ids" else v for v in vals]
                for k, vals in optional.items()
                if vals is not None
            }
        )
        if options:
            payload["options"] = options
        return self.request("POST", "/get_reward", payload)

    def health(self) -> dict[str, Any]:
        return self.request("GET", "/health")

    def info(self) -> dict[str, Any]:
        return self.request("GET", "/info")
