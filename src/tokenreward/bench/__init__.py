"""Benchmarks on the world. Each module registers itself with `register_bench`."""

from tokenreward.registry import Registry
from tokenreward.runnable import Runnable, registrar

BENCHES: Registry[Runnable] = Registry("benchmark", "tokenreward.bench")
register_bench = registrar(BENCHES)
