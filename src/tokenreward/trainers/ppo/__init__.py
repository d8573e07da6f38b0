"""PPO, ReMax and RLOO along the rollout lifecycle: `config` (settings), `rollout` (prompts,
samples, per-token rewards), `experience` (the typed tensors of one rollout), `update`
(clipped losses over mini-batches), `critic` (the value model), `models` (the run's models and
how they load), `trainer` (the loop)."""

from tokenreward.trainers.ppo.config import PPOConfig, ReMaxConfig, RLOOConfig
from tokenreward.trainers.ppo.experience import Experience
from tokenreward.trainers.ppo.rollout import (
    policy_token_rewards,
    prepare_prompts,
    read_prompt_file,
    step_prompt_indices,
)
from tokenreward.trainers.ppo.trainer import PPOTrainer, run

__all__ = [
    "Experience",
    "PPOConfig",
    "PPOTrainer",
    "ReMaxConfig",
    "RLOOConfig",
    "policy_token_rewards",
    "prepare_prompts",
    "read_prompt_file",
    "run",
    "step_prompt_indices",
]
