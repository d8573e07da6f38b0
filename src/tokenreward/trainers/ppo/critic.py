"""The PPO critic: a sequence-classification model whose scalar head is read at every position."""

from __future__ import annotations

import torch
from torch import nn

from tokenreward.errors import UserInputError
from tokenreward.generation import Batch
from tokenreward.gguf import resolve_model_source
from tokenreward.models import load_tokenizer, prefix_scores, scalar_head_from_lm, score_head
from tokenreward.trainers.vocabulary import has_tokenizer


class ValueModel(nn.Module):
    """Critic: a sequence-classification model whose scalar head is read at every position;
    `V(s_t)` for response token t is read at the position before it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: Batch) -> torch.Tensor:
        values = prefix_scores(self.model, batch.input_ids, batch.attention_mask)
        return torch.gather(values, 1, batch.positions - 1)


def load_critic(c, world, reward_model_dir, tokenizer, policy) -> nn.Module:
    """The value model's transformer and head (float32 weights, as every trained model): the reward
    model's, or the policy's with a zero head."""
    from transformers import AutoModelForSequenceClassification

    if c.critic_init == "reward_model":
        if reward_model_dir is None:
            raise UserInputError(
                "--critic-init reward_model needs --reward-model (or a world); or use --critic-init policy"
            )
        vocab = load_tokenizer(str(reward_model_dir)).get_vocab() if has_tokenizer(reward_model_dir) else None
        if vocab is not None and vocab != tokenizer.get_vocab():
            raise UserInputError(
                f"--critic-init reward_model: the reward model's tokenizer ({reward_model_dir}) differs from the "
                "policy's, so the critic cannot read the policy's tokens; use --critic-init policy"
            )
        model = AutoModelForSequenceClassification.from_pretrained(
            str(resolve_model_source(reward_model_dir)), dtype=torch.float32
        )
    else:
        model = scalar_head_from_lm(c.policy or world.policy_dir)
        with torch.no_grad():
            score_head(model).weight.zero_()
    if model.config.vocab_size != policy.config.vocab_size:
        raise UserInputError(
            f"the value model's vocabulary ({model.config.vocab_size}) differs from the policy's "
            f"({policy.config.vocab_size}); use --critic-init policy"
        )
    return model.to(policy.device)
