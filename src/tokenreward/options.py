"""`NAME=VALUE` settings from the command line, typed from the annotations of what takes them.

One parser (`parse_assignments`) reads `NAME=VALUE` strings into raw text; `typed_value`
turns a text value into the annotated type: `bool` from true/false/yes/no/1/0 (any case),
`int`, `float`, `str` as given. Anything else is an error naming the setting and the value.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Iterable
from typing import Any

from tokenreward.errors import UserInputError

TRUE, FALSE = ("true", "yes", "1"), ("false", "no", "0")


def parse_assignments(items: Iterable[str], flag: str) -> dict[str, str]:
    """`NAME=VALUE` strings -> {name: raw value}; dashes in names read as underscores."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UserInputError(f"{flag} expects NAME=VALUE, got {item!r}")
        out[name.strip().replace("-", "_")] = value.strip()
    return out


def parse_bool(text: str, name: str) -> bool:
    """true/yes/1 -> True, false/no/0 -> False (any case); anything else names `name`."""
    lowered = text.strip().lower()
    if lowered in TRUE or lowered in FALSE:
        return lowered in TRUE
    raise UserInputError(f"{name} takes true/false (yes/no, 1/0), got {text!r}")


def annotation_kinds(annotation: Any) -> set[type]:
    """The plain types an annotation allows (`float | None` -> {float, NoneType}); strings such
    as `"bool"` (postponed annotations) are read by name."""
    if isinstance(annotation, str):
        names = {part.strip() for part in annotation.replace("Optional[", "").rstrip("]").split("|")}
        known = {"bool": bool, "int": int, "float": float, "str": str, "None": type(None)}
        return {known[n] for n in names if n in known} or {object}
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return set().union(*(annotation_kinds(a) for a in typing.get_args(annotation)))
    return {annotation} if isinstance(annotation, type) else {object}


def typed_value(text: str, annotation: Any, name: str) -> Any:
    """`text` read as the annotated type (bool before int: a bool is not a number here)."""
    kinds = annotation_kinds(annotation)
    if type(None) in kinds and text.strip().lower() in ("none", "null"):
        return None
    if bool in kinds:
        return parse_bool(text, name)
    for kind in (int, float):
        if kind in kinds:
            try:
                value = kind(text)
            except ValueError:
                continue
            if kind is float and not math.isfinite(value):
                raise UserInputError(f"{name} takes a finite number, got {text!r}")
            return value
    if kinds & {str, object}:
        return text
    wanted = " or ".join(sorted(k.__name__ for k in kinds if k is not type(None)))
    raise UserInputError(f"{name} takes {wanted}, got {text!r}")


def json_type(value: Any) -> str:
    names = {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }
    return "null" if value is None else names.get(type(value), type(value).__name__)


def option_problem(value: Any, kinds: set[type]) -> str | None:
    """Why `value` (from JSON) does not fit an option of these types (None if it does): a
    boolean option takes a JSON boolean, an integer one an integer, a float one a finite number."""
    if value is None and type(None) in kinds:
        return None
    if isinstance(value, bool):
        return None if bool in kinds else f"expected {type_names(kinds)}, got a boolean"
    if isinstance(value, int) and (int in kinds or float in kinds):
        return None
    if isinstance(value, float) and float in kinds:
        return None if math.isfinite(value) else f"expected a finite number, got {value}"
    if isinstance(value, str) and str in kinds:
        return None
    shown = f"{value!r}" if isinstance(value, (int, float, str)) else json_type(value)
    return f"expected {type_names(kinds)}, got {shown}"


def type_names(kinds: set[type]) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    return " or ".join(names[k] for k in names if k in kinds) or "nothing"
