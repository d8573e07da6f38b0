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

Every server answer the client cannot use (not JSON, JSON of the wrong shape, a non-finite
reward, a 4xx) raises `TokenRewardError` with a one-line message and the HTTP `status`;
arguments that cannot be sent (a prompt that is not text, a token id that is not an integer)
raise `ValueError` naming them. Token ids may be lists, tuples, NumPy arrays or tensors.
"""

from __future__ import annotations

import itertools
import json
import math
import operator
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from tokenreward.errors import UserInputError

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class TokenRewardError(RuntimeError):
    """The server refused the request (`status` 4xx), gave up after retrying (`status` None or
    5xx/429), or answered something the client cannot use (`status` that answer's)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def parse_urls(url: str | Sequence[str]) -> list[str]:
    """`"http://a:1,http://b:2"` or a list of URLs -> base URLs without trailing slashes."""
    items = url.split(",") if isinstance(url, str) else list(url)
    given = [u.strip() for u in items if u and u.strip()]
    if not given:
        raise UserInputError("TokenRewardClient needs at least one server URL")
    for u in given:
        check_url(u)
    urls = [u.rstrip("/") for u in given]
    return urls


def check_url(url: str) -> None:
    """Refuse a server URL that is not `http(s)://host[:port][/path]`, naming it."""
    if not url.startswith(("http://", "https://")):
        raise UserInputError(f"server URL {url!r} must start with http:// or https://")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port outside 0..65535 or not a number
    except ValueError as err:
        raise UserInputError(f"server URL {url!r} is malformed ({err})") from None
    if not parts.hostname:
        raise UserInputError(f"server URL {url!r} has no host")
    if parts.query or parts.fragment or any(c.isspace() for c in url):
        raise UserInputError(f"server URL {url!r} must be a base URL, without spaces, query or fragment")


def check_number(value: Any, name: str, lowest: float, inclusive: bool) -> float:
    """A finite real number (not a bool) at least (or above, when not `inclusive`) `lowest`."""
    bound = ">=" if inclusive else ">"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserInputError(f"{name} must be a finite number {bound} {lowest:g}, got {value!r}")
    if value < lowest or (value == lowest and not inclusive):
        raise UserInputError(f"{name} must be a finite number {bound} {lowest:g}, got {value!r}")
    return float(value)


def as_list(values: Any, name: str) -> list[Any]:
    """A sequence (list, tuple, array, tensor) as a list; a single string or a non-sequence refused."""
    values = values.tolist() if hasattr(values, "tolist") else values
    if isinstance(values, (str, bytes, dict)) or not isinstance(values, (Sequence, range)):
        raise UserInputError(f"{name}: expected a sequence, got {type(values).__name__}")
    return list(values)


def results_problem(answer: dict[str, Any], count: int) -> str | None:
    """Why `answer` is not a `/v1/token_rewards` answer for `count` pairs; None if it is."""
    results = answer.get("results")
    if not isinstance(results, list):
        return "no 'results' list"
    if len(results) != count:
        return f"{len(results)} results for {count} pairs"
    problems = ((i, record_problem(record, i)) for i, record in enumerate(results))
    return next((f"results[{i}]: {problem}" for i, problem in problems if problem), None)


def token_ids(rows: Sequence[Any]) -> list[list[int]]:
    """Rows of token ids (lists, tuples, arrays, tensors) as lists of ints; anything else refused."""
    out = []
    for i, row in enumerate(rows):
        row = row.tolist() if hasattr(row, "tolist") else row
        if isinstance(row, (str, bytes)) or not isinstance(row, Sequence):
            raise UserInputError(f"response_ids[{i}]: expected a sequence of token ids, got {type(row).__name__}")
        ids = []
        for k, token in enumerate(row):
            try:
                if isinstance(token, bool):
                    raise TypeError
                ids.append(operator.index(token))
            except TypeError:
                raise UserInputError(
                    f"response_ids[{i}][{k}]: expected an integer token id, got {type(token).__name__}"
                ) from None
        out.append(ids)
    return out


def error_message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        return one_line(response.text) or response.reason_phrase


def one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def record_problem(record: Any, row: int) -> str | None:
    """Why `record` is not a `tokenreward score` record (or `{"error": ...}`) of pair `row`; None if it is."""
    if not isinstance(record, dict):
        return "not an object"
    if "error" in record:
        return None if isinstance(record["error"], str) else "'error' is not a string"
    if record.get("row", row) != row:
        return f"its row is {record.get('row')!r}"
    if not is_number(record.get("sequence_reward")):
        return f"sequence_reward is {record.get('sequence_reward')!r}, not a finite number"
    rewards, offsets = record.get("rewards"), record.get("offsets")
    if not is_number_list(rewards):
        return "rewards is not a list of finite numbers"
    if not isinstance(offsets, list) or len(offsets) != len(rewards):
        return "offsets is not a list as long as rewards"
    return None


def rewards_problem(answer: dict[str, Any], count: int) -> str | None:
    """Why `answer` is not a `/get_reward` answer for `count` samples; None if it is: `rewards`
    (and `scores`, `token_rewards` when there) lists of `count` entries, finite numbers or null."""
    if "rewards" not in answer:
        return "no 'rewards'"
    for name, fits in (("rewards", is_number), ("scores", is_number), ("token_rewards", is_number_list)):
        values = answer.get(name, [None] * count)
        if not isinstance(values, list) or len(values) != count:
            return f"'{name}' is not a list of {count} entries"
        if not all(v is None or fits(v) for v in values):
            wanted = "finite numbers" if fits is is_number else "lists of finite numbers"
            return f"'{name}' holds something other than {wanted} or null"
    return None


def is_number_list(value: Any) -> bool:
    return isinstance(value, list) and all(is_number(v) for v in value)


def encode_payload(payload: Any) -> bytes:
    """The request body; a value JSON cannot hold (an object, NaN) is refused naming its type."""
    try:
        return json.dumps(payload, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError) as err:
        raise UserInputError(f"request: cannot be sent as JSON ({one_line(str(err))})") from None


def decode_answer(response: httpx.Response, url: str, check: Callable[[Any], str | None] | None) -> Any:
    """The JSON of a 2xx answer, refused (`TokenRewardError`) when it is not JSON or `check` finds a problem."""
    try:
        answer = json.loads(response.content, parse_constant=lambda name: float("nan"))
    except (ValueError, RecursionError):
        kind = response.headers.get("content-type", "no content type")
        raise TokenRewardError(
            f"{url}: HTTP {response.status_code} answer is not JSON ({kind}): {one_line(response.text, 80)!r}",
            response.status_code,
        ) from None
    problem = "not a JSON object" if not isinstance(answer, dict) else check(answer) if check else None
    if problem:
        raise TokenRewardError(f"{url}: unusable answer: {problem}", response.status_code)
    return answer


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
        timeout = check_number(timeout, "timeout", 0, inclusive=False)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise UserInputError(f"retries must be a whole number >= 0, got {retries!r}")
        backoff = check_number(backoff, "backoff", 0, inclusive=True)
        max_backoff = check_number(max_backoff, "max_backoff", 0, inclusive=True)
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

    def request(self, method: str, path: str, payload: Any = None, check: Callable[[Any], str | None] = None) -> Any:
        """One call with deadline, retries and round-robin; the decoded JSON answer (`check(answer)`:
        why it cannot be used, or None)."""
        content = encode_payload(payload) if payload is not None else None
        headers = {"content-type": "application/json"} if content is not None else None
        deadline = time.monotonic() + self.timeout
        last, response, attempt = "no attempt made", None, 0
        for attempt in range(self.retries + 1):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            url = self._next_url() + path
            response = None
            try:
                response = self._http.request(
                    method, url, content=content, headers=headers, timeout=httpx.Timeout(left)
                )
            except httpx.TransportError as err:
                last = f"{url}: {type(err).__name__}: {err}"
            else:
                if response.status_code < 400:
                    return decode_answer(response, url, check)
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
        payload: dict[str, Any] = {
            "prompts": as_list(prompts, "prompts"),
            "responses": as_list(responses, "responses"),
        }
        if options:
            payload["options"] = options
        count = len(payload["prompts"])
        return self.request("POST", "/v1/token_rewards", payload, lambda answer: results_problem(answer, count))[
            "results"
        ]

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
        payload: dict[str, Any] = {"query": as_list(queries, "queries"), "prompts": as_list(prompts, "prompts")}
        if labels is not None:
            payload["labels"] = as_list(labels, "labels")
        if responses is not None:
            payload["responses"] = as_list(responses, "responses")
        if response_ids is not None:
            payload["response_ids"] = token_ids(as_list(response_ids, "response_ids"))
        if options:
            payload["options"] = options
        count = len(payload["query"])
        return self.request("POST", "/get_reward", payload, lambda answer: rewards_problem(answer, count))

    def health(self) -> dict[str, Any]:
        return self.request("GET", "/health")

    def info(self) -> dict[str, Any]:
        return self.request("GET", "/info")
