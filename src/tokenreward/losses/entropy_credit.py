"""GTPO and GRPO-S: verifiable rewards shaped by the policy's entropy (Tan et al., "GTPO and
GRPO-S: Token and Sequence-Level Reward Shaping with Policy Entropy", arXiv 2508.04349).

Per prompt (group) of G responses, `O+` the correct ones (`R_i > success_threshold`), `O-` the
others, `H_it` the policy's entropy at token t of response i (from the sampling policy, no
gradient), `eps` the settings' guard:

GTPO (Eqs. 3, 5, 6), per token; `d_t` / `h_t` count the responses of `O+` / `O-` still
generating at position t:
    i in O+:  r_it = a1 + a2 * H_it / (sum_{k in O+} H_kt + eps) * d_t
    j in O-:  r_jt = -a1 - a2 * (1 / (H_jt + eps)) / sum_{k in O-} 1 / (H_kt + eps) * h_t
    A_it = (r_it - mean(r over the part)) / (std(r over the part) + eps)
where "the part" is every token of the group's `O+` (for i in O+) or `O-` responses: the two
are normalised separately, as the paper says. High-entropy tokens of correct responses and
uncertain tokens of wrong ones gain; confident tokens of wrong responses lose most.

GRPO-S, per response, with `Hbar_i` the mean entropy of response i:
    i in O+:  r_i = b1 + b2 * Hbar_i / (sum_{k in O+} Hbar_k + eps) * |O+|
    j in O-:  r_j = -b1 - b2 * (1 / (Hbar_j + eps)) / sum_{k in O-} 1 / (Hbar_k + eps) * |O-|
    A_i = (r_i - mean_g r) / (std_g r + eps) on every token of response i.

Stds are unbiased (n - 1), as GRPO's. A group of one is refused.
"""

from __future__ import annotations

import torch

from tokenreward.losses.advantages import (
    AdvantageBatch,
    AdvantageSettings,
    _on_mask,
    group_mean_std,
    group_sums,
    register_estimator,
    require_pairs,
)
from tokenreward.losses.ppo import sequence_returns


def correct_rows(batch: AdvantageBatch, settings: AdvantageSettings) -> torch.Tensor:
    """`[B]` bool: the responses whose return exceeds `success_threshold`."""
    return sequence_returns(batch.rewards, batch.mask) > settings.success_threshold


def part_moments(values: torch.Tensor, part: torch.Tensor, group: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the mean and unbiased std of `values [B, T]` over the tokens `part [B, T]` of its group
    (std 0 when the part has a single token)."""
    weights = part.to(values.dtype)
    totals, _ = group_sums((values * weights).sum(-1), group)
    counts, _ = group_sums(weights.sum(-1), group)
    mean = totals / counts.clamp_min(1)
    squares, _ = group_sums((((values - mean[:, None]) * weights) ** 2).sum(-1), group)
    return mean, (squares / (counts - 1).clamp_min(1)).sqrt()


def entropy_share(weights: torch.Tensor, part: torch.Tensor, group: torch.Tensor, eps: float) -> torch.Tensor:
    """`w_it / (sum_{k in part, same group} w_kt + eps) * n_t` on the part, `n_t` its rows active at t; 0 elsewhere."""
    weights = torch.where(part, weights, torch.zeros_like(weights))
    totals, _ = group_sums(weights, group)
    active, _ = group_sums(part.to(weights.dtype), group)
    return torch.where(part, weights / (totals + eps) * active, torch.zeros_like(weights))


@register_estimator("gtpo", needs=("group", "entropy"))
def gtpo(batch: AdvantageBatch, settings: AdvantageSettings):
    """GTPO (arXiv 2508.04349, Eqs. 3, 5, 6): `r_it = a1 + a2 H_it / sum_{O+} H_kt d_t` on correct
    responses, `r_jt = -a1 - a2 (1/H_jt) / sum_{O-} (1/H_kt) h_t` on wrong ones, then
    `A_it = (r_it - mean) / (std + eps)` over the group's correct tokens and, separately, its wrong
    tokens (see the module docstring)."""
    require_pairs("gtpo", batch.group)
    a1, a2 = settings.gtpo_alpha
    eps = settings.eps
    correct = correct_rows(batch, settings)[:, None]
    positive, negative = batch.mask & correct, batch.mask & ~correct
    entropy = _on_mask(batch.entropy.to(batch.rewards.dtype), batch.mask)
    shaped = torch.where(
        correct,
        a1 + a2 * entropy_share(entropy, positive, batch.group, eps),
        -a1 - a2 * entropy_share(1 / (entropy + eps), negative, batch.group, 0.0),
    )
    advantages = torch.zeros_like(shaped)
    for part in (positive, negative):
        mean, std = part_moments(shaped, part, batch.group)
        advantages = torch.where(part, (shaped - mean[:, None]) / (std[:, None] + eps), advantages)
    return _on_mask(advantages, batch.mask), None


@register_estimator("grpo_s", needs=("group", "entropy"))
def grpo_s(batch: AdvantageBatch, settings: AdvantageSettings):
    """GRPO-S (arXiv 2508.04349): `r_i = b1 + b2 Hbar_i / sum_{O+} Hbar_k |O+|` for a correct response,
    `r_j = -b1 - b2 (1/Hbar_j) / sum_{O-} (1/Hbar_k) |O-|` for a wrong one (`Hbar` the response's mean
    entropy), `A_i = (r_i - mean_g r) / (std_g r + eps)` on every token."""
    require_pairs("grpo_s", batch.group)
    b1, b2 = settings.grpo_s_beta
    eps = settings.eps
    weights = batch.mask.to(batch.rewards.dtype)
    mean_entropy = _on_mask(batch.entropy.to(batch.rewards.dtype), batch.mask).sum(-1) / weights.sum(-1).clamp_min(1)
    correct = correct_rows(batch, settings)
    shaped = torch.where(
        correct,
        b1 + b2 * entropy_share(mean_entropy, correct, batch.group, eps),
        -b1 - b2 * entropy_share(1 / (mean_entropy + eps), ~correct, batch.group, 0.0),
    )
    mean, std = group_mean_std(shaped, batch.group)
    advantages = ((shaped - mean) / (std + eps))[:, None].expand_as(batch.rewards)
    return _on_mask(advantages, batch.mask), None
