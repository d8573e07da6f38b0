"""verl reward-loop manager `tokenreward`: one reward per valid response token from any rewarder.

For each sample, the prompt is its valid prompt tokens decoded, the response is decoded token
by token with the policy's tokenizer (`align.offsets_from_ids`), and the rewarder scores the
pair with `align_to` = those offsets, so the rewards land on the policy's own tokens whatever
the reward model's tokenizer; the reward on the token that completes the text moves to the
last generated token (the EOS when the policy stopped), as in tokenreward's PPO, so `sparse`
puts the score where verl's own managers put it. `run_single` answers the row as a list;
`assemble_rm_scores` writes row i into `rm_scores[i, :len]` (a scalar still goes on the last
valid token). The sequence reward and the rewarder's name go to `reward_extra_info`.

verl calls `run_single` once per sample; the calls are gathered into one scoring batch
(`batching.MicroBatcher`). Only the colocated path (`reward.reward_model.enable=True`, no
separate resource pool) calls `assemble_rm_scores`; verl's streaming path keeps one float per
sample, so the manager refuses it unless that verl accepts lists (docs/verl.md).
"""

from __future__ import annotations

import logging
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from verl import DataProto
from verl.experimental.reward_loop.reward_manager import register
from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase

from tokenreward.align import offsets_from_ids
from tokenreward.errors import UserInputError
from tokenreward.generation import Generation, Generations
from tokenreward.integrations.verl.batching import MicroBatcher
from tokenreward.integrations.verl.estimators import dense_with_sequence_estimator
from tokenreward.integrations.verl.server import ServerRewarder
from tokenreward.integrations.verl.settings import TokenRewardSettings, read_settings
from tokenreward.rewards import Rewarder, build_rewarder
from tokenreward.trainers.ppo import policy_token_rewards

logger = logging.getLogger("tokenreward")

SEQUENCE_REWARD_KEY = "tokenreward_sequence_reward"
REWARDER_KEY = "tokenreward_rewarder"
COLOCATED_OVERRIDES = (
    "reward.reward_model.enable=True reward.reward_model.enable_resource_pool=False "
    "reward.custom_reward_function.path=pkg://tokenreward.integrations.verl.manager "
    "reward.custom_reward_function.name=compute_score"
)


def compute_score(*args: Any, **kwargs: Any) -> float:
    """Set as `reward.custom_reward_function` only so that verl's worker calls the manager's
    `run_single` (it otherwise sends the sample to its own reward-model server). The
    `tokenreward` manager never calls it; any other manager that does is misconfigured."""
    raise RuntimeError(
        "tokenreward.integrations.verl.manager.compute_score is a switch for reward.reward_manager.name=tokenreward; "
        "it computes nothing"
    )


@dataclass(frozen=True)
class Sample:
    """What scoring needs of one sample: its valid prompt and response token ids."""

    prompt_ids: list[int]
    response_ids: list[int]


@dataclass(frozen=True)
class SampleReward:
    rewards: list[float]  # one per valid response token
    sequence_reward: float
    rewarder: str


def sample_from(data: DataProto) -> Sample:
    """The last sequence of `data` (verl's convention for multi-output samples): valid prompt tokens
    where the attention mask is 1 (left- or right-padded prompts), the right-padded response's
    first `attention_mask[P:].sum()` tokens."""
    item = data[len(data) - 1]
    prompts, responses = item.batch["prompts"], item.batch["responses"]
    attention = item.batch["attention_mask"].bool()
    prompt_length = prompts.shape[-1]
    valid = int(attention[prompt_length:].sum())
    return Sample(prompts[attention[:prompt_length]].tolist(), responses[:valid].tolist())


def build_scorer(settings: TokenRewardSettings) -> Rewarder:
    if settings.server_url:
        return ServerRewarder(settings.server_url, settings.combine, settings.batch_size)
    return build_rewarder(settings.rewarder, **settings.resources)


def score_samples(rewarder: Rewarder, tokenizer, samples: Sequence[Sample]) -> list[SampleReward]:
    """Decode with the policy tokenizer, score aligned to its tokens, in tokenreward's PPO layout."""
    rows: list[list[float]] = [[] for _ in samples]
    sequence = [0.0] * len(samples)
    scored = [i for i, s in enumerate(samples) if s.response_ids]
    if scored:
        items = []
        for i in scored:
            text, offsets = offsets_from_ids(tokenizer, samples[i].response_ids)
            ended = samples[i].response_ids[-1] == tokenizer.eos_token_id
            items.append(Generation(samples[i].prompt_ids, samples[i].response_ids, text, offsets, ended))
        prompts = [tokenizer.decode(samples[i].prompt_ids, skip_special_tokens=True) for i in scored]
        policy_rewards = policy_token_rewards(rewarder, prompts, Generations(items))
        for k, i in enumerate(scored):
            rows[i], sequence[i] = policy_rewards.token_rewards(k), float(policy_rewards.sequence_rewards[k])
    return [SampleReward(rows[i], sequence[i], rewarder.name) for i in range(len(samples))]


def streaming_accepts_lists() -> bool:
    """Whether this verl's streaming path (`AgentLoopOutput.reward_score`) takes a list per sample."""
    from verl.experimental.agent_loop.agent_loop import AgentLoopOutput

    annotation = AgentLoopOutput.model_fields["reward_score"].annotation
    return any(typing.get_origin(a) is list or a is list for a in (annotation, *typing.get_args(annotation)))


def check_reward_path(config) -> None:
    """Refuse a config whose rewards would not reach `assemble_rm_scores` (or would crash as lists)."""
    reward = config.reward
    colocated = bool(reward.reward_model.enable) and not bool(reward.reward_model.enable_resource_pool)
    if colocated and not reward.custom_reward_function.get("path"):
        raise UserInputError(
            "reward.custom_reward_function.path is unset, so verl would send each sample to its own reward-model "
            f"server instead of the tokenreward manager; set {COLOCATED_OVERRIDES}"
        )
    if not colocated and not streaming_accepts_lists():
        raise UserInputError(
            "this verl's streaming reward path keeps one float per sample and cannot carry per-token rewards; "
            f"use the colocated path: {COLOCATED_OVERRIDES} (or patch verl, docs/upstream/)"
        )


@register("tokenreward")
class TokenRewardManager(RewardManagerBase):
    """Per-token rewards from a tokenreward rewarder (config `reward.tokenreward.*`)."""

    def __init__(self, config, tokenizer, compute_score=None, reward_router_address=None, reward_model_tokenizer=None):
        super().__init__(config, tokenizer, compute_score)
        check_reward_path(config)
        self.settings = read_settings(config.reward.get("tokenreward"), config.reward.reward_model.get("model_path"))
        warning = dense_with_sequence_estimator(self.settings.rewarder, config.algorithm.adv_estimator)
        if warning:
            logger.warning(warning)
        self.rewarder = build_scorer(self.settings)
        self.batcher: MicroBatcher[Sample, SampleReward] = MicroBatcher(
            lambda samples: score_samples(self.rewarder, self.tokenizer, samples)
        )

    async def run_single(self, data: DataProto) -> dict:
        result = await self.batcher.submit(sample_from(data))
        return {
            "reward_score": result.rewards,
            "reward_extra_info": {SEQUENCE_REWARD_KEY: result.sequence_reward, REWARDER_KEY: result.rewarder},
        }

    @classmethod
    def assemble_rm_scores(cls, data: DataProto, scores: list) -> torch.Tensor:
        """`rm_scores[i, :len(row)] = row` for a list, `rm_scores[i, valid_i - 1] = score` for a scalar."""
        prompt_length = data.batch["prompts"].size(1)
        valid = data.batch["attention_mask"][:, prompt_length:].sum(dim=1).tolist()
        rm_scores = torch.zeros_like(data.batch["responses"], dtype=torch.float32)
        if len(scores) != rm_scores.shape[0]:
            raise UserInputError(f"{len(scores)} reward scores for a batch of {rm_scores.shape[0]}")
        for i, score in enumerate(scores):
            if isinstance(score, (list, tuple)):
                if len(score) != valid[i]:
                    raise UserInputError(
                        f"sample {i}: {len(score)} token rewards for {valid[i]} valid response tokens"
                    )
                rm_scores[i, : len(score)] = torch.as_tensor(score, dtype=torch.float32)
            elif valid[i] > 0:
                rm_scores[i, valid[i] - 1] = float(score)
        return rm_scores
