"""Token rewards over HTTP: OpenRLHF's remote reward protocol plus per-token fields.

    from tokenreward.serve import build_state, create_app, serve_forever, bind
    state = build_state(rewarder, resources, options={"keep_sum": True}, max_batch=32, max_wait_ms=5)
    serve_forever(create_app(state), state, bind("127.0.0.1", 5000))

`tokenreward serve` does exactly this from the command line (see docs/serve.md). Needs the
`serve` extra (fastapi, uvicorn).
"""

from __future__ import annotations

import dataclasses
import signal
import socket
import threading
from typing import Any

from tokenreward.errors import UserInputError
from tokenreward.options import typed_value
from tokenreward.rewards import Rewarder, build_rewarder, rewarder_options
from tokenreward.serve.app import ServerState, create_app
from tokenreward.serve.batching import MicroBatcher, Scorer, tunable_options
from tokenreward.serve.inputs import PolicyTokenizer
from tokenreward.serve.metrics import Metrics


def special_strings(*tokenizers: Any) -> tuple[str, ...]:
    """The special-token strings of these tokenizers, longest first (None entries skipped)."""
    found = {t for tok in tokenizers if tok is not None for t in getattr(tok, "all_special_tokens", [])}
    return tuple(sorted(found, key=lambda t: (-len(t), t)))


def typed_options(rewarder: str, raw: dict[str, str]) -> dict[str, Any]:
    """`--option NAME=VALUE` texts typed from the rewarder's constructor (`"true"` -> True)."""
    declared = rewarder_options(rewarder)
    return {
        name: typed_value(value, declared[name].annotation, f"--option {name}") if name in declared else value
        for name, value in raw.items()
    }


def describe(
    rewarder: Rewarder, resources: dict[str, Any], policy_tokenizer: Any, batcher: MicroBatcher
) -> dict[str, Any]:
    """What `/info` shows: rewarder, the server's options, model folders, tokenizer, dtype, device, batching."""
    model = getattr(rewarder, "model", None)
    tokenizer = getattr(rewarder, "tokenizer", None)
    options = sorted(batcher.scorer.options)
    return {
        "rewarder": rewarder.name,
        "options": dict(batcher.scorer.server_options),
        "request_options": options,
        "resources": {k: v for k, v in resources.items() if isinstance(v, str) and k not in options},
        "tokenizer": getattr(tokenizer, "name_or_path", None),
        "policy_tokenizer": getattr(policy_tokenizer, "name_or_path", None),
        "dtype": str(getattr(model, "dtype", "")).replace("torch.", "") or None,
        "device": str(getattr(rewarder, "device", "")) or None,
        "loading": dataclasses.asdict(resources["loading"])
        if dataclasses.is_dataclass(resources.get("loading"))
        else None,
        "combine": rewarder.combine,
        "batch_size": rewarder.batch_size,
        "max_batch": batcher.max_batch,
        "max_wait_ms": batcher.max_wait * 1000.0,
        "empty_reward": batcher.scorer.empty_reward,
    }


def build_state(
    rewarder: Rewarder,
    resources: dict[str, Any],
    policy_tokenizer: Any = None,
    max_batch: int = 32,
    max_wait_ms: float = 5.0,
    ready_message: str | None = None,
    options: dict[str, Any] | None = None,
    empty_reward: float = 0.0,
    chat_template: bool = False,
) -> ServerState:
    """Everything the app needs around a loaded rewarder. `resources` and `options` are what
    built it (option names among the resources count as options too); a request's options
    apply on top of them, and its variants are built from both. `empty_reward`: the sequence
    reward of a blank `/get_reward` response. `chat_template`: plain-string prompts are scored
    as one user message of the tokenizer's chat template."""
    from tokenreward.align import offsets_from_ids

    known = tunable_options(type(rewarder))
    server_options = {**{k: v for k, v in resources.items() if k in known}, **(options or {})}
    scorer = Scorer(
        rewarder,
        lambda effective: build_rewarder(rewarder.name, resources, **effective),
        server_options=server_options,
        empty_reward=empty_reward,
    )
    batcher = MicroBatcher(scorer, Metrics(), max_batch, max_wait_ms)
    policy = (
        PolicyTokenizer(lambda ids: offsets_from_ids(policy_tokenizer, ids), len(policy_tokenizer))
        if policy_tokenizer is not None
        else None
    )
    return ServerState(
        batcher,
        describe(rewarder, resources, policy_tokenizer, batcher),
        special_strings(getattr(rewarder, "tokenizer", None), policy_tokenizer),
        policy,
        ready_message,
        chat_template=chat_template,
    )


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on `host:port` (port 0: the system picks one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise UserInputError(f"cannot listen on {host}:{port}: {err.strerror or err}") from err
    return sock


def serve_forever(
    app, state: ServerState, sock: socket.socket, drain_timeout: float = 30.0, log_level: str = "warning"
) -> None:
    """Run uvicorn on `sock` until SIGTERM/SIGINT, then drain: new requests are refused (503,
    and the listening socket closes), those in flight are answered (for up to `drain_timeout`
    seconds), and the call returns normally."""
    import uvicorn

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            state.draining = True
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, log_level=log_level, access_log=False, timeout_graceful_shutdown=drain_timeout)
    server = DrainingServer(config)
    in_main = threading.current_thread() is threading.main_thread()
    # uvicorn re-raises the captured signal once it has shut down; a no-op handler makes that a normal return
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)} if in_main else {}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


__all__ = ["ServerState", "bind", "build_state", "create_app", "serve_forever", "special_strings", "typed_options"]
