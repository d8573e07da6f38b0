"""KTAE: key-token advantage estimation (Sun et al., "KTAE: A Model-Free Algorithm to Key-Tokens
Advantage Estimation in Mathematical Reasoning", arXiv 2505.16826; the authors' verl fork
github.com/xiaolizh1/KTAE, `compute_ktae_outcome_advantage_and_keytokens`).

Per prompt (group) of G responses, `n+` correct (`R_i > success_threshold`) and `n-` wrong, each
token id v that occurs in the group gets a 2x2 table: `a` / `b` the correct / wrong responses
that contain v, `c = n+ - a`, `d = n- - b`. Its importance combines
- `F_v = exp(-2 p_v)`, `p_v` the two-sided Fisher exact test's p-value of the table (`F_v = 0`
  when `p_v = 1`: no evidence),
- `IG_v = H(Y) - H(Y | v occurs)`, the information gain in bits about correctness,
- `x_v = asin(sqrt(a / n+)) - asin(sqrt(b / n-))` (Cohen's h / 2: the sign says which side v
  favours), plus, with `ktae_term_frequency`, the BM25 term-frequency contrast
  `tf+_v / (tf-_v + 1e-5) - tf-_v / (tf+_v + 1e-5)`, `tf_v = f_v (k1 + 1) / (f_v + k1 (1 - b + b L / Lbar))`,
  `f_v` v's share of the side's `L` tokens, `Lbar = (L+ + L-) / 2`, `k1 = 2`, `b = 0.5`,
into `k_v = s * (2 sigmoid((wF F_v + wIG IG_v) x_v / (wF + wIG)) - 1)` in `(-s, s)`, and

    A_it = (R_i - mean_g R) / (std_g R + eps) + k_{y_it}

(the unbiased std, GRPO's). A group with no correct or no wrong response has no contrast: all
`k_v = 0`, and its GRPO term is 0 too. A group of one is refused.
"""

from __future__ import annotations

import torch

from tokenreward.losses.advantages import (
    AdvantageBatch,
    AdvantageSettings,
    _on_mask,
    group_index,
    group_mean_std,
    register_estimator,
    require_pairs,
)
from tokenreward.losses.ppo import sequence_returns

BM25_K1, BM25_B = 2.0, 0.5


def log_comb(n: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    return torch.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)


def fisher_exact_p(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Two-sided Fisher exact test p-values of the tables `[[a, b], [c, d]]` (float64): the sum of the
    hypergeometric probabilities of the tables with the same margins no likelier than the observed
    one (relative tolerance 1e-7 for ties, as scipy.stats.fisher_exact)."""
    a, b, c, d = (t.double() for t in (a, b, c, d))
    row, col, n = a + b, a + c, a + b + c + d
    k = torch.arange(int(n.max().item()) + 1, dtype=torch.float64, device=a.device)[None, :]
    low, high = (row + col - n).clamp_min(0)[:, None], torch.minimum(row, col)[:, None]
    valid = (k >= low) & (k <= high)
    safe_k = torch.where(valid, k, low)
    log_p = (
        log_comb(col[:, None], safe_k)
        + log_comb((n - col)[:, None], row[:, None] - safe_k)
        - log_comb(n, row)[:, None]
    )
    p_k = torch.where(valid, log_p.exp(), torch.zeros_like(log_p))
    observed = (log_comb(col, a) + log_comb(n - col, row - a) - log_comb(n, row)).exp()
    return torch.where(p_k <= observed[:, None] * (1 + 1e-7), p_k, torch.zeros_like(p_k)).sum(-1).clamp(max=1.0)


def information_gain(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """`H(Y) - H(Y | X)` in bits, Y correct or wrong, X whether the token occurs."""

    def entropy(*counts):
        total = sum(counts)
        terms = [torch.where(x > 0, -(x / total) * torch.log2(x / total.clamp_min(1e-300)), 0.0) for x in counts]
        return torch.where(total > 0, sum(terms), torch.zeros_like(total))

    n = a + b + c + d
    return entropy(a + c, b + d) - ((a + b) / n) * entropy(a, b) - ((c + d) / n) * entropy(c, d)


def bm25_tf(counts: torch.Tensor, length: float, mean_length: float) -> torch.Tensor:
    """BM25's saturated term frequency of token counts over a side of `length` tokens."""
    share = counts / length if length else torch.zeros_like(counts)
    return share * (BM25_K1 + 1) / (share + BM25_K1 * (1 - BM25_B + BM25_B * length / mean_length))


def key_token_importance(
    ids: torch.Tensor, mask: torch.Tensor, correct: torch.Tensor, settings: AdvantageSettings
) -> torch.Tensor:
    """`k_{y_it}` `[n, T]` for one group's responses (see the module docstring); 0 on padding."""
    importance = torch.zeros(ids.shape, dtype=torch.float64, device=ids.device)
    if correct.all() or not correct.any():
        return importance
    vocab, inverse = torch.unique(ids[mask], return_inverse=True)
    rows = torch.arange(len(ids), device=ids.device)[:, None].expand_as(ids)[mask]
    counts = torch.zeros(len(ids), len(vocab), dtype=torch.float64, device=ids.device)
    counts.index_put_((rows, inverse), torch.ones_like(inverse, dtype=torch.float64), accumulate=True)
    present = (counts > 0).double()
    a, b = present[correct].sum(0), present[~correct].sum(0)
    c, d = int(correct.sum()) - a, int((~correct).sum()) - b
    p = fisher_exact_p(a, b, c, d)
    fisher = torch.where(p < 1 - 1e-9, torch.exp(-2 * p), torch.zeros_like(p))
    gain = information_gain(a, b, c, d)
    direction = torch.asin(torch.sqrt(a / (a + c))) - torch.asin(torch.sqrt(b / (b + d)))
    if settings.ktae_term_frequency:
        length_correct, length_wrong = float(counts[correct].sum()), float(counts[~correct].sum())
        mean_length = (length_correct + length_wrong) / 2
        tf_correct = bm25_tf(counts[correct].sum(0), length_correct, mean_length)
        tf_wrong = bm25_tf(counts[~correct].sum(0), length_wrong, mean_length)
        direction = direction + tf_correct / (tf_wrong + 1e-5) - tf_wrong / (tf_correct + 1e-5)
    w_fisher, w_gain = settings.ktae_fisher_weight, settings.ktae_ig_weight
    raw = (w_fisher * fisher + w_gain * gain) * direction / (w_fisher + w_gain)
    keys = settings.ktae_scale * (2 * torch.sigmoid(raw) - 1)
    if settings.ktae_ignored_token is not None:
        keys = torch.where(vocab == settings.ktae_ignored_token, torch.zeros_like(keys), keys)
    importance[mask] = keys[inverse]
    return importance


@register_estimator("ktae", needs=("group", "token_ids"))
def ktae(batch: AdvantageBatch, settings: AdvantageSettings):
    """KTAE (arXiv 2505.16826, the authors' code): `A_it = (R_i - mean_g R) / (std_g R + eps) + k_{y_it}`,
    `k_v` token v's importance from its correct-vs-wrong contingency table in the group (Fisher
    exact test, information gain, Cohen's h, BM25 term frequency; see the module docstring)."""
    require_pairs("ktae", batch.group)
    returns = sequence_returns(batch.rewards, batch.mask)
    mean, std = group_mean_std(returns, batch.group)
    advantages = ((returns - mean) / (std + settings.eps))[:, None].expand_as(batch.rewards).clone()
    correct = returns > settings.success_threshold
    index, n_groups = group_index(batch.group)
    for g in range(n_groups):
        rows = (index == g).nonzero().squeeze(-1)
        keys = key_token_importance(batch.token_ids[rows], batch.mask[rows], correct[rows], settings)
        advantages[rows] += keys.to(advantages.dtype)
    return _on_mask(advantages, batch.mask), None
