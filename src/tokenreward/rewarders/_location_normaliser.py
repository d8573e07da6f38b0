"""The location-aware normaliser of segment rewards (Yin et al. 2025, Sec. 3.2) and its fit.

Segment `k` of `K` sits at relative position `p_k = k / K`. Its reward is normalised with a
mean and a standard deviation that are functions of that position,
`mu(p) = a_mu ln p + b_mu` and `sigma(p) = a_sigma ln p + b_sigma`:
`r^_k = (r_k - mu(p_k)) / sigma(p_k)`. The identity (`mu = 0`, `sigma = 1`) is the normaliser of
a model that was never fitted. A fitted normaliser also keeps the smallest position it saw,
`p_min`, and reads `mu` and `sigma` at `max(p, p_min)` rather than extrapolating the log lines.

The fit follows the authors' procedure: every segment reward of a set of responses is grouped by
its position `p_k` rounded to three decimals; each group gives a mean and a (population)
standard deviation; `mu` and `sigma` are each a Huber regression of those on `ln p`
(`huber_fit`, the objective of scikit-learn's `HuberRegressor`, epsilon 1.35).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from tokenreward.errors import UserInputError

#: relative positions are grouped at this many decimals when the normaliser is fitted
POSITION_DECIMALS = 3


@dataclass(frozen=True)
class LocationNormaliser:
    """`mu(p) = mean_slope ln p + mean_intercept`, `sigma(p) = std_slope ln p + std_intercept`, `p`
    floored at `min_position`."""

    mean_slope: float = 0.0
    mean_intercept: float = 0.0
    std_slope: float = 0.0
    std_intercept: float = 1.0
    min_position: float = 0.0

    def moments(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(mu(p), sigma(p))` at relative positions `p` in (0, 1]."""
        log = torch.log(positions.double().clamp_min(self.min_position))
        return self.mean_slope * log + self.mean_intercept, self.std_slope * log + self.std_intercept

    def __call__(self, values: torch.Tensor) -> torch.Tensor:
        """`r^_k = (r_k - mu(k/K)) / sigma(k/K)` for the `K` segment rewards of one response, in order;
        an error if `sigma` is not positive there."""
        positions = torch.arange(1, len(values) + 1, dtype=torch.float64) / max(len(values), 1)
        mean, std = self.moments(positions)
        if not bool((std > 0).all()):
            k = int((std <= 0).nonzero()[0]) + 1
            raise UserInputError(
                f"the location normaliser's std {self.std_slope} ln p + {self.std_intercept} is {float(std[k - 1]):.4g} "
                f"at p = {k}/{len(values)}; it must be positive (refit it or pass other std parameters)"
            )
        return ((values.double() - mean.to(values.device)) / std.to(values.device)).to(values.dtype)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: Any, where: str) -> LocationNormaliser:
        names = [f for f in cls.__dataclass_fields__]
        if not isinstance(value, dict) or sorted(value) != sorted(names):
            raise UserInputError(f"{where}: the normaliser must be an object with {', '.join(names)}")
        bad = [
            k
            for k in names
            if isinstance(value[k], bool) or not isinstance(value[k], (int, float)) or not math.isfinite(value[k])
        ]
        if bad:
            raise UserInputError(f"{where}: normaliser field {bad[0]} is not a finite number")
        return cls(**{k: float(value[k]) for k in names})


def huber_fit(x: np.ndarray, y: np.ndarray, epsilon: float = 1.35, alpha: float = 1e-4) -> tuple[float, float]:
    """`(slope, intercept)` minimising scikit-learn's `HuberRegressor` objective over `(w, c, sigma)`:
    `n sigma + sum_i [ r_i^2 / sigma if |r_i| <= eps sigma else 2 eps |r_i| - eps^2 sigma ] + alpha w^2`,
    `r_i = y_i - w x_i - c` (L-BFGS-B from `w = c = 0`, `sigma = 1`, `sigma` bounded away from 0)."""
    from scipy.optimize import minimize

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, c, sigma = theta
        r = y - w * x - c
        inlier = np.abs(r) <= epsilon * sigma
        sign = np.sign(r[~inlier])
        loss = len(y) * sigma + (r[inlier] ** 2).sum() / sigma
        loss += (2 * epsilon * np.abs(r[~inlier]) - epsilon**2 * sigma).sum() + alpha * w * w
        d_w = -2 * (r[inlier] * x[inlier]).sum() / sigma - 2 * epsilon * (sign * x[~inlier]).sum() + 2 * alpha * w
        d_c = -2 * r[inlier].sum() / sigma - 2 * epsilon * sign.sum()
        d_sigma = len(y) - (r[inlier] ** 2).sum() / sigma**2 - epsilon**2 * (~inlier).sum()
        return float(loss), np.array([d_w, d_c, d_sigma])

    bounds = [(None, None), (None, None), (np.finfo(np.float64).eps * 10, None)]
    result = minimize(objective, np.array([0.0, 0.0, 1.0]), jac=True, method="L-BFGS-B", bounds=bounds)
    return float(result.x[0]), float(result.x[1])


def position_moments(segment_rewards: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions `p` (rounded to `POSITION_DECIMALS`), and the mean and population std of the
    segment rewards at each, from the segment rewards of every response."""
    groups: dict[float, list[float]] = defaultdict(list)
    for rewards in segment_rewards:
        for k, reward in enumerate(rewards, start=1):
            groups[round(k / len(rewards), POSITION_DECIMALS)].append(float(reward))
    positions = np.array(sorted(groups))
    return (
        positions,
        np.array([np.mean(groups[p]) for p in positions]),
        np.array([np.std(groups[p]) for p in positions]),
    )


def fit_location_normaliser(segment_rewards: Sequence[Sequence[float]]) -> LocationNormaliser:
    """The normaliser fitted to the segment rewards of a set of responses (module docstring)."""
    if not any(len(r) for r in segment_rewards):
        raise UserInputError("no segment rewards to fit the location normaliser on")
    positions, means, stds = position_moments(segment_rewards)
    if len(positions) < 2:
        raise UserInputError(
            "every response has a single segment; the location normaliser needs segments at two or more positions"
        )
    log = np.log(positions)
    mean_slope, mean_intercept = huber_fit(log, means)
    std_slope, std_intercept = huber_fit(log, stds)
    fitted = LocationNormaliser(mean_slope, mean_intercept, std_slope, std_intercept, float(positions[0]))
    low = float(fitted.moments(torch.tensor([positions[0], 1.0]))[1].min())
    if not low > 0:
        raise UserInputError(
            f"the fitted std {std_slope:.4g} ln p + {std_intercept:.4g} reaches {low:.4g} within the positions it "
            f"was fitted on ({positions[0]:.3g} to 1); fit on more responses"
        )
    return fitted
