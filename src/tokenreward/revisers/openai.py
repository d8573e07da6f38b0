"""An OpenAI-compatible chat-completions reviser (OpenAI, vLLM, llama.cpp, TGI, ...).

Standard library only (`urllib`). It sends the TLCR Appendix A prompt as one user message
to `BASE_URL/chat/completions` and parses the reply (`tokenreward.revisers.prompt`).

- Configuration: `base_url` (else `$OPENAI_BASE_URL`, else the OpenAI API), `model` (else
  `$OPENAI_MODEL`), the key read from the environment variable `api_key_env` (no header when
  unset, for local servers).
- Robustness: each request has a `timeout`; timeouts, connection errors and HTTP 408 / 409 /
  429 / 5xx are retried up to `retries` times with exponential backoff (`backoff * 2**k`
  seconds, or the server's `Retry-After` when longer, at most 60 s); other HTTP errors and a
  server that stays down raise `ReviserError`. At most `concurrency` requests are in flight.
- Cache: with `cache_dir`, each successful reply is stored under the SHA-256 of the URL and
  request body, so a rerun never pays twice (a cached unparsable reply stays failed).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

from tokenreward.revisers.base import Reviser, ReviserError, Revision, RevisionRequest, register_reviser
from tokenreward.revisers.prompt import parse_reply, reviser_prompt

DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRY_STATUSES = {408, 409, 429, 500, 502, 503, 504}
MAX_DELAY = 60.0


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
            raise ValueError("the openai reviser needs a model name (--model NAME or $OPENAI_MODEL)")
        base = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        self.url = base.rstrip("/") + "/chat/completions"
        self.api_key = os.environ.get(api_key_env)
        if timeout <= 0 or retries < 0 or concurrency < 1:
            raise ValueError(f"need timeout > 0, retries >= 0, concurrency >= 1; got {timeout}, {retries}, {concurrency}")
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.concurrency = concurrency
        self.batch_size = 2 * concurrency
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.temperature, self.max_tokens = temperature, max_tokens
        self.stats = {"requests": 0, "retries": 0, "cache_hits": 0}
        self._lock = threading.Lock()

    def revise_batch(self, requests: Sequence[RevisionRequest]) -> list[Revision]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(self._revise_one, requests))

    def _revise_one(self, request: RevisionRequest) -> Revision:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": reviser_prompt(request.prompt, request.rejected, request.chosen)}],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        reply = self._cached_post(body)
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
        key = hashlib.sha256(json.dumps({"url": self.url, "body": body}, sort_keys=True).encode()).hexdigest()
        return self.cache_dir / key[:2] / f"{key}.json"

    def _cached_post(self, body: dict[str, Any]) -> Any:
        path = self._cache_path(body)
        if path is not None and path.exists():
            with self._lock:
                self.stats["cache_hits"] += 1
            return json.loads(path.read_text())
        reply = self._post(body)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps(reply))
            os.replace(tmp, path)
        return reply

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
                request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    text = response.read().decode("utf-8", errors="replace")
                try:
                    return json.loads(text)
                except json.JSONDecodeError:
                    return {"unparsable_body": text[:2000]}
            except urllib.error.HTTPError as err:
                detail = err.read().decode("utf-8", errors="replace")[:300]
                problem = f"HTTP {err.code}: {detail}"
                if err.code not in RETRY_STATUSES:
                    raise ReviserError(f"{self.url}: {problem}") from None
                retry_after = _seconds(err.headers.get("Retry-After"))
            except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as err:
                reason = getattr(err, "reason", err)
                problem = f"timed out after {self.timeout} s" if isinstance(reason, TimeoutError) else f"{reason}"
            if attempt == self.retries:
                raise ReviserError(f"{self.url}: {problem} (gave up after {self.retries + 1} attempts)")
            with self._lock:
                self.stats["retries"] += 1
            time.sleep(min(max(self.backoff * 2**attempt, retry_after or 0.0), MAX_DELAY))
            attempt += 1


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
