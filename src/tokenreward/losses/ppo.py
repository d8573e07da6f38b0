"""PPO-family building blocks as pure tensor functions (no models, no state).

Shapes: every per-token tensor is `[batch, response_len]`, right-padded, with a boolean
`mask` that is True on the real response tokens (a contiguous prefix of each row). Masked
means take an optional `count`, the number of tokens to divide by: under data parallelism
the trainer passes the token count of the whole (all-process) mini-batch divided by the
number of processes, so that the gradients `accelerate` averages over processes equal those
of one process holding the whole mini-batch.
"""

from __future__ import annotations

from typing import Literal

import torch

from tokenreward.errors import UserInputError

KLEstimator = Literal["k1", "k2", "k3"]


def masked_total(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The scalar `sum_{b,t} values[b,t] * mask[b,t]` (padding may hold NaN; it is never read)."""
    return torch.where(mask, values, torch.zeros_like(values)).sum()


def masked_mean(values: torch.Tensor, mask: torch.Tensor, count: float | torch.Tensor | None = None) -> torch.Tensor:
    """`sum(values * mask) / count`, `count = sum(mask)` unless given."""
    denominator = mask.sum() if count is None else torch.as_tensor(count, dtype=values.dtype, device=values.device)
    return masked_total(values, mask) / denominator.clamp_min(1)


def local_masked_moments(values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (biased) variance of the masked entries of this process's `values`
    (`tokenreward.trainers.harness.global_masked_moments`: over every process)."""
    mean = masked_mean(values, mask)
    return mean, masked_mean((values - mean) ** 2, mask)


def masked_whiten(
    values: torch.Tensor,
    mask: torch.Tensor,
    shift_mean: bool = True,
    mean: torch.Tensor | None = None,
    var: torch.Tensor | None = None,
    eps: float = 1e-8,
) -> torch.Tensor:
    """`(x - mean) / sqrt(var + eps)` over the masked entries (`+ mean` back if not
    `shift_mean`); padding becomes 0. `mean`/`var` may be given (e.g. gathered over processes)."""
    if mean is None or var is None:
        mean, var = local_masked_moments(values, mask)
    whitened = (values - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(mask, whitened, torch.zeros_like(whitened))


def kl_estimate(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: KLEstimator = "k1") -> torch.Tensor:
    """Per-token estimate of KL(pi || ref) from the sampled token's log-probs, `d = log pi - log ref`:

    - k1 = d: unbiased for KL(pi||ref); the one to put in the reward. As a loss its expected
      gradient is zero (`E_pi[grad log pi] = 0`), so it is refused there by the trainer.
    - k2 = d^2 / 2: biased, but as a loss its on-policy gradient is exactly grad KL(pi||ref).
    - k3 = exp(-d) - 1 + d: unbiased for KL(pi||ref) and never negative; as a loss (GRPO) its
      on-policy gradient is grad KL(ref||pi).
    """
    d = logprobs - ref_logprobs
    if estimator == "k1":
        return d
    if estimator == "k2":
        return 0.5 * d**2
    if estimator == "k3":
        return torch.expm1(-d) + d
    raise UserInputError(f"unknown KL estimator {estimator!r}; use k1, k2 or k3")


def ppo_rewards(token_rewards: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """The PPO-RLHF reward: `r_t = rewarder_t - kl_coef * KL_t` on real tokens, 0 on padding.

    With the `sparse` rewarder `rewarder_t = R(x, y) [t = T]` this is the classic layout
    (Ziegler et al.; TRL's old PPOTrainer; OpenRLHF): the score on the last real token."""
    rewards = token_rewards - kl_coef * kl
    return torch.where(mask, rewards, torch.zeros_like(rewards))


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last real token (`mask` a right-padded prefix mask)."""
    return (mask.long().sum(-1) - 1).clamp_min(0)


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016), returns `(advantages, returns)`.

    `delta_t = r_t + gamma V_{t+1} - V_t` with `V_{T+1} = 0` after each row's last real token
    (the episode ends there), `A_t = sum_{l >= 0} (gamma lam)^l delta_{t+l}` over real tokens,
    `returns = A + V`. Padding gets 0 in both.
    """
    width = rewards.shape[-1]
    rewards = torch.where(mask, rewards, torch.zeros_like(rewards))
    values = torch.where(mask, values, torch.zeros_like(values))
    zeros = torch.zeros_like(rewards[:, 0])
    maskf = mask.to(rewards.dtype)
    advantages = torch.zeros_like(rewards)
    running = zeros
    for t in reversed(range(width)):
        next_mask = maskf[:, t + 1] if t + 1 < width else zeros
        next_value = values[:, t + 1] if t + 1 < width else zeros
        delta = (rewards[:, t] + gamma * next_value - values[:, t]) * maskf[:, t]
        running = delta + gamma * lam * next_mask * running
        advantages[:, t] = running
    returns = torch.where(mask, advantages + values, torch.zeros_like(values))
    return advantages, returns


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip: float = 0.2,
    count: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate, averaged over tokens:
    `L = mean_t max(-A_t rho_t, -A_t clip(rho_t, 1 - clip, 1 + clip))`, `rho_t = exp(log pi - log pi_old)`.

    Returns the loss and `clip_frac` (share of tokens where the clipped term is taken) and
    `approx_kl` (mean of `(log pi - log pi_old)^2 / 2`), both detached."""
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask, count)
    stats = {
        "clip_frac": masked_mean((clipped > unclipped).float(), mask, count).detach(),
        "approx_kl": masked_mean(0.5 * log_ratio.detach() ** 2, mask, count),
    }
    return loss, stats


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip: float = 0.2,
    count: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value loss: `L = 1/2 mean_t max((V_t - G_t)^2, (V_old + clip(V_t - V_old, -c, c) - G_t)^2)`.

    Returns the loss and `value_clip_frac` (share of tokens where the clipped term is larger)."""
    clipped_values = old_values + torch.clamp(values - old_values, -clip, clip)
    unclipped_error = (values - returns) ** 2
    clipped_error = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped_error, clipped_error), mask, count)
    return loss, {"value_clip_frac": masked_mean((clipped_error > unclipped_error).float(), mask, count).detach()}


def sequence_returns(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`G_i = sum_t r_it` over each row's real tokens."""
    return torch.where(mask, rewards, torch.zeros_like(rewards)).sum(-1)


def reward_to_go(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`G_it = sum_{t' >= t} r_it'` (gamma = 1) on real tokens, 0 on padding."""
    masked = torch.where(mask, rewards, torch.zeros_like(rewards))
    return torch.where(mask, masked.flip(-1).cumsum(-1).flip(-1), torch.zeros_like(rewards))


def held_reward_to_go(rewards: torch.Tensor, mask: torch.Tensor, width: int | None = None) -> torch.Tensor:
    """`H_it = G_i[min(t, T_i)]`: each row's reward-to-go, held at its last token's value past
    its end, over `width` positions (default: the batch's)."""
    rtg = reward_to_go(rewards, mask)
    width = rewards.shape[-1] if width is None else width
    positions = torch.arange(width, device=rewards.device)[None, :]
    index = torch.minimum(positions, last_token_index(mask)[:, None]).clamp_max(rewards.shape[-1] - 1)
    return torch.gather(rtg, 1, index)
