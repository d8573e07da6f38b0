"""`bench rl` machinery: method names, trainer configs, aggregation over seeds, and whole runs
with a fake registered trainer on the small world (skip, resume, changed settings)."""

from __future__ import annotations

import json
import random
import shutil
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from tokenreward.bench.rl import RLBenchConfig, aggregate, parse_options, resolve_method, run, trainer_config
from tokenreward.trainers import register_trainer
from tokenreward.trainers.common import JsonlLogger, latest_checkpoint, load_checkpoint, save_checkpoint

CALLS: list[tuple[str, int, bool]] = []


@dataclass
class FakeRLConfig:
    out: Path
    world: Path | None = None
    steps: int = 10
    seed: int = 0
    rewarder: str = "sparse"
    resume: bool = False
    speed: float = 0.05
    crash_at: int = 0
    perturb: bool = False


@register_trainer("fakerl", FakeRLConfig, help="test trainer: a logged oracle curve, the SFT policy (optionally perturbed) as final")
def fake_rl(config: FakeRLConfig, name: str) -> Path:
    """Logs `oracle_score = speed * step * (2 if red) + noise(seed)`; checkpoints every step;
    raises at `crash_at` (a killed run); `final` is the world's SFT policy, perturbed by the
    seed when `perturb`."""
    from tokenreward.models import load_causal_lm
    from tokenreward.world import open_world

    CALLS.append((config.rewarder, config.seed, config.resume))
    world = open_world(config.world)
    policy = load_causal_lm(world.policy_dir)
    counter = torch.nn.Linear(1, 1)
    start = load_checkpoint(config.out, {"counter": counter})[0] if config.resume else 0
    logger = JsonlLogger(config.out / "log.jsonl", resume_step=start, tensorboard=False)
    for step in range(start + 1, config.steps + 1):
        if step == config.crash_at:
            raise RuntimeError("killed")
        noise = random.Random(1000 * config.seed + step).gauss(0, 0.01)
        rate = config.speed * (2 if config.rewarder == "red" else 1)
        logger.log({"step": step, "reward": 0.0, "kl": 0.001 * step, "oracle_score": rate * step + noise})
        save_checkpoint(config.out, step, {"counter": counter})
    if config.perturb:
        generator = torch.Generator().manual_seed(config.seed)
        with torch.no_grad():
            for p in policy.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=generator))
    policy.save_pretrained(config.out / "final")
    return config.out / "final"


@dataclass
class NoSeedConfig:
    out: Path
    world: Path | None = None
    steps: int = 1


@register_trainer("noseedrl", NoSeedConfig)
def no_seed(config: NoSeedConfig, name: str) -> Path:
    raise AssertionError("never run")


def test_method_names_resolve_through_the_registries():
    assert (resolve_method("fakerl").trainer, resolve_method("fakerl").rewarder) == ("fakerl", None)
    m = resolve_method("fakerl-red")
    assert (m.name, m.trainer, m.rewarder) == ("fakerl-red", "fakerl", "red")
    assert resolve_method("fakerl-uniform").rewarder == "uniform"
    with pytest.raises(ValueError, match="unknown method 'fakerl-nope'.*rewarders:.*red"):
        resolve_method("fakerl-nope")
    with pytest.raises(ValueError, match="unknown method 'nothing'.*trainers:.*fakerl"):
        resolve_method("nothing")


def test_trainer_config_sets_the_contract_fields_and_typed_options(tmp_path):
    options = parse_options(["speed=0.5", "perturb=true", "crash-at=3"])
    cfg = trainer_config(resolve_method("fakerl-red"), tmp_path / "w", 7, 2, tmp_path / "o", options, resume=True)
    assert cfg == FakeRLConfig(out=tmp_path / "o", world=tmp_path / "w", steps=7, seed=2, rewarder="red",
                               resume=True, speed=0.5, crash_at=3, perturb=True)
    plain = trainer_config(resolve_method("fakerl"), tmp_path, 1, 0, tmp_path, {"perturb": "false"}, resume=False)
    assert plain.rewarder == "sparse" and plain.perturb is False and plain.resume is False
    with pytest.raises(ValueError, match="speed"):
        trainer_config(resolve_method("fakerl"), tmp_path, 1, 0, tmp_path, {"speed": "fast"}, resume=False)
    with pytest.raises(ValueError, match="lacks the field.*seed"):
        trainer_config(resolve_method("noseedrl"), tmp_path, 1, 0, tmp_path, {}, resume=False)
    with pytest.raises(ValueError, match="lacks the field.*rewarder"):
        trainer_config(resolve_method("noseedrl-red"), tmp_path, 1, 0, tmp_path, {}, resume=False)
    with pytest.raises(ValueError, match="key=value"):
        parse_options(["speed"])


def synthetic_run(seed: int, curve: list[float], oracle: float) -> dict:
    log = [{"step": 10 * (k + 1), "oracle_score": v, "kl": 0.1} for k, v in enumerate(curve)]
    evaluation = {"oracle_score": oracle, "kl": 0.01 * seed, "length": 20 + seed, "defect_rate": 0.5}
    return {"seed": seed, "log": log, "eval": evaluation, "done": {"train_seconds": 1.0 + seed}}


def test_aggregate_matches_a_naive_computation(tmp_path):
    rng = random.Random(5)
    curves = {name: [[rng.uniform(0, 1) + 0.1 * k * (1 + i) for k in range(8)] for i in range(3)] for name in ("a", "b")}
    runs = {name: [synthetic_run(i, c, 0.3 + 0.1 * i) for i, c in enumerate(cs)] for name, cs in curves.items()}
    runs["b"][1]["eval"]["oracle_score"] = 0.9
    config = RLBenchConfig(out=tmp_path, methods=["fakerl-sparse", "fakerl-red"], seeds=3, window=3, baseline="a")
    methods = [resolve_method("fakerl-sparse"), resolve_method("fakerl-red")]
    methods = [type(m)(name, m.trainer, m.rewarder) for m, name in zip(methods, ("a", "b"))]
    results = aggregate(methods, runs, {"oracle_score": 0.2, "kl": 0.0, "length": 18, "defect_rate": 0.6}, config)

    def smooth(values, window=3):
        return [statistics.fmean(values[max(0, k - window + 1) : k + 1]) for k in range(len(values))]

    target = statistics.fmean(smooth(c)[-1] for c in curves["a"])
    assert results["target_oracle_score"] == pytest.approx(target)
    for name in ("a", "b"):
        entry = results["methods"][name]
        scores = [r["eval"]["oracle_score"] for r in runs[name]]
        assert entry["oracle_score"]["mean"] == pytest.approx(statistics.fmean(scores))
        assert entry["oracle_score"]["std"] == pytest.approx(statistics.stdev(scores))
        assert entry["length"]["values"] == [20, 21, 22]
        expected_steps = []
        for c in curves[name]:
            hits = [10 * (k + 1) for k, v in enumerate(smooth(c)) if v >= target]
            expected_steps.append(hits[0] if hits else None)
        assert [r["steps_to_target"] for r in entry["runs"]] == expected_steps
        reached = [s for s in expected_steps if s is not None]
        assert entry["steps_to_target"]["reached"] == len(reached) and entry["steps_to_target"]["of"] == 3
        if reached:
            assert entry["steps_to_target"]["mean"] == pytest.approx(statistics.fmean(reached))
    assert results["sft"]["oracle_score"] == 0.2
