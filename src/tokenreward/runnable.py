"""Registries of runnable jobs (trainers, benchmarks): a name, a config dataclass, a function."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tokenreward.registry import Registry


@dataclass(frozen=True)
class Runnable:
    """`run(config, name)` does the job; `name` lets one function serve several methods
    (e.g. `dpo` and `simpo` share the preference trainer)."""

    config: type
    run: Callable[[Any, str], Any]
    help: str


def add_runnable_commands(sub, command: str, help: str, registry: Registry[Runnable], dest: str) -> None:
    """`tokenreward COMMAND NAME --flags`: one subcommand per registry entry, flags generated
    from its config dataclass; running it calls `run(config, NAME)`."""
    from tokenreward.config import add_config_arguments, config_from_args, escape_help

    parser = sub.add_parser(command, help=help)
    names = parser.add_subparsers(dest=dest, required=True, metavar=dest.upper())
    for name, spec in registry.items():
        child = names.add_parser(name, help=escape_help(spec.help), description=escape_help(spec.help))
        add_config_arguments(child, spec.config)
        child.set_defaults(
            func=lambda args, spec=spec, name=name: run_locked(
                spec, name, config_from_args(spec.config, args), command
            )
        )


def run_locked(spec: Runnable, name: str, config: Any, command: str) -> Any:
    """`spec.run(config, name)`; a trainer holds the lock of its `out` folder (one writer per
    folder; the main process of a multi-process launch takes it, the others rely on it)."""
    import os

    out = getattr(config, "out", None)
    if command != "train" or out is None or os.path.isfile(out) or os.environ.get("RANK", "0") != "0":
        return spec.run(config, name)  # (a file as --out: the trainer says so, naming the flag)
    from tokenreward.io import FolderLock

    with FolderLock(out, f"tokenreward {command} {name}"):
        return spec.run(config, name)


def registrar(registry: Registry[Runnable]):
    def register(name: str, config: type, help: str = ""):
        def decorator(fn: Callable[[Any, str], Any]):
            registry.register(name)(Runnable(config, fn, help or (fn.__doc__ or "").strip().split("\n")[0]))
            return fn

        return decorator

    return register
