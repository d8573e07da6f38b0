"""Advantage estimators: one registered pure function each, one signature.

Every estimator takes an `AdvantageBatch` (per-token rewards with the KL penalty already
folded in, the mask, and whatever else it declares it needs) and `AdvantageSettings`, and
returns `(advantages [B, T], returns [B, T] or None)`, zero on padding. Our PPO trainer, the
verl estimators and the TRL GRPO trainer all call these entries by name.

Notation: `r_it` the reward of token t of sample i, `G_it = sum_{t' >= t} r_it'` its reward-to-go,
`R_i = G_i1` its return, `g(i)` the prompt (group) of sample i; rows of one group need not be
adjacent.

| name | advantage | needs |
|---|---|---|
| `gae` | GAE over `r_t + gamma V_{t+1} - V_t` | values |
| `rloo_token` | `G_it - mean_{j != i in g(i)} H_jt` (position-matched, `H` held reward-to-go) | group |
| `remax_token` | `G_it - H^greedy_it` | baseline rewards |
| `rloo_return` | `G_it - mean_{j != i in g(i)} R_j` | group |
| `grpo_return` | `(G_it - mean_{j in g(i)} R_j) / (std R + eps)`, std per group or batch; or not divided | group |
| `rloo_sequence` | `R_i - mean_{j != i in g(i)} R_j` on every token | group |
| `remax_sequence` | `R_i - R^greedy_i` on every token | baseline rewards |
| `gtpo` | entropy-shaped token rewards of correct / wrong responses, normalised per side (`entropy_credit`) | group, entropy |
| `grpo_s` | entropy-shaped sequence rewards, GRPO-normalised (`entropy_credit`) | group, entropy |
| `ktae` | GRPO's `(R_i - mean) / std` plus each token's key-token importance (`key_tokens`) | group, token ids |

With a sparse reward (`r_it = R_i [t = T_i]`) every reward-to-go form equals its sequence form.

Why reward-to-go. The policy gradient is `E[sum_t grad log pi(y_t|s_t) (G_t - b_t)]`: action
`y_t` only changes rewards from t on, and a baseline computed from other, independent samples
keeps it unbiased. Summing a dense reward over the sequence instead throws its credit away: RED's
rewards telescope to `R_i - s_0`, and `s_0` (the prompt's score) is the same for every sample of
a prompt, so the sequence forms give plain RLOO back. From token t on RED's return is
`R_i - s_{i,t-1}`, so `rloo_token` gives `A_it = A_i^RLOO - (s_{i,t-1} - mean_{j != i} s_{j,t-1})`:
the final score minus what the prefix had already secured, against the other samples' prefixes
at the same depth. `A_it = r_it - b_i` (immediate reward against a sequence baseline) drops
`y_t`'s effect on later rewards and is not offered. The position-matched baselines keep return
and baseline on one scale for rewards that do not telescope (ABC, TLCR, uniform), where a whole
return `R_j` as baseline gives late tokens large negative advantages whatever they are;
`rloo_return` / `grpo_return` (the verl and TRL forms) use the whole return.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from tokenreward.errors import UserInputError
from tokenreward.losses.ppo import gae, held_reward_to_go, reward_to_go, sequence_returns
from tokenreward.registry import Registry


@dataclass
class AdvantageBatch:
    rewards: torch.Tensor  # [B, T] float, 0 on padding
    mask: torch.Tensor  # [B, T] bool, a right-padded prefix per row
    group: torch.Tensor | None = None  # [B] int, the prompt id of each row
    values: torch.Tensor | None = None  # [B, T] critic values (gae)
    baseline_rewards: torch.Tensor | None = None  # [B, T'] rewards of each row's greedy response (remax)
    baseline_mask: torch.Tensor | None = None  # [B, T'] bool
    entropy: torch.Tensor | None = None  # [B, T] policy entropy at each response position (gtpo, grpo_s)
    token_ids: torch.Tensor | None = None  # [B, T] long, the response tokens (ktae)


@dataclass
class AdvantageSettings:
    gamma: float = 1.0
    lam: float = 0.95
    #: how `grpo_return` divides: by the group's std of returns, the whole batch's, or not at all
    scale: Literal["group", "batch", "none"] = "group"
    #: added to the std in `grpo_return` (verl: 1e-6; TRL: 1e-4), and the guard of gtpo / grpo_s / ktae
    eps: float = 1e-6
    #: gtpo, grpo_s, ktae: a response is correct when its return `R_i` exceeds this (1/0 or +-1 rewards)
    success_threshold: float = 0.5
    #: gtpo's base and entropy weights (alpha_1, alpha_2); grpo_s's (beta_1, beta_2)
    gtpo_alpha: tuple[float, float] = (1.0, 0.1)
    grpo_s_beta: tuple[float, float] = (1.0, 0.1)
    #: ktae: weights of the Fisher-test and information-gain evidence, the BM25 term-frequency
    #: contrast on or off, the bound of the importance, and a token id whose importance is 0
    ktae_fisher_weight: float = 1.0
    ktae_ig_weight: float = 1.0
    ktae_term_frequency: bool = True
    ktae_scale: float = 1.0
    ktae_ignored_token: int | None = None


Estimator = Callable[[AdvantageBatch, AdvantageSettings], tuple[torch.Tensor, torch.Tensor | None]]


@dataclass(frozen=True)
class EstimatorEntry:
    estimate: Estimator
    needs: tuple[str, ...]  # AdvantageBatch fields that must be given
    critic: bool = False  # True when it needs a value model


ESTIMATORS: Registry[EstimatorEntry] = Registry("advantage estimator", "tokenreward.losses")


def register_estimator(name: str, needs: tuple[str, ...] = (), critic: bool = False):
    def decorator(fn: Estimator) -> Estimator:
        ESTIMATORS.register(name)(EstimatorEntry(fn, needs, critic))
        return fn

    return decorator


def estimate_advantages(
    name: str, batch: AdvantageBatch, settings: AdvantageSettings | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run estimator `name` after checking that what it needs is there."""
    entry = ESTIMATORS.get(name)
    missing = [f for f in entry.needs if getattr(batch, f) is None]
    if missing:
        raise UserInputError(f"advantage estimator {name!r} needs {', '.join(missing)}")
    return entry.estimate(batch, settings or AdvantageSettings())


def _on_mask(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask, values, torch.zeros_like(values))


def group_index(group: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Map arbitrary group ids `[B]` to `0..n_groups-1`; returns (index [B], n_groups)."""
    _, index = torch.unique(group, return_inverse=True)
    return index, int(index.max()) + 1 if index.numel() else 0


def group_sums(values: torch.Tensor, group: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the sum of `values` over its group (`values` `[B]` or `[B, T]`) and the group size `[B]`."""
    index, n_groups = group_index(group)
    totals = torch.zeros((n_groups, *values.shape[1:]), dtype=values.dtype, device=values.device)
    totals.index_add_(0, index, values)
    sizes = torch.bincount(index, minlength=n_groups).to(values.dtype)
    return totals[index], sizes[index]


def leave_one_out_mean(values: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """`mean_{j != i, g(j) = g(i)} values_j`; 0 for a group of one (so that sample keeps its own value,
    as verl's RLOO does)."""
    totals, sizes = group_sums(values, group)
    sizes = sizes.reshape(-1, *([1] * (values.dim() - 1)))
    others = (totals - values) / (sizes - 1).clamp_min(1)
    return torch.where(sizes > 1, others, torch.zeros_like(others))


def require_pairs(name: str, group: torch.Tensor) -> None:
    """Refuse a group of one: `name` compares the samples of a prompt with each other."""
    ids, sizes = torch.unique(group, return_counts=True)
    single = ids[sizes < 2].tolist()
    if single:
        raise UserInputError(
            f"advantage estimator {name!r} compares the samples of a prompt: group(s) {single[:5]} have a single "
            "sample; sample at least 2 responses per prompt"
        )


def group_mean_std(values: torch.Tensor, group: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, its group's mean and unbiased std of `values` `[B]`; a group of one gets mean 0, std 1
    (verl's GRPO rule)."""
    totals, sizes = group_sums(values, group)
    mean = totals / sizes
    squares, _ = group_sums((values - mean) ** 2, group)
    std = (squares / (sizes - 1).clamp_min(1)).sqrt()
    single = sizes < 2
    return torch.where(single, torch.zeros_like(mean), mean), torch.where(single, torch.ones_like(std), std)


@register_estimator("gae", needs=("values",), critic=True)
def gae_estimator(batch: AdvantageBatch, settings: AdvantageSettings):
    """GAE (Schulman et al. 2016): `A_t = sum_l (gamma lam)^l delta_{t+l}`, returns `A + V`."""
    return gae(batch.rewards, batch.values, batch.mask, settings.gamma, settings.lam)


@register_estimator("rloo_token", needs=("group",))
def rloo_token(batch: AdvantageBatch, settings: AdvantageSettings):
    """Token-level RLOO: `A_it = G_it - mean_{j != i} H_jt`, the others' reward-to-go at the same
    position, held at their last token's value where they are shorter."""
    held = held_reward_to_go(batch.rewards, batch.mask)
    return _on_mask(reward_to_go(batch.rewards, batch.mask) - leave_one_out_mean(held, batch.group), batch.mask), None


@register_estimator("remax_token", needs=("baseline_rewards", "baseline_mask"))
def remax_token(batch: AdvantageBatch, settings: AdvantageSettings):
    """Token-level ReMax: `A_it = G_it - H^greedy_it`, the greedy response's held reward-to-go."""
    held = held_reward_to_go(batch.baseline_rewards, batch.baseline_mask, width=batch.rewards.shape[-1])
    return _on_mask(reward_to_go(batch.rewards, batch.mask) - held, batch.mask), None


@register_estimator("rloo_return", needs=("group",))
def rloo_return(batch: AdvantageBatch, settings: AdvantageSettings):
    """`A_it = G_it - mean_{j != i} R_j`: reward-to-go minus the other samples' mean return."""
    baseline = leave_one_out_mean(sequence_returns(batch.rewards, batch.mask), batch.group)
    return _on_mask(reward_to_go(batch.rewards, batch.mask) - baseline[:, None], batch.mask), None


@register_estimator("grpo_return", needs=("group",))
def grpo_return(batch: AdvantageBatch, settings: AdvantageSettings):
    """`A_it = (G_it - mean_g R) / (std R + eps)`: GRPO's estimator made per token; the std is the
    group's or the batch's, or with `scale="none"` no division at all (Dr. GRPO; verl and TRL add
    no eps there either)."""
    if settings.scale not in ("group", "batch", "none"):
        raise UserInputError(f"scale must be 'group', 'batch' or 'none', got {settings.scale!r}")
    returns = sequence_returns(batch.rewards, batch.mask)
    mean, std = group_mean_std(returns, batch.group)
    if settings.scale == "batch":
        std = returns.std().expand_as(returns) if returns.numel() > 1 else torch.ones_like(returns)
    divisor = torch.ones_like(returns) if settings.scale == "none" else std + settings.eps
    advantages = (reward_to_go(batch.rewards, batch.mask) - mean[:, None]) / divisor[:, None]
    return _on_mask(advantages, batch.mask), None


@register_estimator("rloo_sequence", needs=("group",))
def rloo_sequence(batch: AdvantageBatch, settings: AdvantageSettings):
    """Classic RLOO (Ahmadian et al. 2024): `A_i = R_i - mean_{j != i} R_j` on every token."""
    returns = sequence_returns(batch.rewards, batch.mask)
    advantages = (returns - leave_one_out_mean(returns, batch.group))[:, None].expand_as(batch.rewards)
    return _on_mask(advantages, batch.mask), None


@register_estimator("remax_sequence", needs=("baseline_rewards", "baseline_mask"))
def remax_sequence(batch: AdvantageBatch, settings: AdvantageSettings):
    """Classic ReMax (Li et al. 2023): `A_i = R_i - R^greedy_i` on every token."""
    returns = sequence_returns(batch.rewards, batch.mask)
    greedy = sequence_returns(batch.baseline_rewards, batch.baseline_mask)
    return _on_mask((returns - greedy)[:, None].expand_as(batch.rewards), batch.mask), None
