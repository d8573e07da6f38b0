"""Learning curves: mean +- spread over seeds of a logged metric, per method (matplotlib).

A run's log is the list of JSON objects of its `log.jsonl` (one per step, with `step` and
metrics such as `oracle_score`, `kl`, `reward`). For one method, the seeds' logs are grouped
by `step`: at each step the band is `mean +- std` over the seeds that logged the metric there
(`std` with Bessel's correction, 0 for a single seed). An optional trailing moving average of
`window` logged points smooths each seed's curve before the seeds are combined.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tokenreward.errors import UserInputError

LogRecords = Sequence[Mapping[str, Any]]


def mean_and_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for fewer than two values)."""
    array = np.asarray(values, dtype=float)
    if array.size == 0:
        raise UserInputError("mean_and_std of no values")
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else 0.0


def metric_curve(log: LogRecords, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of `metric` in one run's log, skipping records without a finite value."""
    points = [
        (int(r["step"]), float(r[metric]))
        for r in log
        if "step" in r and isinstance(r.get(metric), (int, float)) and math.isfinite(r[metric])
    ]
    points.sort()
    return np.array([p[0] for p in points], dtype=int), np.array([p[1] for p in points], dtype=float)


def trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    """`out[k] = mean(values[max(0, k - window + 1) : k + 1])`."""
    if window < 1:
        raise UserInputError(f"smoothing window must be at least 1, got {window}")
    sums = np.cumsum(np.concatenate([[0.0], values]))
    idx = np.arange(len(values))
    lo = np.maximum(0, idx - window + 1)
    return (sums[idx + 1] - sums[lo]) / (idx + 1 - lo)


def seed_band(logs: Sequence[LogRecords], metric: str, window: int = 1) -> dict[str, np.ndarray]:
    """Per step: `mean`, `std` and `count` of `metric` over the seeds' (smoothed) curves."""
    by_step: dict[int, list[float]] = {}
    for log in logs:
        steps, values = metric_curve(log, metric)
        for step, value in zip(steps, trailing_mean(values, window) if len(values) else values):
            by_step.setdefault(int(step), []).append(float(value))
    steps = np.array(sorted(by_step), dtype=int)
    stats = [mean_and_std(by_step[s]) for s in steps]
    return {
        "step": steps,
        "mean": np.array([m for m, _ in stats], dtype=float),
        "std": np.array([s for _, s in stats], dtype=float),
        "count": np.array([len(by_step[s]) for s in steps], dtype=int),
    }


def robust_limits(series: Sequence[np.ndarray], reach: float = 3.0, pad: float = 0.05) -> tuple[float, float] | None:
    """Y-axis limits that keep every curve's typical range in view without letting one runaway
    curve flatten the others: the span of all values, cut to `[q25 - reach * IQR,
    q75 + reach * IQR]` of the pooled values (quartiles over all curves), padded by `pad` of
    the span. None when there is nothing finite to show."""
    values = np.concatenate([np.asarray(v, dtype=float).ravel() for v in series]) if series else np.zeros(0)
    values = values[np.isfinite(values)]
    if not values.size:
        return None
    q25, q75 = np.percentile(values, [25, 75])
    iqr = q75 - q25
    low, high = max(values.min(), q25 - reach * iqr), min(values.max(), q75 + reach * iqr)
    margin = pad * (high - low) if high > low else max(abs(high) * pad, 1e-3)
    return float(low - margin), float(high + margin)


def plot_learning_curves(
    curves: Mapping[str, Sequence[LogRecords]],
    metrics: Sequence[str] = ("oracle_score", "kl"),
    references: Mapping[str, float] | None = None,
    window: int = 1,
    title: str | None = None,
):
    """One panel per metric; per method the seeds' mean line and a +-std band.

    `curves[method]` is the list of the method's per-seed logs; `references[metric]` draws a
    dashed horizontal line (e.g. the SFT policy's held-out oracle score). Methods that logged
    no value of a metric are left out of its panel. The y-axis follows `robust_limits` of the
    mean curves, so a method that runs away (a collapse) leaves the panel instead of squashing
    the others; the panel then says so. Returns the matplotlib Figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not metrics:
        raise UserInputError("plot_learning_curves needs at least one metric")
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 3.8), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, metric in zip(axes[0], metrics):
        shown = []
        for k, (method, logs) in enumerate(curves.items()):
            band = seed_band(logs, metric, window)
            if not len(band["step"]):
                continue
            color = colors[k % len(colors)]
            ax.plot(band["step"], band["mean"], color=color, label=f"{method} (n={int(band['count'].max())})")
            ax.fill_between(
                band["step"], band["mean"] - band["std"], band["mean"] + band["std"], color=color, alpha=0.2
            )
            shown.append(band["mean"])
        if references and metric in references:
            ax.axhline(references[metric], color="0.4", linestyle="--", linewidth=1, label="SFT policy")
            shown.append(np.array([references[metric]]))
        limits = robust_limits(shown)
        if limits is not None:
            ax.set_ylim(*limits)
            if any(np.nanmin(v) < limits[0] or np.nanmax(v) > limits[1] for v in shown):
                ax.set_title("some curves leave the panel (axis kept to the typical range)", fontsize=8)
        ax.set_xlabel("step")
        ax.set_ylabel(metric.replace("_", " "))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    smoothing = f" (trailing mean of {window} steps)" if window > 1 else ""
    fig.suptitle((title or "learning curves, mean ± std over seeds") + smoothing, fontsize=10)
    fig.tight_layout()
    return fig


def save_learning_curves(path: Path | str, curves: Mapping[str, Sequence[LogRecords]], **kwargs: Any) -> Path:
    """Draw `plot_learning_curves(curves, **kwargs)` into a PNG at `path`."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = plot_learning_curves(curves, **kwargs)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
