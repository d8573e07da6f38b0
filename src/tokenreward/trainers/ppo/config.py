"""PPO / ReMax / RLOO settings. Defaults: docs/methods.md (RED's kl 0.02; TLCR's gamma 1, lambda
0.95, clip 0.2, value clip 0.2); learning rates and batch sizes are small-model choices
(docs/ppo.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Literal

from tokenreward.errors import UserInputError
from tokenreward.lora import refuse_lora_dropout
from tokenreward.losses.advantages import ESTIMATORS
from tokenreward.options import parse_assignments
from tokenreward.rewards import REWARDERS, check_rewarder_arguments
from tokenreward.trainers.harness import RunConfig

#: config fields that may change when a run is resumed
RESUMABLE_CHANGES = ("steps", "save_every")
#: settings only an estimator with a critic (value model) reads: GAE's discount and lambda, the critic's own
CRITIC_SETTINGS = ("critic_learning_rate", "critic_init", "cliprange_value", "gamma", "lam", "value_loss_coef")


@dataclass(kw_only=True)
class PPOConfig(RunConfig):
    """PPO with dense token rewards. Defaults: docs/methods.md (RED's kl 0.02; TLCR's gamma 1,
    lambda 0.95, clip 0.2, value clip 0.2); learning rates and batch sizes are small-model
    choices (see docs/ppo.md)."""

    frozen_models: ClassVar[tuple[str, ...]] = ("reference", "reward model", "rewarder models")
    out: Path = field(metadata={"help": "run folder: log.jsonl, checkpoints/, final/ (the trained policy)"})
    rewarder: str = field(default="sparse", metadata={"help": "registered rewarder giving the per-token rewards"})
    world: Path | None = field(
        default=None,
        metadata={"help": "world folder (policy, reward model, prompts, oracle); default: the built world"},
    )
    policy: Path | None = field(
        default=None, metadata={"help": "initial policy folder (default: the world's SFT policy)"}
    )
    reference: Path | None = field(
        default=None, metadata={"help": "reference model for the KL (default: the initial policy)"}
    )
    reward_model: Path | None = field(
        default=None, metadata={"help": "sequence reward model folder (default: the world's)"}
    )
    prompts: Path | None = field(
        default=None, metadata={"help": 'JSONL of {"prompt": ...} records (default: the world\'s prompts)'}
    )
    prompt_split: str = field(default="rl", metadata={"help": "world split to take prompts from"})
    prompt_families: list[str] = field(
        default_factory=list,
        metadata={
            "help": "train on the world's prompts of these families only, e.g. the verifiable ones "
            "arithmetic,facts,enumeration (default: every family)"
        },
    )
    rewarder_options: list[str] = field(
        default_factory=list,
        metadata={
            "help": "rewarder options and extra resources NAME=VALUE, typed from the rewarder's constructor, e.g. keep_sum=true,discriminator=DIR",
            "aliases": ["--rewarder-args"],
        },
    )
    steps: int = field(default=100, metadata={"help": "PPO steps (one rollout batch each)", "min": 1})
    batch_size: int = field(default=16, metadata={"help": "prompts per step (over all processes)", "min": 1})
    samples_per_prompt: int = field(default=1, metadata={"help": "responses sampled per prompt (RLOO's K)", "min": 1})
    mini_batch_size: int = field(
        default=8, metadata={"help": "responses per optimizer step (over all processes)", "min": 1}
    )
    ppo_epochs: int = field(default=2, metadata={"help": "passes over each rollout batch", "min": 1})
    max_new_tokens: int = field(default=64, metadata={"help": "longest response in tokens", "min": 1})
    temperature: float = field(
        default=1.0, metadata={"help": "sampling temperature (the log-probs use the same)", "gt": 0.0}
    )
    top_k: int = field(default=0, metadata={"help": "sample among the top-k tokens (0: all)", "min": 0})
    learning_rate: float = field(
        default=5e-5, metadata={"help": "policy learning rate (AdamW)", "gt": 0.0, "aliases": ["--lr"]}
    )
    critic_learning_rate: float = field(
        default=1e-4, metadata={"help": "value model learning rate (AdamW)", "gt": 0.0}
    )
    warmup_steps: int = field(default=0, metadata={"help": "linear learning-rate warm-up, in steps", "min": 0})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm", "gt": 0.0})
    kl_coef: float = field(
        default=0.02, metadata={"help": "beta of the KL to the reference (RED: 0.02, TLCR: 0.1)", "min": 0.0}
    )
    kl_estimator: Literal["k1", "k2", "k3"] = field(default="k1", metadata={"help": "per-token KL estimator"})
    kl_in: Literal["reward", "loss"] = field(
        default="reward", metadata={"help": "subtract the KL from the reward or add it to the loss"}
    )
    gamma: float = field(default=1.0, metadata={"help": "GAE discount", "min": 0.0, "max": 1.0})
    lam: float = field(default=0.95, metadata={"help": "GAE lambda", "min": 0.0, "max": 1.0})
    cliprange: float = field(default=0.2, metadata={"help": "policy ratio clip", "gt": 0.0})
    cliprange_value: float = field(default=0.2, metadata={"help": "value clip around the rollout values", "gt": 0.0})
    whiten_advantages: bool = field(default=True, metadata={"help": "whiten advantages over the batch"})
    critic_init: Literal["reward_model", "policy", "shared"] = field(
        default="reward_model",
        metadata={
            "help": "the critic: a value model initialised from the reward model or from the policy, or shared: a "
            "value head on the policy itself (one model, one forward; the value loss also trains the policy)"
        },
    )
    value_loss_coef: float = field(
        default=0.1,
        metadata={"help": "weight of the value loss in the policy's loss with --critic-init shared", "gt": 0.0},
    )
    estimator: str = field(
        default="gae",
        metadata={"help": "registered advantage estimator (gae needs a critic; see tokenreward.losses.advantages)"},
    )
    truncate_prompts: bool = field(
        default=False, metadata={"help": "keep the end of prompts too long for the context instead of refusing"}
    )
    save_every: int = field(
        default=50,
        metadata={"help": "checkpoint every N steps and after the last", "min": 1, "aliases": ["--checkpoint-every"]},
    )

    def __post_init__(self):
        super().__post_init__()
        check_config(self)

    @classmethod
    def unused_settings(cls, trainer: str, settings: Mapping[str, Any]) -> tuple[str, ...]:
        """The fields that the estimator of `settings` (default: this config's) does not read:
        the critic's settings for a critic-free estimator (an unknown estimator: none), and
        the shared critic's loss weight for a separate critic."""
        default = {f.name: f.default for f in fields(cls)}
        name = settings.get("estimator") or default["estimator"]
        if name in ESTIMATORS and not ESTIMATORS.get(name).critic:
            return CRITIC_SETTINGS
        return () if (settings.get("critic_init") or default["critic_init"]) == "shared" else ("value_loss_coef",)


@dataclass(kw_only=True)
class ReMaxConfig(PPOConfig):
    """ReMax: one sample per prompt, the greedy response's return as baseline, no critic."""

    estimator: str = field(
        default="remax_token", metadata={"help": "registered advantage estimator (remax_token, remax_sequence)"}
    )
    whiten_advantages: bool = field(default=False, metadata={"help": "whiten advantages over the batch"})


@dataclass(kw_only=True)
class RLOOConfig(PPOConfig):
    """RLOO: K samples per prompt, leave-one-out baseline, no critic (4 prompts x 4 samples =
    the 16 responses of a PPO step)."""

    batch_size: int = field(default=4, metadata={"help": "prompts per step (over all processes)", "min": 1})
    samples_per_prompt: int = field(default=4, metadata={"help": "responses sampled per prompt (RLOO's K)", "min": 1})
    estimator: str = field(
        default="rloo_token",
        metadata={
            "help": "registered advantage estimator (rloo_token, rloo_return, grpo_return, rloo_sequence; "
            "gtpo, grpo_s, ktae for 1/0 verifiable rewards)"
        },
    )
    whiten_advantages: bool = field(default=False, metadata={"help": "whiten advantages over the batch"})


def check_config(c: PPOConfig) -> None:
    """Cross-field checks (the single-field ranges are checked by `RunConfig`)."""
    refuse_lora_dropout(c, "ppo / remax / rloo")
    if (c.batch_size * c.samples_per_prompt) % c.mini_batch_size:
        raise UserInputError(
            f"--mini-batch-size {c.mini_batch_size} must divide the {c.batch_size * c.samples_per_prompt} responses "
            "of a step (--batch-size x --samples-per-prompt)"
        )
    if c.prompt_families and c.prompts is not None:
        raise UserInputError("--prompt-families selects among the world's prompts; it does not apply to --prompts")
    if c.rewarder not in REWARDERS:
        raise UserInputError(f"--rewarder {c.rewarder!r} is not registered; known: {', '.join(REWARDERS.names())}")
    check_rewarder_arguments(
        c.rewarder, parse_assignments(c.rewarder_options, "--rewarder-options"), lambda k: f"--rewarder-options {k}"
    )
    if c.estimator not in ESTIMATORS:
        raise UserInputError(f"--estimator {c.estimator!r} is not registered; known: {', '.join(ESTIMATORS.names())}")
    defaults = {f.name: f.default for f in fields(c)}
    for name in c.unused_settings("ppo", {"estimator": c.estimator, "critic_init": c.critic_init}):
        if getattr(c, name) != defaults[name]:
            flag = "--" + name.replace("_", "-")
            if ESTIMATORS.get(c.estimator).critic:
                raise UserInputError(
                    f"{flag}: only a shared critic uses it (--critic-init shared), not {c.critic_init}"
                )
            users = ", ".join(n for n in ESTIMATORS.names() if ESTIMATORS.get(n).critic)
            raise UserInputError(
                f"{flag}: --estimator {c.estimator} has no critic and does not use it (used by: {users})"
            )
    if "group" in ESTIMATORS.get(c.estimator).needs and c.samples_per_prompt < 2:
        raise UserInputError(
            f"--estimator {c.estimator} needs --samples-per-prompt of at least 2, got {c.samples_per_prompt}"
        )
    if c.kl_in == "loss" and c.kl_estimator == "k1":
        raise UserInputError("--kl-in loss with --kl-estimator k1 has zero expected gradient; use k2 or k3 as a loss")
