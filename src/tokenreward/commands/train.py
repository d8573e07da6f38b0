"""`tokenreward train METHOD ...`: one subcommand per registered trainer, flags from its config."""

from tokenreward.runnable import add_runnable_commands
from tokenreward.trainers import TRAINERS


def register(sub) -> None:
    add_runnable_commands(
        sub, "train", "train a model (PPO family, preference optimisation, reward models, ...)", TRAINERS, "method"
    )
