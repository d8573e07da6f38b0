"""`tokenreward bench NAME ...`: one subcommand per registered benchmark, flags from its config."""

from tokenreward.bench import BENCHES
from tokenreward.runnable import add_runnable_commands


def register(sub) -> None:
    add_runnable_commands(sub, "bench", "benchmarks on the world (credit assignment, RL)", BENCHES, "bench")
