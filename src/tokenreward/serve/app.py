"""The FastAPI application: endpoints, error answers, metrics, draining.

- `POST /get_reward` (OpenRLHF's remote reward protocol) answers `{"rewards", "scores",
  "extra_logs", "token_rewards", "token_offsets"}`: `rewards[i] = scores[i]` is the sequence
  reward of sample `i`, `token_rewards[i]` its per-token rewards and `token_offsets[i]` their
  `[start, end]` character spans in the response (`query[i][len(prompts[i]):]`, or the decoded
  `response_ids[i]`); `extra_logs` holds per-sample `token_reward_sum` and `num_tokens`. With a
  rewarder that scores steps (`prm`), `step_scores[i]` lists sample `i`'s step scores (empty
  for a blank response), and each `/v1/token_rewards` record has its `step_scores`.
- `POST /v1/token_rewards` answers `{"results": [record, ...]}`, each record the JSON line of
  `tokenreward score --format json` (its `row` the pair's index in the request).
- A sample that cannot be scored gets `null` in those lists (or `{"error": ...}` as its
  result) and its message in `"errors"`; when every sample of a request fails, the request is
  answered 422 (or 500 for a server fault) with `{"error": first message, "errors": [...]}`.
  A body the server refuses as a whole is answered 4xx with `{"error": "FIELD: problem"}`.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException

from tokenreward.encoding import as_user_message
from tokenreward.serve.batching import MicroBatcher, Scored
from tokenreward.serve.inputs import (
    BadRequest,
    PolicyTokenizer,
    Sample,
    get_reward_samples,
    read_options,
    token_reward_samples,
)
from tokenreward.serve.metrics import Metrics


@dataclass
class ServerState:
    """What the endpoints share: the batcher, how to read `/get_reward` bodies (special-token
    strings, the policy tokenizer), and `/info`."""

    batcher: MicroBatcher
    info: dict[str, Any]
    specials: tuple[str, ...] = ()
    policy: PolicyTokenizer | None = None
    ready_message: str | None = None
    draining: bool = False
    chat_template: bool = False  # plain-string prompts become one user message (`--chat-template`)

    @property
    def metrics(self) -> Metrics:
        return self.batcher.metrics


def error_response(message: str, status: int, **extra: Any) -> JSONResponse:
    """`{"error": message, ...}`; characters that UTF-8 cannot hold (a lone surrogate the client
    sent, quoted back) are shown as escapes."""
    safe = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return JSONResponse({"error": safe, **extra}, status_code=status)


def refuse_constant(name: str) -> Any:
    raise BadRequest(f"body: not valid JSON ({name} is not a JSON number)")


#: the largest request body read (a bigger one is refused with 413 before it is read whole)
MAX_BODY_BYTES = 64 * 1024 * 1024


async def read_json(request: Request) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise BadRequest(f"body: {int(declared)} bytes, more than the {MAX_BODY_BYTES} the server reads", 413)
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise BadRequest(f"body: more than the {MAX_BODY_BYTES} bytes the server reads", 413)
    try:
        return json.loads(bytes(raw), parse_constant=refuse_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BadRequest(f"body: not valid JSON ({getattr(err, 'msg', err)})") from err
    except RecursionError:
        raise BadRequest("body: arrays or objects nested too deeply to read") from None


def failure(outcomes: list[Scored]) -> JSONResponse | None:
    """The 4xx/5xx answer when no sample of the request could be scored, else None."""
    if any(o.error is None for o in outcomes):
        return None
    return error_response(outcomes[0].error, max(o.status for o in outcomes), errors=[o.error for o in outcomes])


def with_errors(payload: dict[str, Any], outcomes: list[Scored]) -> dict[str, Any]:
    if any(o.error for o in outcomes):
        payload["errors"] = [o.error for o in outcomes]
    return payload


def get_reward_payload(outcomes: list[Scored]) -> dict[str, Any]:
    records = [o.record for o in outcomes]

    def each(read: Callable[[dict[str, Any]], Any]) -> list[Any]:
        return [read(r) if r is not None else None for r in records]

    rewards = each(lambda r: r["sequence_reward"])
    steps = (
        {"step_scores": each(lambda r: r.get("step_scores", []))}
        if any("step_scores" in r for r in records if r)
        else {}
    )
    return with_errors(
        {
            "rewards": rewards,
            "scores": rewards,
            "extra_logs": {
                "token_reward_sum": each(lambda r: float(sum(r["rewards"]))),
                "num_tokens": each(lambda r: len(r["rewards"])),
            },
            "token_rewards": each(lambda r: r["rewards"]),
            "token_offsets": each(lambda r: r["offsets"]),
            **steps,
        },
        outcomes,
    )


def route(app: FastAPI, path: str, method: str):
    """Register `endpoint(request)` as a plain Starlette route of the app: the scoring endpoints
    read their bodies themselves, so FastAPI's per-request parameter solving is skipped."""

    def register(endpoint):
        app.add_route(path, endpoint, methods=[method])
        return endpoint

    return register


def create_app(state: ServerState) -> FastAPI:
    """The application around a started-on-startup `MicroBatcher` (stopped on shutdown)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await state.batcher.start()
        if state.ready_message:
            print(state.ready_message, file=sys.stderr, flush=True)
        yield
        await state.batcher.stop()

    app = FastAPI(title="tokenreward serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    async def scored(
        endpoint: str, request: Request, read_samples: Callable[[Any], list[Sample]], answer
    ) -> JSONResponse:
        start = time.perf_counter()
        try:
            if state.draining:
                response = error_response("the server is shutting down", 503)
            else:
                body = await read_json(request)
                samples = read_samples(body)
                if state.chat_template:
                    samples = [replace(s, prompt=as_user_message(s.prompt)) for s in samples]
                rewarder = await state.batcher.rewarder_for(read_options(body, state.batcher.scorer.options))
                outcomes = await state.batcher.submit(rewarder, samples)
                response = failure(outcomes) or JSONResponse(answer(outcomes))
        except BadRequest as err:
            response = error_response(str(err), err.status)
        except Exception as err:  # noqa: BLE001 - answer, never crash
            response = error_response(f"internal error: {type(err).__name__}: {err}", 500)
        state.metrics.request(endpoint, response.status_code, time.perf_counter() - start)
        return response

    @route(app, "/get_reward", "POST")
    async def get_reward(request: Request) -> JSONResponse:
        return await scored(
            "/get_reward",
            request,
            lambda body: get_reward_samples(body, state.specials, state.policy),
            get_reward_payload,
        )

    @route(app, "/v1/token_rewards", "POST")
    async def token_rewards(request: Request) -> JSONResponse:
        def answer(outcomes: list[Scored]) -> dict[str, Any]:
            results = [
                {**o.record, "row": i} if o.error is None else {"error": o.error, "row": i}
                for i, o in enumerate(outcomes)
            ]
            return with_errors({"results": results}, outcomes)

        return await scored("/v1/token_rewards", request, token_reward_samples, answer)

    @app.get("/health")
    async def health() -> JSONResponse:
        if state.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/info")
    async def info() -> JSONResponse:
        return JSONResponse(state.info)

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(state.metrics.text(), media_type="text/plain; version=0.0.4")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        state.metrics.request("other", err.status_code)
        return error_response(f"{request.method} {request.url.path}: {err.detail}", err.status_code)

    @app.exception_handler(Exception)
    async def server_error(request: Request, err: Exception) -> JSONResponse:
        state.metrics.request("other", 500)
        return error_response(f"internal error: {type(err).__name__}: {err}", 500)

    return app
