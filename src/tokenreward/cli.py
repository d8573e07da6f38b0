"""`tokenreward` command line: every module in `tokenreward.commands` adds its subcommands."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys


def build_parser() -> argparse.ArgumentParser:
    import tokenreward.commands as commands

    parser = argparse.ArgumentParser(
        prog="tokenreward",
        description="Token-level rewards from holistic feedback, the trainers that use them, and a world to measure them.",
    )
    from tokenreward import __version__

    parser.add_argument("--version", action="version", version=f"tokenreward {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"tokenreward.commands.{info.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args.func(args)  # trainers return their run folder; only an int is an exit status
        return result if isinstance(result, int) else 0
    except (ValueError, KeyError, FileNotFoundError, FloatingPointError, TypeError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"tokenreward {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
