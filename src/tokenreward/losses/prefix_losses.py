"""Prefix losses of a reward model: what its score at each response prefix is trained on.

A Bradley-Terry reward model is trained on `R(x, y)` at the last token only, yet RED reads
its score at every prefix, `s_t = R(x, y_<=t)` (the score head at the position that closes
response token t, `EncodedPairs.token_ends`). Each entry is a loss on those prefix scores,
added to the Bradley-Terry loss: `L = L_BT + lambda * L_prefix` (`prefix_weight` = lambda).
For a pair, `s^w` are the chosen response's prefix scores (`T_w` of them), `s^l` the rejected
one's, `s^r` those of the rejected response's minimal revision (the pair's `revision`):

- `none`: `L_prefix = 0`, the plain reward model.
- `value`, a token-supervised value model: every prefix score, read as a logit, regresses on
  the pair's outcome (chosen 1, rejected 0):
  `L = 1/2 [mean_t BCE(sigma(s^w_t), 1) + mean_t BCE(sigma(s^l_t), 0)]`, so
  `sigma(s_t)` estimates the chance that a response with this prefix is preferred.
- `truncated`, Bradley-Terry on truncated pairs: `L = mean_{k <= min(T_w, T_l)} -log sigma(s^w_k - s^l_k)`.
- `revision`, Bradley-Terry between the rejected response and its minimal revision at every
  prefix from the first token where they differ, `d`, to the end of the longer one (the shorter
  one's score held at its end, `s_k = s_T` for `k > T`, so a revision that deletes or inserts
  text is compared too): `L = mean_{d <= k <= max(T_r, T_l)} -log sigma(s^r_k - s^l_k)`
  (pairs without a revision, or whose revision equals the rejected response, add nothing).

Each is the mean over the pairs of the batch that have the term (0 when none has).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tokenreward.registry import Registry


@dataclass
class PrefixScores:
    """One batch's prefix scores, one 1-D tensor per response (`s_1 .. s_T`, `s_T` the model's
    score of the whole response), and the response token ids to find where revisions differ."""

    chosen: Sequence[torch.Tensor]
    rejected: Sequence[torch.Tensor]
    revision: Sequence[torch.Tensor | None]
    rejected_ids: Sequence[Sequence[int]]
    revision_ids: Sequence[Sequence[int] | None]


PrefixLoss = Callable[[PrefixScores], torch.Tensor]
PREFIX_LOSSES: Registry[PrefixLoss] = Registry("prefix loss", "tokenreward.losses")


def _mean_of_terms(terms: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    return torch.stack(terms).mean() if terms else like.new_zeros(())


@PREFIX_LOSSES.register("none")
def no_prefix_loss(scores: PrefixScores) -> torch.Tensor:
    return scores.chosen[0].new_zeros(())


@PREFIX_LOSSES.register("value")
def value_prefix_loss(scores: PrefixScores) -> torch.Tensor:
    terms = [
        0.5
        * (
            F.binary_cross_entropy_with_logits(w.float(), torch.ones_like(w, dtype=torch.float32))
            + F.binary_cross_entropy_with_logits(lo.float(), torch.zeros_like(lo, dtype=torch.float32))
        )
        for w, lo in zip(scores.chosen, scores.rejected)
    ]
    return _mean_of_terms(terms, scores.chosen[0])


@PREFIX_LOSSES.register("truncated")
def truncated_prefix_loss(scores: PrefixScores) -> torch.Tensor:
    terms = []
    for w, lo in zip(scores.chosen, scores.rejected):
        k = min(len(w), len(lo))
        terms.append(-F.logsigmoid(w[:k].float() - lo[:k].float()).mean())
    return _mean_of_terms(terms, scores.chosen[0])


def first_difference(a: Sequence[int], b: Sequence[int]) -> int | None:
    """The first index where `a` and `b` differ (where the shorter ends, when it is a prefix of
    the longer); None when they are equal."""
    for k, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return k
    return None if len(a) == len(b) else min(len(a), len(b))


@PREFIX_LOSSES.register("revision")
def revision_prefix_loss(scores: PrefixScores) -> torch.Tensor:
    terms = []
    for r, lo, r_ids, lo_ids in zip(scores.revision, scores.rejected, scores.revision_ids, scores.rejected_ids):
        if r is None:
            continue
        d = first_difference(r_ids, lo_ids)
        if d is None:
            continue
        k = torch.arange(d, max(len(r), len(lo)))
        held_r, held_lo = r[k.clamp(max=len(r) - 1)], lo[k.clamp(max=len(lo) - 1)]
        terms.append(-F.logsigmoid(held_r.float() - held_lo.float()).mean())
    return _mean_of_terms(terms, scores.rejected[0])
