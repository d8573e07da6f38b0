"""`bench rl`'s held-out evaluations: the final policy of each run (sampled and greedy), the
policies its trainer saved along training (sampled, for the comparison at matched KL,
`tokenreward.bench.rl_frontier`), and the report's sample heatmaps.

Along training: with `--eval-every N`, bench rl has every trainer whose config has `save_every`
and `keep_checkpoints` checkpoint every N steps and keep them all; each checkpoint's `policy`
folder is then evaluated exactly as the final policy's sampled responses (same prompts, same
seed, KL to the SFT policy) and cached in `RUN/evals/step-N.json`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tokenreward.bench.rl_methods import dtype_setting
from tokenreward.io import read_json_file, write_atomic
from tokenreward.models import ModelLoading
from tokenreward.trainers.checkpoints import CHECKPOINTS

EVAL_MODES = ("sampled", "greedy")
CHECKPOINT_FIELDS = ("save_every", "keep_checkpoints")


def eval_interval(config) -> int:
    """Steps between evaluations along training: `--eval-every`, by default a fifth of the steps (0: none)."""
    return config.eval_every if config.eval_every is not None else max(1, config.steps // 5)


def checkpoint_options(config) -> dict[str, str]:
    """The trainer settings that keep a policy every `eval_interval` steps (none when it is 0)."""
    every = eval_interval(config)
    return {"save_every": str(every), "keep_checkpoints": str(config.steps // every + 1)} if every else {}


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(data, indent=2) + "\n")


def evaluate_run(
    policy_dir: Path, eval_path: Path, world, reference, config, seed: int, modes: tuple[str, ...] = EVAL_MODES
) -> dict[str, Any]:
    """Held-out evaluation of one policy folder in `modes` (sampled, seeded by `seed` as in
    training or by `config.eval_seed` when set; greedy), cached in `eval_path` for these settings."""
    seed = seed if config.eval_seed is None else config.eval_seed
    settings = {"split": config.eval_split, "n": config.eval_prompts, "seed": seed, **dtype_setting(config)}
    cached = read_json_file(eval_path) if eval_path.exists() else None
    if cached is not None and cached.get("settings") == settings and all(mode in cached for mode in modes):
        return cached
    result: dict[str, Any] = {
        "settings": settings,
        **evaluate_modes(policy_dir, world, reference, config, seed, modes),
    }
    _write_json(eval_path, result)
    return result


def evaluate_modes(policy_dir, world, reference, config, seed: int, modes) -> dict[str, Any]:
    """The held-out evaluation (`tokenreward.evaluation.evaluate_policy`) of the policy in
    `policy_dir` in each of `modes` (sampled with `seed`, greedy), loaded as `config` says."""
    from tokenreward.evaluation import evaluate_policy
    from tokenreward.models import load_causal_lm

    policy = load_causal_lm(str(policy_dir), loading=ModelLoading.of(config)).eval()
    return {
        mode: evaluate_policy(
            policy,
            world,
            split=config.eval_split,
            reference=reference,
            n=config.eval_prompts,
            greedy=mode == "greedy",
            seed=seed,
        )
        for mode in modes
    }


def saved_policies(run_dir: Path, steps: int) -> list[tuple[int, Path]]:
    """(step, policy folder) of the run's checkpoints before its last step, in step order."""
    found = []
    for folder in (Path(run_dir) / CHECKPOINTS).glob("step-*"):
        step = folder.name.split("-", 1)[1]
        if step.isdigit() and int(step) < steps and (folder / "policy").is_dir():
            found.append((int(step), folder / "policy"))
    return sorted(found)


def evaluate_along_training(run_dir: Path, world, reference, config, seed: int) -> list[dict[str, Any]]:
    """`{step, kl, oracle_score}` of every policy the run saved along training (sampled
    responses, as the final evaluation's), each cached in `RUN/evals/step-N.json`."""
    points = []
    for step, policy_dir in saved_policies(run_dir, config.steps):
        result = evaluate_run(
            policy_dir, run_dir / "evals" / f"step-{step}.json", world, reference, config, seed, ("sampled",)
        )
        points.append({"step": step, "kl": result["sampled"]["kl"], "oracle_score": result["sampled"]["oracle_score"]})
    return points


def score_samples(
    world, samples: dict[str, list[dict[str, Any]]], rewarder_name: str, loading: ModelLoading | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Attach to each sample the heatmap rewarder's `TokenRewards.record` of its response."""
    from tokenreward.rewards import build_rewarder

    rewarder = build_rewarder(rewarder_name, {**world.resources(), "loading": loading})
    scored = {}
    for method, items in samples.items():
        records = (
            rewarder.score([s["prompt"] for s in items], [s["response"] for s in items]).records() if items else []
        )
        scored[method] = [{**s, "record": r} for s, r in zip(items, records)]
    return scored
