"""`tokenreward train METHOD ...`: one subcommand per registered trainer, flags from its config."""

from __future__ import annotations

from tokenreward.config import add_config_arguments, config_from_args, escape_help
from tokenreward.trainers import TRAINERS


def register(sub) -> None:
    parser = sub.add_parser("train", help="train a model (PPO family, preference optimisation, reward models, ...)")
    methods = parser.add_subparsers(dest="method", required=True, metavar="METHOD")
    for name, spec in TRAINERS.items():
        method = methods.add_parser(name, help=escape_help(spec.help), description=escape_help(spec.help))
        add_config_arguments(method, spec.config)
        method.set_defaults(func=lambda args, spec=spec, name=name: spec.run(config_from_args(spec.config, args), name))
