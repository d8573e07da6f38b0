"""Trainers on one step loop (`tokenreward.trainers.loop.run_steps`) and one run harness
(`tokenreward.trainers.harness`). Each module registers its methods with `register_trainer`."""

from tokenreward.registry import Registry
from tokenreward.runnable import Runnable, registrar

TRAINERS: Registry[Runnable] = Registry("trainer", "tokenreward.trainers")
register_trainer = registrar(TRAINERS)
