"""`tokenreward bench NAME ...`: one subcommand per registered benchmark, flags from its config."""

from __future__ import annotations

from tokenreward.bench import BENCHES
from tokenreward.config import add_config_arguments, config_from_args, escape_help


def register(sub) -> None:
    parser = sub.add_parser("bench", help="benchmarks on the world (credit assignment, RL)")
    names = parser.add_subparsers(dest="bench", required=True, metavar="BENCH")
    for name, spec in BENCHES.items():
        bench = names.add_parser(name, help=escape_help(spec.help), description=escape_help(spec.help))
        add_config_arguments(bench, spec.config)
        bench.set_defaults(func=lambda args, spec=spec, name=name: spec.run(config_from_args(spec.config, args), name))
