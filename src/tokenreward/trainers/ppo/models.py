"""The models of a PPO / ReMax / RLOO run: the trained policy (float32 weights) and critic, the
frozen reference (and the rewarder's models) loaded as the run's `--dtype`, `--device-map` and
`--max-batch-tokens` say (`tokenreward.trainers.loading`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from tokenreward.gguf import resolve_model_source
from tokenreward.lora import reference_of
from tokenreward.models import ModelLoading, enable_activation_checkpointing, load_causal_lm
from tokenreward.rewards import with_reward_model
from tokenreward.trainers.harness import with_adapters
from tokenreward.trainers.ppo.critic import SharedValueHead, ValueModel, load_critic, shared_value_head
from tokenreward.trainers.vocabulary import check_shared_vocabulary, policy_tokenizer


@dataclass
class RunModels:
    tokenizer: Any
    policy: nn.Module
    reference: nn.Module
    critic: ValueModel | SharedValueHead | None
    reward_model_dir: Path | None


def load_models(c, world, trained: ModelLoading, frozen: ModelLoading, critic: bool) -> RunModels:
    """Tokenizer, policy and (with `critic`) value model to train, frozen reference; every folder
    checked first. `--critic-init shared`: the critic is a value head on the policy itself.
    With `--lora-r` the policy and a separate critic get their own adapters, and without
    a separate `--reference` the reference is the policy's base with its adapters disabled
    (`tokenreward.lora.BaseModelView`, no second copy)."""
    policy_dir = Path(resolve_model_source(c.policy or world.policy_dir))
    for flag, folder in (("--policy", policy_dir), ("--reference", c.reference), ("--reward-model", c.reward_model)):
        if folder is not None and not Path(resolve_model_source(folder)).is_dir():
            raise FileNotFoundError(f"{flag}: no model folder {folder}")
    tokenizer = policy_tokenizer(policy_dir, world)
    policy = load_causal_lm(str(policy_dir), loading=trained).eval()
    if c.gradient_checkpointing:
        enable_activation_checkpointing(policy)
    policy = with_adapters(policy, c, "CAUSAL_LM")
    reference = reference_of(policy, c, c.reference) or (
        load_causal_lm(str(c.reference or policy_dir), loading=frozen).eval().requires_grad_(False)
    )
    check_shared_vocabulary(tokenizer, ("--policy", policy), {"--reference": c.reference})
    reward_model_dir = c.reward_model or (world.reward_model_dir if world is not None else None)
    if not critic:
        value = None
    elif c.critic_init == "shared":
        value = shared_value_head(policy)
    else:
        value = ValueModel(with_adapters(load_critic(c, world, reward_model_dir, tokenizer, policy), c, "SEQ_CLS"))
        value.eval()
    return RunModels(tokenizer, policy, reference, value, reward_model_dir)


def rewarder_resources(c, world, frozen: ModelLoading) -> dict[str, Any]:
    """What the rewarder is built from: the world's models (or the run's folders) and the frozen models' loading."""
    if world is not None:
        resources = dict(world.resources())
    else:
        resources = {"policy": str(c.policy), "reference": str(c.reference or c.policy)}
    if c.reward_model is not None:
        resources = with_reward_model(resources, str(c.reward_model))
    resources["device"] = frozen.device
    resources["loading"] = frozen
    return resources
