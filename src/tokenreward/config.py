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

from tokenreward.errors import UserInputError

C = TypeVar("C")
BOUND_SIGNS = (("min", ">="), ("gt", ">"), ("max", "<="), ("lt", "<"))


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


ARGPARSE_KEYS = ("type", "choices", "metavar", "action")  # metadata handed to `add_argument` as they are


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """One flag per field. Besides "help", "aliases" and the bounds, a field's metadata may give
    argparse's own "type" (a parse-time check), "choices" (a list, or a function returning one),
    "metavar" and "action" ("append", "store_true"), and a "group" title to list the flag under."""
    hints = typing.get_type_hints(cls)
    groups: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        title = f.metadata.get("group")
        if title and title not in groups:
            groups[title] = parser.add_argument_group(title)
        target = groups[title] if title else parser
        flags = ["--" + f.name.replace("_", "-"), *f.metadata.get("aliases", ())]
        tp, _ = _resolve(hints[f.name])
        default = (
            f.default
            if f.default is not dataclasses.MISSING
            else (f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        )
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        help_text = f.metadata.get("help", "")
        bounds = [f"{sign} {f.metadata[key]}" for key, sign in BOUND_SIGNS if key in f.metadata]
        if bounds:
            help_text = f"{help_text}; {', '.join(bounds)}"
        given = {key: f.metadata[key] for key in ARGPARSE_KEYS if key in f.metadata}
        if default is not None and not required and "(default:" not in help_text and "action" not in given:
            help_text = f"{help_text} (default: {default})".strip()
        kwargs: dict[str, Any] = {
            "dest": f.name,
            "help": escape_help(help_text),
            "default": default,
            "required": required,
        }
        if callable(given.get("choices")):
            given["choices"] = given["choices"]()
        if given.get("action") in ("append", "store_true"):
            target.add_argument(*flags, **kwargs, **given)
            continue
        if tp is bool:
            target.add_argument(*flags, action=argparse.BooleanOptionalAction, **kwargs)
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
        target.add_argument(*flags, **{**kwargs, **given})


def config_from_args(cls: type[C], args: argparse.Namespace, **overrides: Any) -> C:
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    values = {k: v for k, v in vars(args).items() if k in names}
    values.update(overrides)
    return cls(**values)


def _number_kinds(tp: Any) -> set[type]:
    """`{int}`, `{float}`, `{int, float}` for a numeric field (`int | None`, ...), else empty."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp) if origin in (typing.Union, types.UnionType) else (tp,)
    return {a for a in args if a in (int, float)}


def range_problem(value: Any, metadata: Any, kinds: set[type]) -> str | None:
    """Why `value` does not fit a numeric field of these kinds and bounds (None if it does): a
    bool is not a number, an int field takes a whole number, a float field a finite number (an
    infinite one only with `allow_inf` in the metadata), within `min` (>=), `gt` (>), `max`
    (<=), `lt` (<)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        wanted = "a whole number" if kinds == {int} else "a number"
        return f"must be {wanted}, got {value!r}"
    if isinstance(value, float) and float not in kinds:
        return f"must be a whole number, got {value!r}"
    if math.isnan(value) or (math.isinf(value) and not metadata.get("allow_inf")):
        return f"must be a finite number, got {value}"
    for key, fails, words in (
        ("min", lambda v, b: v < b, "at least"),
        ("gt", lambda v, b: v <= b, "greater than"),
        ("max", lambda v, b: v > b, "at most"),
        ("lt", lambda v, b: v >= b, "less than"),
    ):
        if key in metadata and fails(value, metadata[key]):
            return f"must be {words} {metadata[key]}, got {value}"
    return None


def validate_ranges(config: Any) -> None:
    """Check every numeric (int / float) field: a number of its type, finite, within the bounds
    of its metadata (`min` >=, `gt` >, `max` <=, `lt` <); None passes where the field allows it.
    The error names the field's flag."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        kinds = _number_kinds(hints.get(f.name))
        value = getattr(config, f.name)
        if not kinds or value is None:
            continue
        problem = range_problem(value, f.metadata, kinds)
        if problem:
            raise UserInputError(f"--{f.name.replace('_', '-')} {problem}")
