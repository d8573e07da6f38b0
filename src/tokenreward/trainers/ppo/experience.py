"""The experience of one rollout: every tensor the update reads, one field each.

Shapes: `B` responses of this process, `T` the longest response in tokens (right-padded;
`batch.mask` marks the real tokens), `L` the longest prompt + response.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from tokenreward.generation import Batch, response_logprobs, response_token_stats
from tokenreward.trainers.ppo.critic import shares_policy


@dataclass
class Experience:
    batch: Batch  # input_ids / attention_mask [B, L]; positions / tokens / mask [B, T]
    logprobs: torch.Tensor  # log pi_old(y_t | x, y_<t) when sampled, [B, T]
    ref_logprobs: torch.Tensor  # log pi_ref(y_t | x, y_<t), [B, T]
    entropy: torch.Tensor  # entropy of pi_old at each response position, [B, T]
    rewards: torch.Tensor  # per-token rewards after the KL penalty, [B, T]
    advantages: torch.Tensor  # [B, T]
    values: torch.Tensor | None = None  # critic V(s_t) when sampled, [B, T]; None without a critic
    returns: torch.Tensor | None = None  # value targets, [B, T]; None without a critic

    def rows(self, index: torch.Tensor) -> Experience:
        """The responses `index` (a `[b]` index tensor) of every field."""
        return Experience(
            **{
                f.name: (
                    getattr(self, f.name).rows(index)
                    if f.name == "batch"
                    else None
                    if getattr(self, f.name) is None
                    else getattr(self, f.name)[index]
                )
                for f in dataclasses.fields(self)
            }
        )


@dataclass
class Scores:
    """Rollout-time scores of a batch (no gradients)."""

    logprobs: torch.Tensor  # [B, T]
    ref_logprobs: torch.Tensor  # [B, T]
    entropy: torch.Tensor  # [B, T]
    values: torch.Tensor | None  # [B, T]


@torch.no_grad()
def score_rollout(policy, reference, critic, batch: Batch, temperature: float, chunk: int) -> Scores:
    """Policy and reference log-probs, entropy and critic values, `chunk` responses at a time."""
    parts: dict[str, list[torch.Tensor]] = {"logprobs": [], "ref_logprobs": [], "entropy": [], "values": []}
    for start in range(0, batch.input_ids.shape[0], chunk):
        rows = batch.rows(
            torch.arange(start, min(start + chunk, batch.input_ids.shape[0]), device=batch.input_ids.device)
        )
        shared = shares_policy(critic)
        stats = response_token_stats(policy, rows, temperature, entropy=True, hidden=shared)
        parts["logprobs"].append(stats.logprobs)
        parts["entropy"].append(stats.entropy)
        parts["ref_logprobs"].append(response_logprobs(reference, rows, temperature))
        if critic is not None:
            parts["values"].append(critic(stats.hidden) if shared else critic(rows))
    values = torch.cat(parts["values"]) if parts["values"] else None
    return Scores(torch.cat(parts["logprobs"]), torch.cat(parts["ref_logprobs"]), torch.cat(parts["entropy"]), values)
