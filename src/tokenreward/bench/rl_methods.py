"""Methods of `bench rl` (`TRAINER` or `TRAINER-REWARDER`, resolved through the trainer and
rewarder registries, optionally `:ESTIMATOR`, a registered advantage estimator that the method's
trainer config takes as its `estimator`) and the trainer config of one run, built through the same flags as
`tokenreward train` (so `--trainer-options` are checked and typed as the command line's), with
the benchmark's `--dtype`, `--device`, `--device-map` and `--max-batch-tokens`."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenreward.config import add_config_arguments, config_from_args
from tokenreward.errors import UserInputError
from tokenreward.models import ModelLoading
from tokenreward.options import parse_assignments, parse_bool
from tokenreward.trainers import TRAINERS

CONTRACT_FIELDS = ("world", "steps", "seed", "out")
#: between a method and its estimator, `rloo-verifiable:gtpo`; no registered name has one
ESTIMATOR_SEPARATOR = ":"


@dataclass(frozen=True)
class Method:
    name: str
    trainer: str
    rewarder: str | None
    estimator: str | None = None


def resolve_method(name: str) -> Method:
    """`TRAINER` or `TRAINER-REWARDER`, both looked up in their registries, optionally followed
    by `:ESTIMATOR` (a registered advantage estimator: the run's `--estimator`)."""
    from tokenreward.losses.advantages import ESTIMATORS
    from tokenreward.rewards import REWARDERS

    base, separator, estimator = name.partition(ESTIMATOR_SEPARATOR)
    if separator:
        if estimator not in ESTIMATORS:
            raise UserInputError(
                f"method {name!r}: unknown estimator {estimator!r}; known: {', '.join(ESTIMATORS.names())}"
            )
        return dataclasses.replace(resolve_method(base), name=name, estimator=estimator)
    if name in TRAINERS:
        return Method(name, name, None)
    matches = [
        Method(name, name[:k], name[k + 1 :])
        for k, char in enumerate(name)
        if char == "-" and name[:k] in TRAINERS and name[k + 1 :] in REWARDERS
    ]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise UserInputError(
            f"method {name!r} is ambiguous: " + ", ".join(f"{m.trainer} + {m.rewarder}" for m in matches)
        )
    raise UserInputError(
        f"unknown method {name!r}: expected TRAINER or TRAINER-REWARDER, optionally :ESTIMATOR; "
        f"trainers: {', '.join(TRAINERS.names())}; "
        f"rewarders: {', '.join(REWARDERS.names())}"
    )


def parse_options(items: list[str]) -> dict[str, str]:
    return parse_assignments(items, "--trainer-options")


class _RaisingParser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UserInputError(f"{self.prog}: {message}")


def loading_flags(loading: ModelLoading | None, config_class: type) -> dict[str, str]:
    """The benchmark's loading flags other than their defaults, for a trainer config: `--device`
    always, the flags for frozen models when the trainer loads some (`frozen_models`)."""
    if loading is None:
        return {}
    frozen = bool(getattr(config_class, "frozen_models", ()))
    return {
        f.name: str(getattr(loading, f.name))
        for f in dataclasses.fields(ModelLoading)
        if getattr(loading, f.name) != f.default and (f.name == "device" or frozen)
    }


def dtype_setting(loading: ModelLoading) -> dict[str, str]:
    """`{"dtype": ...}` for a cached evaluation's settings, when not auto (so caches written before stay valid)."""
    return {} if loading.dtype == "auto" else {"dtype": loading.dtype}


def trainer_config(
    method: Method,
    world: Path,
    steps: int,
    seed: int,
    out: Path,
    options: dict[str, str],
    resume: bool,
    loading: ModelLoading | None = None,
) -> Any:
    """The trainer's config for one run, built through the same flags as `tokenreward train`
    (with the benchmark's `loading` flags, which `options` may override); an option goes to the
    trainers whose config has the field and uses it (the config's `unused_settings(trainer,
    options)`: e.g. no critic settings for a critic-free estimator, no `gamma` for dpo)."""
    spec = TRAINERS.get(method.trainer)
    if not dataclasses.is_dataclass(spec.config):
        raise UserInputError(f"trainer {method.trainer!r}: its config {spec.config.__name__} is not a dataclass")
    fields = {f.name: f for f in dataclasses.fields(spec.config)}
    hints = typing.get_type_hints(spec.config)
    missing = [name for name in CONTRACT_FIELDS if name not in fields]
    missing += [key for key in ("rewarder", "estimator") if getattr(method, key) is not None and key not in fields]
    if missing:
        raise UserInputError(
            f"method {method.name!r}: trainer {method.trainer!r} cannot be driven by bench rl: its config "
            f"{spec.config.__name__} lacks the field(s) {', '.join(missing)}"
        )
    flags = {"world": str(world), "steps": str(steps), "seed": str(seed), "out": str(out)}
    if method.rewarder is not None:
        flags["rewarder"] = method.rewarder
    flags.update({k: v for k, v in loading_flags(loading, spec.config).items() if k in fields})
    if method.estimator is not None:
        options = {**options, "estimator": method.estimator}  # the method's own, over --trainer-options
    unused = getattr(spec.config, "unused_settings", lambda trainer, settings: ())(method.trainer, options)
    flags.update({k: v for k, v in options.items() if k in fields and k not in unused})
    if resume and "resume" in fields:
        flags["resume"] = "true"
    argv = []
    for key, value in flags.items():
        flag = "--" + key.replace("_", "-")
        if hints[key] is bool:
            argv.append(flag if parse_bool(value, f"--trainer-options {key}") else "--no-" + key.replace("_", "-"))
        else:
            argv += [flag, value]
    parser = _RaisingParser(prog=f"tokenreward train {method.trainer}", exit_on_error=False)
    add_config_arguments(parser, spec.config)
    try:
        args = parser.parse_args(argv)
    except argparse.ArgumentError as err:
        raise UserInputError(f"method {method.name!r}: {err}") from None
    return config_from_args(spec.config, args)


def config_fields(trainer: str) -> set[str]:
    """The settings of a registered trainer's config."""
    return {f.name for f in dataclasses.fields(TRAINERS.get(trainer).config)}


def check_trainer_options(options: dict[str, str], methods: list[Method]) -> None:
    """`--trainer-options`: none that bench rl sets per run or by a flag of its own, none that no
    trainer of `methods` has."""
    reserved = sorted(set(options) & set(CONTRACT_FIELDS + ("rewarder", "resume")))
    if reserved:
        raise UserInputError(f"--trainer-options cannot set {', '.join(reserved)}: bench rl sets them per run")
    if "reward_model" in options:
        raise UserInputError("--trainer-options cannot set reward_model: pass --reward-model, which the record names")
    unknown = sorted(set(options) - set().union(*(config_fields(m.trainer) for m in methods)))
    if unknown:
        raise UserInputError(
            f"--trainer-options: {', '.join(unknown)} is not a setting of any of the trainers "
            f"{sorted({m.trainer for m in methods})}"
        )


def reward_model_options(config, methods: list[Method]) -> dict[str, str]:
    """The trainer setting `--reward-model` adds: its folder, resolved (worker processes read
    it); one line if it is not a model folder or a method's trainer takes no reward model."""
    if config.reward_model is None:
        return {}
    folder = Path(config.reward_model).expanduser()
    if not (folder / "config.json").is_file():
        raise UserInputError(f"--reward-model: {config.reward_model} is not a model folder (no config.json there)")
    without = [m.name for m in methods if "reward_model" not in config_fields(m.trainer)]
    if without:
        raise UserInputError(f"--reward-model: method(s) {', '.join(without)} train with no reward model setting")
    return {"reward_model": str(folder.resolve())}


def reward_model_description(config, world) -> str:
    """What the methods trained with: `--reward-model`'s folder as given, else the world's reward model."""
    if config.reward_model is None:
        return world.reward_model_description()
    return f"{config.reward_model} (--reward-model, in place of the world's)"
