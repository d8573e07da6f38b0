"""Argument types that validate a flag where it is parsed (argparse reports a bad value as a
usage error naming the flag, exit status 2)."""

from __future__ import annotations

import argparse
import math


def _number(kind, text: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
        ) from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def at_least(minimum: float, kind=int):
    """A type accepting numbers >= `minimum`."""

    def parse(text: str):
        value = _number(kind, text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text}")
        return value

    parse.__name__ = f"{kind.__name__} >= {minimum}"
    return parse


def above(minimum: float, kind=float):
    """A type accepting numbers > `minimum`."""

    def parse(text: str):
        value = _number(kind, text)
        if value <= minimum:
            raise argparse.ArgumentTypeError(f"must be greater than {minimum}, got {text}")
        return value

    parse.__name__ = f"{kind.__name__} > {minimum}"
    return parse
