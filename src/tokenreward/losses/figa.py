"""FIGA's fine-grained weighted imitation loss (Guo et al., 2024; as in docs/methods.md).

The original response `y^` (rejected) and its revision `y*` are Levenshtein-aligned
(`tokenreward.labels`). With `CE_t = -log pi(y_t | x, y_<t)`:
- tokens of `y*` that were added or substituted, and its EOS: `w_t = +alpha` (1);
- tokens of `y^` that were deleted or substituted: `w_t = -beta` (0.5), but only while
  `CE_t` lies in `[ce_low, ce_high] = [0.6, 1.0]` (the gate reads `CE_t` without gradient);
- every other token: `w_t = 0`.
Loss: `sum_t w_t CE_t / #{t : w_t != 0}`, over the batch.
"""

from __future__ import annotations

import torch


def figa_weights(
    revision_positive: torch.Tensor,
    rejected_negative: torch.Tensor,
    rejected_ce: torch.Tensor,
    alpha: float = 1.0,
    beta: float = 0.5,
    ce_low: float = 0.6,
    ce_high: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights of the revision tokens, weights of the rejected tokens), same shapes as the masks."""
    gate = (rejected_ce.detach() >= ce_low) & (rejected_ce.detach() <= ce_high)
    revision_weights = alpha * revision_positive.float()
    rejected_weights = -beta * (rejected_negative.bool() & gate).float()
    return revision_weights, rejected_weights


def figa_loss(
    revision_ce: torch.Tensor,
    revision_positive: torch.Tensor,
    rejected_ce: torch.Tensor,
    rejected_negative: torch.Tensor,
    alpha: float = 1.0,
    beta: float = 0.5,
    ce_low: float = 0.6,
    ce_high: float = 1.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """`sum_t w_t CE_t / #{w_t != 0}` over both responses of every pair (see the module docstring).

    `*_ce` are per-token cross-entropies `[B, T]` (0 on padding), `revision_positive` marks the
    added / substituted tokens of the revision and its EOS, `rejected_negative` the deleted /
    substituted tokens of the rejected response (False on padding)."""
    revision_weights, rejected_weights = figa_weights(
        revision_positive, rejected_negative, rejected_ce, alpha, beta, ce_low, ce_high
    )
    positive, penalised = revision_weights != 0, rejected_weights != 0
    total = (revision_weights * revision_ce).sum() + (rejected_weights * rejected_ce).sum()
    loss = total / (positive.sum() + penalised.sum()).clamp_min(1)
    stats = {
        "positive_tokens": positive.sum(),
        "penalised_tokens": penalised.sum(),
        "positive_ce": (revision_ce.detach() * positive).sum() / positive.sum().clamp_min(1),
    }
    return loss, stats
