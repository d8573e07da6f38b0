"""Benchmarks on the world. Each module registers itself with `register_bench`; a benchmark
whose config has the `record` field (`results_file.Recording`) writes its table into a results
file with `--record FILE`."""

from tokenreward.bench.results_file import Recording, recording
from tokenreward.registry import Registry
from tokenreward.runnable import Runnable, registrar

BENCHES: Registry[Runnable] = Registry("benchmark", "tokenreward.bench")
_register = registrar(BENCHES)


def register_bench(name: str, config: type, help: str = ""):
    """Register `run(config, name)` as `tokenreward bench NAME` (recording its table with `--record`)."""

    def decorator(fn):
        _register(name, config, help)(recording(name, fn))
        return fn

    return decorator


__all__ = ["BENCHES", "Recording", "register_bench"]
