"""`tokenreward` command line: every module in `tokenreward.commands` adds its subcommands.

One error boundary: a known failure (the project's errors, `tokenreward.errors`: bad input, a
damaged file, an unwritable output; a missing file; a busy folder; a reviser that cannot be
reached) is printed as one line `tokenreward COMMAND: error: ...` with exit status 2, the
library's `NAME=VALUE` arguments written as the command's flags; anything else (a bug) as one
line saying it is an internal error, with exit status 1. `--debug` (anywhere on the line) or
`TOKENREWARD_DEBUG=1` shows the traceback instead. Options must be spelled in full.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import pkgutil
import sys
from collections.abc import Iterable

from tokenreward.errors import as_flag, flag_spelling

DEBUG_FLAG = "--debug"
COMMAND_KEYS = ("command", "action", "method", "bench")  # the namespace keys naming the subcommand, in order


class Parser(argparse.ArgumentParser):
    """An argument parser that takes no abbreviated options (`--out` is not `--output`) and
    refuses an unknown argument itself: a subcommand's error names the subcommand and shows its
    usage (`tokenreward train sft: error: unrecognized arguments: --lr-typo 1`)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        parsed, rest = super().parse_known_args(args, namespace)
        if rest:
            self.error(f"unrecognized arguments: {' '.join(rest)}")
        return parsed, rest


def build_parser() -> argparse.ArgumentParser:
    import tokenreward.commands as commands

    parser = Parser(
        prog="tokenreward",
        description="Token-level rewards from holistic feedback, the trainers that use them, and a world to measure them.",
        epilog=f"{DEBUG_FLAG} (anywhere) or TOKENREWARD_DEBUG=1: show the traceback of a failure.",
    )
    from tokenreward import __version__

    parser.add_argument("--version", action="version", version=f"tokenreward {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"tokenreward.commands.{info.name}").register(sub)
    return parser


def known_errors() -> tuple[type[BaseException], ...]:
    """The project's error types for failures the user can fix (`tokenreward.errors`, a busy
    folder, a reviser that cannot be reached), an OS error (a missing or unreadable file, a full
    disk) and a damaged safetensors file. A `ValueError`, `KeyError` or `TypeError` of anything
    else is a bug: an internal error."""
    from tokenreward.errors import REPORTED
    from tokenreward.io import FolderBusyError
    from tokenreward.revisers.base import ReviserError

    errors: list[type[BaseException]] = [*REPORTED, OSError, FolderBusyError, ReviserError]
    try:
        from safetensors import SafetensorError

        errors.append(SafetensorError)
    except ImportError:
        pass
    return tuple(errors)


def describe(err: BaseException, flags: Iterable[str] = ()) -> str:
    """One line for the user: an OS error as `FILE: reason`, a KeyError without quotes, the
    library's arguments `NAME=VALUE` that are `flags` of the command as `--name VALUE`."""
    if isinstance(err, OSError) and err.strerror and err.filename is not None:
        return f"{err.filename}: {err.strerror}"
    if isinstance(err, KeyError) and err.args:
        return flag_spelling(str(err.args[0]), flags)
    text = str(err).strip() or type(err).__name__
    return flag_spelling(" ".join(line.strip() for line in text.splitlines() if line.strip()), flags)


def command_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> set[str]:
    """The argument names of the command that ran whose flag is `--name` (`reward_model` for
    `--reward-model`): the names its library errors use for them."""
    for name in (getattr(args, key, None) for key in COMMAND_KEYS):
        choices = next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})
        if name in choices:
            parser = choices[name]
    return {a.dest for a in parser._actions if as_flag(a.dest) in a.option_strings}


def command_name(args: argparse.Namespace | None) -> str:
    if args is None:
        return "tokenreward"
    parts = [getattr(args, key, None) for key in COMMAND_KEYS]
    return "tokenreward " + " ".join(str(p) for p in parts if isinstance(p, str))


def main(argv: list[str] | None = None) -> int:
    as_process = argv is None  # the `tokenreward` executable, not a call from Python
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    debug = DEBUG_FLAG in argv[:cut] or os.environ.get("TOKENREWARD_DEBUG", "") not in ("", "0")
    argv = [a for k, a in enumerate(argv) if not (k < cut and a == DEBUG_FLAG)]
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, or a usage error argparse has already printed
        return done.code if isinstance(done.code, int) else 2
    if as_process:
        # The imported modules' objects live until exit: move them out of the cyclic collector's
        # reach, whose full passes over them otherwise land inside whatever allocates most (RED's
        # scoring ran 1.24x uniform's in `bench credit` because of it; 1.03x frozen).
        gc.freeze()
    try:
        result = args.func(args)  # trainers return their run folder; only an int is an exit status
        return result if isinstance(result, int) else 0
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{command_name(args)}: interrupted", file=sys.stderr)
        return 130
    except known_errors() as err:
        if debug:
            raise
        print(f"{command_name(args)}: error: {describe(err, command_flags(parser, args))}", file=sys.stderr)
        return 2
    except Exception as err:
        if debug:
            raise
        print(
            f"{command_name(args)}: internal error: {type(err).__name__}: {describe(err)} "
            f"(rerun with {DEBUG_FLAG} for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
