"""Argument types that validate a flag where it is parsed (argparse reports a bad value as a
usage error naming the flag, exit status 2)."""

from __future__ import annotations

import argparse
import math


def _number(kind, text: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
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


def device(text: str) -> str:
    """A torch device name that this machine has (`cpu`, `cuda`, `cuda:1`, `mps`)."""
    import torch

    try:
        parsed = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device (cpu, cuda, cuda:0, mps, ...)") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text!r}: CUDA is not available on this machine; use --device cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if parsed.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise argparse.ArgumentTypeError(f"{text!r}: MPS is not available on this machine; use --device cpu")
    if parsed.type not in ("cpu", "cuda", "mps"):
        raise argparse.ArgumentTypeError(f"{text!r}: use cpu, cuda or mps")
    return text
