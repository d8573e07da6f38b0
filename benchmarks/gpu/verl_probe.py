"""Benchmark instrumentation, imported by verl in every process (`VERL_USE_EXTERNAL_MODULES=verl_probe`):
records the first rows of `token_level_rewards` (valid tokens only) each time advantages are
computed, as JSON lines in `$TOKENREWARD_PROBE_FILE`. Wraps verl's GAE and every registered
estimator; the wrapped functions compute exactly what they computed before."""

from __future__ import annotations

import functools
import json
import os

from verl.trainer.ppo import core_algos

import tokenreward.integrations.verl  # noqa: F401  (register ours first, so they are wrapped too)

ROWS = 4


def record(token_level_rewards, response_mask) -> None:
    path = os.environ.get("TOKENREWARD_PROBE_FILE")
    if not path:
        return
    mask = response_mask.bool()
    rows = [token_level_rewards[i][mask[i]].float().tolist() for i in range(min(ROWS, token_level_rewards.shape[0]))]
    with open(path, "a") as handle:
        handle.write(json.dumps({"pid": os.getpid(), "rows": rows}) + "\n")


def recorded(estimator):
    @functools.wraps(estimator)
    def wrapper(*args, **kwargs):
        record(kwargs["token_level_rewards"], kwargs["response_mask"])
        return estimator(*args, **kwargs)

    return wrapper


if os.environ.get("TOKENREWARD_PROBE_FILE"):
    core_algos.compute_gae_advantage_return = recorded(core_algos.compute_gae_advantage_return)
    for name, estimator in list(core_algos.ADV_ESTIMATOR_REGISTRY.items()):
        core_algos.ADV_ESTIMATOR_REGISTRY[name] = recorded(estimator)
