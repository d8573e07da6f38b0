"""Registries of runnable jobs (trainers, benchmarks): a name, a config dataclass, a function."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from tokenreward.registry import Registry


@dataclass(frozen=True)
class Runnable:
    """`run(config, name)` does the job; `name` lets one function serve several methods
    (e.g. `dpo` and `simpo` share the preference trainer)."""

    config: type
    run: Callable[[Any, str], Any]
    help: str


def registrar(registry: Registry[Runnable]):
    def register(name: str, config: type, help: str = ""):
        def decorator(fn: Callable[[Any, str], Any]):
            registry.register(name)(Runnable(config, fn, help or (fn.__doc__ or "").strip().split("\n")[0]))
            return fn

        return decorator

    return register
