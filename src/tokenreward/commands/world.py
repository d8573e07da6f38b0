"""`tokenreward world build|info`: build the world (resumable) or show where it is and what it measured."""

from __future__ import annotations

import json

from tokenreward.commands._args import at_least


def _build(args) -> int:
    from transformers.utils import logging

    from tokenreward.io import check_writable
    from tokenreward.worldbuild.build import build_world

    if args.out is not None:
        check_writable(args.out, "--out", folder=True)
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    world = build_world(
        args.out,
        size=args.size,
        seed=args.seed,
        progress=not args.no_progress,
        families=args.families,
        reward_backbone=args.reward_backbone,
    )
    print(f"world ready at {world.root}")
    print(f"reward model: {world.reward_model_description()}")
    print(json.dumps(world.metrics, indent=1))
    seconds = world.config.get("stage_seconds", {})
    if seconds:
        print(
            "seconds per stage (this build and the runs it continued): "
            + json.dumps(seconds)
            + f", total {sum(seconds.values()):.0f}"
        )
    return 0


def _info(args) -> int:
    from tokenreward.world import open_world

    world = open_world(args.world)
    print(f"{world!r}")
    print(f"reward model: {world.reward_model_description()}")
    print(json.dumps(world.metrics, indent=1))
    return 0


def register(sub) -> None:
    from tokenreward.world.families import DEFAULT_FAMILIES

    parser = sub.add_parser(
        "world", help="build or inspect the synthetic world (data, tokenizer, policy, reward model)"
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = actions.add_parser("build", help="build the world (continues a killed build where it stopped)")
    build.add_argument(
        "--size",
        choices=["small", "full"],
        default="full",
        help="small: about 20 s on 2 cores, for tests; full: about 2 min on 2 cores (default: full)",
    )
    build.add_argument("--seed", type=at_least(0), default=0, help="random seed, >= 0 (default: 0)")
    build.add_argument(
        "--out", default=None, help="world folder (default: ~/.cache/tokenreward/world-SIZE, found by other commands)"
    )
    build.add_argument(
        "--families",
        nargs="+",
        default=list(DEFAULT_FAMILIES),
        metavar="FAMILY",
        help=f"the task families of the world, in order (default: {' '.join(DEFAULT_FAMILIES)}; "
        "the others, e.g. multistep, opt in: each module of tokenreward.world.families is one)",
    )
    build.add_argument(
        "--reward-backbone",
        default=None,
        metavar="PATH",
        help="start the reward model from this pretrained causal LM (folder or GGUF file), with its own "
        "tokenizer, LoRA-trained on a seeded subsample of the reward pairs (default: the world's GPT-2; "
        "default folder then ~/.cache/tokenreward/world-SIZE-NAME)",
    )
    build.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    build.set_defaults(func=_build)
    info = actions.add_parser("info", help="where the default world is and what it measured")
    info.add_argument("--world", default=None, help="world folder (default: $TOKENREWARD_WORLD or the cached world)")
    info.set_defaults(func=_info)
