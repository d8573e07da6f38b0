"""An OpenAI-compatible chat-completions reviser (OpenAI, vLLM, llama.cpp, TGI, ...).

Standard library only (`http.client`). It sends the TLCR Appendix A prompt as one user
message to `BASE_URL/chat/completions` and parses the reply (`tokenreward.revisers.prompt`).

- Configuration: `base_url` (else `$OPENAI_BASE_URL`, else the OpenAI API), `model` (else
  `$OPENAI_MODEL`), the key read from the environment variable `api_key_env` (no header when
  unset, for local servers). HTTP proxies are not used.
- Deadline: `timeout` bounds the whole request (connect, send, the full reply); a server that
  trickles its reply is cut off when the deadline passes.
- Retries: timeouts, dropped connections, HTTP 408 / 409 / 429 / 5xx and a 200 whose body is
  not JSON are retried up to `retries` times with exponential backoff (`backoff * 2**k`
  seconds, or the server's `Retry-After` when longer, at most 60 s). A request that still
  fails, or gets another 4xx, fails its pair only (`Revision.request_failed`). A refused key
  (401 / 403), a missing endpoint or model (404) and a server that cannot be reached at all
  raise `ReviserError`: no pair could succeed.
- Cache: with `cache_dir`, each JSON reply is stored under the SHA-256 of the normalised
  endpoint (scheme, host with `localhost` / `127.0.0.1` / `::1` as one, port, path) and the
  request body, so a rerun never pays twice (a cached unparsable reply stays failed).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tokenreward.errors import UserInputError
from tokenreward.revisers.base import Reviser, ReviserError, Revision, RevisionRequest, register_reviser
from tokenreward.revisers.prompt import parse_reply, reviser_prompt

DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRY_STATUSES = {408, 409, 429, 500, 502, 503, 504}
FATAL_STATUSES = {401, 403, 404}
MAX_DELAY = 60.0
LOOPBACK = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "ip6-localhost"}


class RequestFailed(Exception):
    """One request failed for good (after its retries); its pair is recorded as failed."""


class Unreachable(Exception):
    """No connection could be made to the server."""


def normalised_endpoint(url: str) -> str:
    """`scheme://host:port/path` with the host lower-cased, loopback names made one, the
    default port made explicit and repeated or trailing slashes dropped."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if host in LOOPBACK or host.startswith("127."):
        host = "loopback"
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    path = re.sub(r"/+", "/", parts.path).rstrip("/")
    return f"{scheme}://{host}:{port}{path}" + (f"?{parts.query}" if parts.query else "")


@register_reviser("openai")
class OpenAIReviser(Reviser):
    def __init__(
        self,
        model: str | None = None,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 60.0,
        retries: int = 4,
        backoff: float = 1.0,
        concurrency: int = 4,
        cache_dir: str | Path | None = None,
        temperature: float = 0.0,
        max_tokens: int = 1024,
    ):
        self.model = model or os.environ.get("OPENAI_MODEL")
        if not self.model:
            raise UserInputError("the openai reviser needs a model name (model=NAME or $OPENAI_MODEL)")
        base = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        self.url = base.rstrip("/") + "/chat/completions"
        self._parts = urllib.parse.urlsplit(self.url)
        if self._parts.scheme not in ("http", "https") or not self._parts.hostname:
            raise UserInputError(f"base_url={base!r}: expected an http:// or https:// URL")
        self.api_key = os.environ.get(api_key_env)
        if timeout <= 0 or retries < 0 or concurrency < 1:
            raise UserInputError(
                f"need timeout > 0, retries >= 0, concurrency >= 1; got {timeout}, {retries}, {concurrency}"
            )
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.concurrency = concurrency
        self.batch_size = 2 * concurrency
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.temperature, self.max_tokens = temperature, max_tokens
        self.stats = {"requests": 0, "retries": 0, "cache_hits": 0, "failed": 0}
        self._lock = threading.Lock()

    def revise_batch(self, requests: Sequence[RevisionRequest]) -> list[Revision]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(self._revise_one, requests))

    def _revise_one(self, request: RevisionRequest) -> Revision:
        body = {
            "model": self.model,
            "messages": [
                {"role": "user", "content": reviser_prompt(request.prompt, request.rejected, request.chosen)}
            ],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        try:
            reply = self._cached_post(body)
        except RequestFailed as err:
            with self._lock:
                self.stats["failed"] += 1
            return Revision(None, failure=f"request failed: {err}", request_failed=True)
        try:
            content = reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            return Revision(None, failure="reply has no choices[0].message.content", reply=json.dumps(reply)[:2000])
        if not isinstance(content, str):
            return Revision(None, failure="reply content is not text", reply=json.dumps(reply)[:2000])
        return parse_reply(content, request.rejected)

    def _cache_path(self, body: dict[str, Any]) -> Path | None:
        if self.cache_dir is None:
            return None
        key = json.dumps({"endpoint": normalised_endpoint(self.url), "body": body}, sort_keys=True)
        key = hashlib.sha256(key.encode()).hexdigest()
        return self.cache_dir / key[:2] / f"{key}.json"

    def _cached_post(self, body: dict[str, Any]) -> Any:
        path = self._cache_path(body)
        if path is not None and path.exists():
            try:
                cached = json.loads(path.read_text())
            except (ValueError, OSError):
                cached = None  # a damaged cache entry is fetched again
            else:
                with self._lock:
                    self.stats["cache_hits"] += 1
                return cached
        reply = self._post(body)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps(reply))
            os.replace(tmp, path)
        return reply

    def _send(self, data: bytes, headers: dict[str, str]) -> tuple[int, Any, bytes]:
        """(status, headers, body) of one POST, all of it within `timeout` seconds: a timer
        shuts the socket down when the deadline passes, which ends any blocked read."""
        parts = self._parts
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(
                parts.hostname, parts.port, timeout=self.timeout, context=ssl.create_default_context()
            )
        else:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=self.timeout)
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            if conn.sock is not None:
                try:
                    conn.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        timer = threading.Timer(self.timeout, expire)
        timer.daemon = True
        timer.start()
        try:
            try:
                conn.connect()
            except (ConnectionRefusedError, socket.gaierror) as err:
                raise Unreachable(f"cannot connect ({err.strerror or err})") from None
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            conn.request("POST", target, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
            if expired.is_set():
                raise TimeoutError
            return response.status, response.headers, raw
        except (OSError, http.client.HTTPException) as err:
            if expired.is_set() or isinstance(err, TimeoutError):
                raise TimeoutError(f"no complete reply within the {self.timeout} s deadline") from None
            raise
        finally:
            timer.cancel()
            conn.close()

    def _post(self, body: dict[str, Any]) -> Any:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(body).encode()
        attempt = 0
        while True:
            with self._lock:
                self.stats["requests"] += 1
            retry_after = None
            try:
                status, reply_headers, raw = self._send(data, headers)
            except Unreachable as err:
                problem, unreachable = str(err), True
            except TimeoutError as err:
                problem, unreachable = str(err), False
            except (OSError, http.client.HTTPException) as err:
                problem, unreachable = f"connection failed ({type(err).__name__}: {err})", False
            else:
                unreachable = False
                text = raw.decode("utf-8", errors="replace")
                if 200 <= status < 300:
                    try:
                        return json.loads(text)
                    except json.JSONDecodeError:
                        problem = f"HTTP {status} with a body that is not JSON: {text[:200]!r}"
                elif status in FATAL_STATUSES:
                    raise ReviserError(f"{self.url}: HTTP {status}: {text[:300]}")
                elif status not in RETRY_STATUSES:
                    raise RequestFailed(f"HTTP {status}: {text[:300]}")
                else:
                    problem = f"HTTP {status}: {text[:300]}"
                    retry_after = _seconds(reply_headers.get("Retry-After"))
            if attempt == self.retries:
                gave_up = f"{problem} (gave up after {self.retries + 1} attempts)"
                if unreachable:
                    raise ReviserError(f"{self.url}: {gave_up}")
                raise RequestFailed(gave_up)
            with self._lock:
                self.stats["retries"] += 1
            time.sleep(min(max(self.backoff * 2**attempt, retry_after or 0.0), MAX_DELAY))
            attempt += 1


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
