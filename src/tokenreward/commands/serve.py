"""`tokenreward serve`: a token-reward server speaking OpenRLHF's remote reward protocol.

    tokenreward serve --rewarder red --reward-model RM_DIR --option keep_sum=true --port 5000
    tokenreward serve --rewarder red --world WORLD_DIR --policy-tokenizer POLICY_DIR --max-batch 64

The rewarder is loaded once (the flags of `tokenreward score`); requests from all clients are
micro-batched (`--max-batch` samples or `--max-wait-ms`, whichever comes first). Endpoints:
`POST /get_reward` (OpenRLHF), `POST /v1/token_rewards` (records of `tokenreward score
--format json`), `GET /health`, `GET /info`, `GET /metrics`. SIGTERM drains and exits 0.
"""

from __future__ import annotations

import argparse
import math

from tokenreward.commands._options import ServeOptions
from tokenreward.commands.score import add_rewarder_arguments, gather_resources, load_rewarder
from tokenreward.config import add_config_arguments
from tokenreward.errors import UserInputError
from tokenreward.options import parse_assignments


def register(sub) -> None:
    parser = sub.add_parser(
        "serve",
        help="serve token rewards over HTTP (OpenRLHF's /get_reward, /v1/token_rewards), micro-batched",
        description=__doc__.split("\n\n")[0],
    )
    add_rewarder_arguments(parser)
    add_config_arguments(parser, ServeOptions)
    parser.set_defaults(func=run)


def check_settings(args: argparse.Namespace) -> None:
    if not 0 <= args.port <= 65535:
        raise UserInputError(f"--port must lie in [0, 65535], got {args.port}")
    if args.max_batch < 1:
        raise UserInputError(f"--max-batch must be at least 1, got {args.max_batch}")
    if not 0 <= args.max_wait_ms < float("inf"):
        raise UserInputError(f"--max-wait-ms must be a finite number of at least 0, got {args.max_wait_ms}")
    if not 0 < args.drain_timeout < float("inf"):
        raise UserInputError(f"--drain-timeout must be a finite positive number, got {args.drain_timeout}")
    if not math.isfinite(args.empty_reward):
        raise UserInputError(f"--empty-reward must be a finite number, got {args.empty_reward}")


def server_state(args: argparse.Namespace, url: str):
    """The server around the rewarder the flags describe, with the `--option`s it was built
    with as the server's options (requests' options apply on top of them)."""
    from tokenreward.models import load_tokenizer
    from tokenreward.serve import build_state, typed_options

    resources = gather_resources(args)
    rewarder = load_rewarder(args)
    policy_tokenizer = load_tokenizer(args.policy_tokenizer) if args.policy_tokenizer else None
    return build_state(
        rewarder,
        resources,
        policy_tokenizer,
        args.max_batch,
        args.max_wait_ms,
        ready_message=f"tokenreward serve: {rewarder.name} ready on {url}",
        options=typed_options(args.rewarder, parse_assignments(args.option, "--option")),
        empty_reward=args.empty_reward,
        chat_template=args.chat_template,
    )


def run(args: argparse.Namespace) -> int:
    check_settings(args)
    try:
        from tokenreward.serve import bind, create_app, serve_forever
    except ImportError as err:
        raise UserInputError(
            f"serving needs the serve extra ({err.name} is missing): pip install 'tokenreward[serve]'"
        ) from err

    sock = bind(args.host, args.port)  # before loading, so a taken port fails fast
    host, port = sock.getsockname()[:2]
    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    try:
        state = server_state(args, url)
    except BaseException:
        sock.close()
        raise
    serve_forever(create_app(state), state, sock, args.drain_timeout, args.log_level)
    return 0
