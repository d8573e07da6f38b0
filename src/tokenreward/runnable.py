"""Registries of runnable jobs (trainers, benchmarks): a name, a config dataclass, a function."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenreward.errors import UserInputError
from tokenreward.registry import Registry

GIVEN = "_given_flags"  # the namespace attribute naming the config fields given on the command line
RUN_SETTINGS = "run.json"


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
    if command == "train":
        names._parser_class = resumable_parser(names._parser_class)
    for name, spec in registry.items():
        child = names.add_parser(name, help=escape_help(spec.help), description=escape_help(spec.help))
        add_config_arguments(child, spec.config)
        if command == "train":
            child.defer_required()
        child.set_defaults(
            func=lambda args, spec=spec, name=name: run_locked(
                spec, name, config_from_args(spec.config, args, **recorded_settings(spec.config, args)), command
            )
        )


def resumable_parser(base: type) -> type:
    """A parser class for the trainers: it records which flags were given (`GIVEN` in the
    namespace), and with `--resume` on a run folder holding `run.json` it does not ask for the
    required flags (the recorded settings supply them)."""

    class ResumableParser(base):
        def defer_required(self) -> None:
            self.deferred = [a for a in self._actions if a.required and a.dest != "out"]
            for action in self.deferred:
                action.required = False

        def parse_known_args(self, args=None, namespace=None):
            parsed, rest = super().parse_known_args(args, namespace)
            given = {a.split("=", 1)[0] for a in (args or []) if a.startswith("--")}
            setattr(
                parsed,
                GIVEN,
                {self._option_string_actions[a].dest for a in given & self._option_string_actions.keys()},
            )
            recorded = getattr(parsed, "resume", False) and (Path(str(parsed.out)) / RUN_SETTINGS).is_file()
            missing = [a for a in getattr(self, "deferred", ()) if a.dest not in getattr(parsed, GIVEN)]
            if missing and not recorded:
                self.error("the following arguments are required: " + ", ".join(a.option_strings[0] for a in missing))
            return parsed, rest

    return ResumableParser


def recorded_settings(cls: type, args) -> dict[str, Any]:
    """With `--resume`: the settings recorded in `OUT/run.json` for every flag not given (a flag
    given must match the recorded value, as `RunFolder` checks, unless it may change)."""
    import dataclasses
    import json
    import typing

    out = getattr(args, "out", None)
    if not getattr(args, "resume", False) or out is None or not (Path(str(out)) / RUN_SETTINGS).is_file():
        return {}
    try:
        recorded = json.loads((Path(str(out)) / RUN_SETTINGS).read_text())
    except (OSError, ValueError) as err:
        raise UserInputError(
            f"--resume: {Path(str(out)) / RUN_SETTINGS} cannot be read ({err}); start a new run"
        ) from None
    hints = typing.get_type_hints(cls)
    given = getattr(args, GIVEN, set())
    return {
        f.name: as_field_type(recorded[f.name], hints[f.name])
        for f in dataclasses.fields(cls)
        if f.init and f.name in recorded and f.name not in given
    }


def as_field_type(value: Any, annotation: Any) -> Any:
    """A value read back from run.json (paths as strings, tuples as lists) in the field's type."""
    import typing

    if value is None:
        return None
    kinds = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    kind = typing.get_origin(kinds[0]) or kinds[0]
    if kind is Path:
        return Path(value)
    if kind is tuple and isinstance(value, list):
        return tuple(value)
    return value


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
