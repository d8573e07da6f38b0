"""The PPO critic: a sequence-classification model whose scalar head is read at every position
(`ValueModel`), or a value head on the policy's own transformer (`SharedValueHead`,
`--critic-init shared`)."""

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

    shares_policy = False

    def forward(self, batch: Batch) -> torch.Tensor:
        values = prefix_scores(self.model, batch.input_ids, batch.attention_mask)
        return torch.gather(values, 1, batch.positions - 1)


class SharedValueHead(nn.Module):
    """Critic on the policy's own transformer: `V(s_t) = w . h_{t-1} + b`, where `h_{t-1}` is the
    hidden state the policy's LM head reads to predict response token t (the same forward pass
    gives the log-probs and the values). `w` and `b` start at zero. The value loss reaches the
    policy's weights (or LoRA adapters) through `h`, so no second transformer is held or run."""

    shares_policy = True

    def __init__(self, hidden_size: int):
        super().__init__()
        self.head = nn.Linear(hidden_size, 1)
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.bias.zero_()

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """`[B, T, H]` hidden states -> `[B, T]` values."""
        return self.head(hidden.to(self.head.weight.dtype)).squeeze(-1)


def shares_policy(critic: nn.Module | None) -> bool:
    """Whether `critic` (possibly inside a data-parallel wrapper) reads the policy's hidden states."""
    return critic is not None and getattr(getattr(critic, "module", critic), "shares_policy", False)


def shared_value_head(policy: nn.Module) -> SharedValueHead:
    """A zero value head sized to what the policy's LM head reads, on the policy's device."""
    width = policy.get_output_embeddings().weight.shape[1]
    return SharedValueHead(width).to(policy.get_output_embeddings().weight.device)


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
