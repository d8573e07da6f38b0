"""Preference losses as pure tensor functions (docs/methods.md, "Preference losses").

Shapes: sequence log-probabilities are `[B]` (summed over the response tokens); per-token
inputs are `[B, T]` with a float or bool `mask` marking the response positions (padding 0).
`delta(y) = log pi(y|x) - log ref(y|x)`. Every loss returns the per-pair losses `[B]`; the
trainer takes their mean. Functions named `*_logits` return the argument `z` of the logistic
loss `-log sigma(z)`, which T-REG needs for its sequence weight.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tokenreward.errors import UserInputError


def masked_row_sums(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`sum_t mask_t * values_t` over the last dimension: one sum per row."""
    return (values * mask).sum(-1)


def masked_sequence_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`sum_t mask_t * values_t / sum_t mask_t` over the last dimension."""
    return masked_row_sums(values, mask) / mask.sum(-1)


def log_ratio_margin(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
) -> torch.Tensor:
    """`delta(y_w) - delta(y_l)` from sequence log-probs `[B]`."""
    return (policy_chosen - reference_chosen) - (policy_rejected - reference_rejected)


def logistic_loss(logits: torch.Tensor) -> torch.Tensor:
    """`-log sigma(z)`, computed stably."""
    return -F.logsigmoid(logits)


def dpo_logits(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float = 0.1,
) -> torch.Tensor:
    """`z = beta * (delta(y_w) - delta(y_l))` from sequence log-probs `[B]`."""
    return beta * log_ratio_margin(policy_chosen, policy_rejected, reference_chosen, reference_rejected)


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float = 0.1,
) -> torch.Tensor:
    """DPO: `-log sigma(beta * (delta(y_w) - delta(y_l)))`, `beta = 0.1`."""
    return logistic_loss(dpo_logits(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta))


def simpo_logits(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    chosen_length: torch.Tensor,
    rejected_length: torch.Tensor,
    beta: float = 2.0,
    gamma: float = 1.0,
) -> torch.Tensor:
    """`z = beta/|y_w| * log pi(y_w) - beta/|y_l| * log pi(y_l) - gamma` (reference-free)."""
    return beta * policy_chosen / chosen_length - beta * policy_rejected / rejected_length - gamma


def simpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    chosen_length: torch.Tensor,
    rejected_length: torch.Tensor,
    beta: float = 2.0,
    gamma: float = 1.0,
) -> torch.Tensor:
    """SimPO: `-log sigma(beta/|y_w| log pi(y_w) - beta/|y_l| log pi(y_l) - gamma)`.

    docs/methods.md gives no defaults; `beta = 2.0`, `gamma = 1.0` are the SimPO paper's
    (`gamma / beta = 0.5`)."""
    return logistic_loss(simpo_logits(policy_chosen, policy_rejected, chosen_length, rejected_length, beta, gamma))


def token_regulariser(token_logps: torch.Tensor, token_rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """T-REG's `L_REG(y) = -sum_t r^_t * log pi(y_t | x, y_<t)`, the rewards `r^` held constant."""
    return -masked_row_sums(token_rewards.detach() * token_logps, mask)


def treg_loss(
    logits: torch.Tensor,
    regulariser_chosen: torch.Tensor,
    regulariser_rejected: torch.Tensor,
    alpha: float = 0.25,
) -> torch.Tensor:
    """T-REG on a logistic preference loss with argument `z` (DPO-REG: `dpo_logits`,
    SimPO-REG: `simpo_logits`):

    `L = -log sigma(z) + alpha * w * (L_REG(y_w) + L_REG(y_l))`, `w = sg(sigma(-z))`,

    `w` being the base loss's own gradient coefficient (for DPO,
    `sigma(beta*delta(y_l) - beta*delta(y_w))`). `alpha` in {0.1, 0.25, 0.5}; `alpha = 0` is
    the base loss exactly."""
    weight = torch.sigmoid(-logits).detach()
    return logistic_loss(logits) + alpha * weight * (regulariser_chosen + regulariser_rejected)


def sequence_kl(token_kl: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """TDPO's `SeqKL(y) = sum_t KL(ref(.|s_t) || pi(.|s_t))` over the vocabulary, from the per-token
    KL `[B, T]` (`tokenreward.logprobs.token_stats(..., reference=...)`, chunked over the
    vocabulary); returns `[B]`."""
    return masked_row_sums(token_kl, mask)


def tdpo1_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    seqkl_chosen: torch.Tensor,
    seqkl_rejected: torch.Tensor,
    beta: float = 0.1,
) -> torch.Tensor:
    """TDPO1: `-log sigma(beta * (margin - (SeqKL(y_l) - SeqKL(y_w))))`,
    `margin = delta(y_w) - delta(y_l)`."""
    margin = log_ratio_margin(policy_chosen, policy_rejected, reference_chosen, reference_rejected)
    return logistic_loss(beta * (margin - (seqkl_rejected - seqkl_chosen)))


def tdpo2_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    seqkl_chosen: torch.Tensor,
    seqkl_rejected: torch.Tensor,
    beta: float = 0.1,
    alpha: float = 0.5,
) -> torch.Tensor:
    """TDPO2: `-log sigma(beta * margin - alpha * beta * (SeqKL(y_l) - sg(SeqKL(y_w))))`,
    `alpha = 0.5`, `beta = 0.1`."""
    margin = log_ratio_margin(policy_chosen, policy_rejected, reference_chosen, reference_rejected)
    return logistic_loss(beta * margin - alpha * beta * (seqkl_rejected - seqkl_chosen.detach()))


def tgdpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    mask_chosen: torch.Tensor,
    mask_rejected: torch.Tensor,
    rho_chosen: torch.Tensor,
    rho_rejected: torch.Tensor,
    beta: float = 0.1,
    a: float = 0.5,
) -> torch.Tensor:
    """TGDPO with per-token guidance `rho` (e.g. a DPO model's `log pi_dpo - log ref`), no grad:

    `-log sigma( sum_t beta(1 + a*beta*rho^w_t) d^w_t - sum_t beta(1 - a*beta*rho^l_t) d^l_t )`,
    `d_t = log pi(y_t|.) - log ref(y_t|.)`; inputs are per token `[B, T]`; `a = 0.5`, `beta = 0.1`."""
    weight_chosen = beta * (1 + a * beta * rho_chosen.detach())
    weight_rejected = beta * (1 - a * beta * rho_rejected.detach())
    chosen = masked_row_sums(weight_chosen * (policy_chosen - reference_chosen), mask_chosen)
    rejected = masked_row_sums(weight_rejected * (policy_rejected - reference_rejected), mask_rejected)
    return logistic_loss(chosen - rejected)


def select_tokens(scores: torch.Tensor, mask: torch.Tensor, ratio: float, highest: bool) -> torch.Tensor:
    """Mask of the `ceil(ratio * n)` highest (or lowest) scored of each row's `n` masked tokens."""
    mask = mask.bool()
    keep = torch.ceil(ratio * mask.sum(-1).float()).long().clamp_min(1)
    sentinel = float("-inf") if highest else float("inf")
    ranked = torch.where(mask, scores.detach(), torch.full_like(scores, sentinel, dtype=torch.float))
    order = ranked.argsort(dim=-1, descending=highest, stable=True)
    rank = torch.empty_like(order).scatter_(
        -1, order, torch.arange(order.shape[-1], device=order.device).expand_as(order)
    )
    return mask & (rank < keep[:, None])


def sepo_selected_means(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    mask_chosen: torch.Tensor,
    mask_rejected: torch.Tensor,
    score_chosen: torch.Tensor,
    score_rejected: torch.Tensor,
    ratio: float = 0.3,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SePO's `(mean_{S_w} log pi, mean_{S_l} log pi)` `[B]` each: token scores
    `s_t = log pi_oracle - log ref`, `S_w` the top `ratio` of `y_w`'s tokens, `S_l` the bottom
    `ratio` of `y_l`'s (at least one token each, `select_tokens`). The loss is
    `logistic_loss(beta * (chosen - rejected))`, `ratio = 0.3`, `beta = 1` (docs/methods.md has
    no `beta`; 1 is its equation)."""
    if not 0.0 < ratio <= 1.0:
        raise UserInputError(f"SePO's token ratio must lie in (0, 1], got {ratio}")
    keep_chosen = select_tokens(score_chosen, mask_chosen, ratio, highest=True).float()
    keep_rejected = select_tokens(score_rejected, mask_rejected, ratio, highest=False).float()
    return masked_sequence_mean(policy_chosen, keep_chosen), masked_sequence_mean(policy_rejected, keep_rejected)
