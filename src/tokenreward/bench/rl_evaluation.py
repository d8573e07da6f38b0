"""`bench rl`'s held-out evaluations: the final policy of each run (sampled and greedy), the
policies its trainer saved along training (sampled, for the comparison at matched KL,
`tokenreward.bench.rl_frontier`), and the report's sample heatmaps.

Along training: with `--eval-every N`, bench rl (and bench preference) has every trainer whose
config has `save_every` and `keep_checkpoints` checkpoint every N steps and keep them all; each
checkpoint's `policy` folder is then evaluated exactly as the final policy's sampled responses (same prompts, same
seed, KL to the SFT policy) and cached in `RUN/evals/step-N.json`.

The held-out score (`--reward`): `score`, the oracle's holistic grade on every family's prompts;
`verifiable`, the verifiable oracle's 1/0 (`oracle_reward(..., "verifiable")`, so a policy's
score is its accuracy) on the prompts of the world's verifiable families, which are then also the
only training prompts (each trainer's `prompt_families`); the training log's curve for
steps-to-baseline is then `oracle_accuracy` (the rollouts' accuracy) instead of `oracle_score`.
"""

from __future__ import annotations

import json
from dataclasses import field
from pathlib import Path
from typing import Any

from tokenreward.bench.rl_methods import dtype_setting
from tokenreward.errors import UserInputError
from tokenreward.io import read_json_file, write_atomic
from tokenreward.models import ModelLoading
from tokenreward.trainers.checkpoints import CHECKPOINTS

EVAL_MODES = ("sampled", "greedy")
CHECKPOINT_FIELDS = ("save_every", "keep_checkpoints")
#: per `--reward`, the training log's metric that steps-to-baseline and the curves read
LOGGED_SCORE = {"score": "oracle_score", "verifiable": "oracle_accuracy"}


def reward_kind(config) -> str:
    """The benchmark's held-out reward: its config's `reward` (bench rl's `--reward`), else `score`."""
    return getattr(config, "reward", "score")


def reward_families(config, world) -> tuple[str, ...]:
    """The families `--reward` restricts training and evaluation to: none for `score`, the
    world's verifiable families for `verifiable` (refused when it has none)."""
    from tokenreward.errors import UserInputError
    from tokenreward.world.oracle import verifiable_families

    if reward_kind(config) == "score":
        return ()
    families = tuple(name for name in world.families if name in verifiable_families())
    if not families:
        raise UserInputError(
            f"--reward verifiable: the world at {world.root} has none of the verifiable families "
            f"({', '.join(verifiable_families())})"
        )
    return families


def reward_options(config, world, methods) -> dict[str, str]:
    """The trainer settings `--reward` adds: `prompt_families` for `verifiable` (every method's
    trainer config must have that field)."""
    import dataclasses

    from tokenreward.errors import UserInputError
    from tokenreward.trainers import TRAINERS

    families = reward_families(config, world)
    for method in methods if families else ():
        if "prompt_families" not in {f.name for f in dataclasses.fields(TRAINERS.get(method.trainer).config)}:
            raise UserInputError(
                f"--reward verifiable: method {method.name!r} cannot train on the verifiable families only "
                f"(trainer {method.trainer!r} has no prompt_families setting)"
            )
    return {"prompt_families": ",".join(families)} if families else {}


def reward_setting(config, world) -> dict[str, Any]:
    """The `--reward` of a cached evaluation's settings, when not `score` (so caches written before stay valid)."""
    return (
        {}
        if reward_kind(config) == "score"
        else {"reward": reward_kind(config), "families": list(reward_families(config, world))}
    )


def eval_every_field():
    """The `--eval-every` setting of a benchmark's config (`eval_interval` reads it)."""
    return field(
        default=None,
        metadata={
            "help": "also evaluate the policy saved every N steps along training, for the comparison at matched KL "
            "(default: a fifth of --steps; 0: the final policy only)",
            "min": 0,
        },
    )


def eval_interval(config) -> int:
    """Steps between evaluations along training: `--eval-every`, by default a fifth of the steps (0: none)."""
    return config.eval_every if config.eval_every is not None else max(1, config.steps // 5)


def checkpoint_options(config) -> dict[str, str]:
    """The trainer settings that keep a policy every `eval_interval` steps (none when it is 0)."""
    every = eval_interval(config)
    return {"save_every": str(every), "keep_checkpoints": str(config.steps // every + 1)} if every else {}


def refuse_checkpoint_overrides(config, options: dict[str, str], bench: str) -> None:
    """`--trainer-options` may not set the checkpoint settings the benchmark sets itself."""
    kept = sorted(set(options) & set(checkpoint_options(config)))
    if kept:
        raise UserInputError(
            f"--trainer-options cannot set {', '.join(kept)}: {bench} keeps a policy every --eval-every "
            f"({eval_interval(config)}) steps; --eval-every 0 leaves checkpoints to the trainers"
        )


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(data, indent=2) + "\n")


def evaluate_run(
    policy_dir: Path, eval_path: Path, world, reference, config, seed: int, modes: tuple[str, ...] = EVAL_MODES
) -> dict[str, Any]:
    """Held-out evaluation of one policy folder in `modes` (sampled, seeded by `seed` as in
    training or by `config.eval_seed` when the config has one and it is set; greedy), cached in
    `eval_path` for these settings."""
    eval_seed = getattr(config, "eval_seed", None)
    seed = seed if eval_seed is None else eval_seed
    settings = {
        "split": config.eval_split,
        "n": config.eval_prompts,
        "seed": seed,
        **dtype_setting(config),
        **reward_setting(config, world),
    }
    cached = read_json_file(eval_path) if eval_path.exists() else None
    if cached is not None and cached.get("settings") == settings and all(mode in cached for mode in modes):
        return cached
    result: dict[str, Any] = {
        "settings": settings,
        **evaluate_modes(
            policy_dir, world, reference, config, seed, modes, reward_families(config, world), reward_kind(config)
        ),
    }
    _write_json(eval_path, result)
    return result


def evaluate_modes(
    policy_dir, world, reference, config, seed: int, modes, families: tuple[str, ...] = (), reward: str = "score"
) -> dict[str, Any]:
    """The held-out evaluation (`tokenreward.evaluation.evaluate_policy`) of the policy in
    `policy_dir` in each of `modes` (sampled with `seed`, greedy), loaded as `config` says, on the
    prompts of `families` (all: none) with the oracle's `reward`."""
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
            families=families,
            reward=reward,
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
    world,
    samples: dict[str, list[dict[str, Any]]],
    rewarder_name: str,
    loading: ModelLoading | None = None,
    reward_model: str | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Attach to each sample the heatmap rewarder's `TokenRewards.record` of its response (None
    for an empty response: a policy may learn to stop at once, and there is nothing to colour);
    `reward_model` replaces the world's."""
    from tokenreward.rewards import build_rewarder, with_reward_model

    resources = world.resources() if reward_model is None else with_reward_model(world.resources(), reward_model)
    rewarder = build_rewarder(rewarder_name, {**resources, "loading": loading})
    scored = {}
    for method, items in samples.items():
        written = [s for s in items if s["response"]]
        records = iter(
            rewarder.score([s["prompt"] for s in written], [s["response"] for s in written]).records()
            if written
            else []
        )
        scored[method] = [{**s, "record": next(records) if s["response"] else None} for s in items]
    return scored
