"""Typed dataclass configs and the command-line flags generated from them.

Each trainer / benchmark has a dataclass config whose fields carry their defaults (from
docs/methods.md) and a `help` in `field(metadata={"help": ...})`. `add_config_arguments` turns the
fields into `--kebab-case` flags; `config_from_args` builds the dataclass back.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

C = TypeVar("C")


def _resolve(tp: Any) -> tuple[Any, bool]:
    """(base type, is_optional) for `X`, `X | None`, `Optional[X]`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(tp))
    return tp, False


def escape_help(text: str) -> str:
    """argparse formats help strings with `%`; keep a literal `%` literal."""
    return text.replace("%", "%%")


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        flags = ["--" + f.name.replace("_", "-"), *f.metadata.get("aliases", ())]
        tp, _ = _resolve(hints[f.name])
        default = (
            f.default
            if f.default is not dataclasses.MISSING
            else (f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        )
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        help_text = f.metadata.get("help", "")
        bounds = [f">= {f.metadata['min']}" for _ in [0] if "min" in f.metadata] + [
            f"> {f.metadata['gt']}" for _ in [0] if "gt" in f.metadata
        ]
        if bounds:
            help_text = f"{help_text}; {', '.join(bounds)}"
        if default is not None and not required:
            help_text = f"{help_text} (default: {default})".strip()
        kwargs: dict[str, Any] = {
            "dest": f.name,
            "help": escape_help(help_text),
            "default": default,
            "required": required,
        }
        if tp is bool:
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, **kwargs)
            continue
        if typing.get_origin(tp) is Literal:
            kwargs["choices"] = list(typing.get_args(tp))
            kwargs["type"] = type(kwargs["choices"][0])
        elif typing.get_origin(tp) in (list, tuple):
            item = typing.get_args(tp)[0] if typing.get_args(tp) else str
            kwargs["type"] = lambda text, item=item: [item(v) for v in text.split(",") if v]
            kwargs["metavar"] = "A,B,..."
        elif tp in (int, float, str, Path):
            kwargs["type"] = tp
        parser.add_argument(*flags, **kwargs)


def config_from_args(cls: type[C], args: argparse.Namespace, **overrides: Any) -> C:
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    values = {k: v for k, v in vars(args).items() if k in names}
    values.update(overrides)
    return cls(**values)


def validate_ranges(config: Any) -> None:
    """Check every field with a `min` (>=) or `gt` (>) bound in its metadata; None passes."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, float) and math.isnan(value):
            raise ValueError(f"{flag} must be a number, got {value}")
        if "min" in f.metadata and value < f.metadata["min"]:
            raise ValueError(f"{flag} must be at least {f.metadata['min']}, got {value}")
        if "gt" in f.metadata and value <= f.metadata["gt"]:
            raise ValueError(f"{flag} must be greater than {f.metadata['gt']}, got {value}")
