"""Where a preference run's inputs come from: the data rows, the policy, reference and tokenizer
folders, the cache folder, the evaluation prompts (the world's by default), and the token rewards
of the pairs (computed once per dataset and rewarder, cached)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenreward.errors import UserInputError
from tokenreward.models import ModelLoading
from tokenreward.preference_data import PreferenceData, pair_token_rewards, read_rows, token_rewards_fingerprint
from tokenreward.rewards import rewarder_requirements, with_reward_model


@dataclass
class Inputs:
    """Where a run's data, models and evaluation prompts come from (the world's by default)."""

    rows: list[dict[str, Any]]
    source: str
    policy: str
    reference: str
    tokenizer: str
    cache_dir: (
        Path  # where reference log-probs and token rewards of the dataset are stored (the cache folder, or the world)
    )
    resources: dict[str, Any]  # the world's rewarder resources
    eval_prompts: list[dict[str, Any]]  # prompt records of the oracle curve
    max_new_tokens: int


def resolve_inputs(config: Any) -> Inputs:
    """The inputs of a `PreferenceConfig` run."""
    world = None
    if config.data is None or config.world is not None:
        from tokenreward.world import open_world

        world = open_world(config.world)
    if config.data is not None:
        rows, source = read_rows(config.data), str(config.data)
        from tokenreward.world import cache_dir as cache_root

        cache_dir = cache_root() / "preference"  # never inside the user's data folder; entries are keyed by the data
    else:
        rows, source = world.pairs("reward"), f"world {world.root} (reward pairs)"
        cache_dir = Path(world.root) / "preference_cache"
    policy = config.policy or (world.policy_dir if world is not None else None)
    if policy is None:
        raise UserInputError("--data needs --policy (or --world, whose SFT policy is then used)")
    tokenizer = config.tokenizer or (world.tokenizer_dir if world is not None and config.policy is None else policy)
    return Inputs(
        rows,
        source,
        str(policy),
        str(config.reference or policy),
        str(tokenizer),
        cache_dir,
        dict(world.resources()) if world is not None else {},
        world.prompts(config.prompt_split)[: config.eval_prompts]
        if world is not None and config.eval_every > 0
        else [],
        config.max_new_tokens or (int(world.config.get("max_new_tokens", 64)) if world is not None else 64),
    )


def cache_directory(inputs: Inputs, out: Path) -> Path:
    """The data's cache folder when writable, else `OUT/cache`."""
    from tokenreward.io import OutputError, check_writable

    try:
        return check_writable(inputs.cache_dir, "cache", folder=True)
    except OutputError:
        return out / "cache"


def token_reward_inputs(
    name: str,
    config: Any,
    data: PreferenceData,
    inputs: Inputs,
    out: Path,
    progress: bool,
    loading: ModelLoading,
):
    """Token rewards (chosen, rejected) on the completion positions, cached in the data's cache folder
    (keyed by the rewarder's models, the pairs and a `--dtype` other than auto), and the responses
    the rewarder could not score. The rewarder's models load as `loading` says."""
    resources = {
        **inputs.resources,
        "reference": inputs.reference,
        "tokenizer": inputs.tokenizer,
        "policy": config.guide_policy,
    }
    if config.reward_model is not None:
        resources = with_reward_model(resources, config.reward_model)
    resources = {k: str(v) for k, v in resources.items() if v is not None}
    if "policy" in rewarder_requirements(name) and config.guide_policy is None:
        raise UserInputError(
            f"token rewarder {name!r} reads a preference-trained model: pass --guide-policy DIR "
            "(e.g. OUT/final of `tokenreward train dpo`)"
        )
    needed = set(rewarder_requirements(name))
    resources = {k: v for k, v in resources.items() if k in needed or k in ("tokenizer", "reward_tokenizer")}
    keyed = {**resources, "dtype": loading.dtype} if loading.dtype != "auto" else resources
    stem = f"{Path(config.data).name if config.data else 'pairs-reward'}.{name}-{token_rewards_fingerprint(name, keyed, data)}.jsonl"
    directory = cache_directory(inputs, out)
    chosen, rejected, unscored = pair_token_rewards(
        name, {**resources, "loading": loading}, data, directory / stem, progress=progress
    )
    return (chosen, rejected), unscored
