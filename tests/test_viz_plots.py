"""Learning-curve statistics and figures against naive per-step loops."""

from __future__ import annotations

import math
import random
import statistics

import numpy as np
import pytest

from tokenreward.viz.plots import (
    mean_and_std,
    metric_curve,
    plot_learning_curves,
    save_learning_curves,
    seed_band,
    trailing_mean,
)


def synthetic_logs(seeds: int, steps: int, offset: float, rng: random.Random) -> list[list[dict]]:
    """Per seed a log with a noisy rising oracle score, a KL, and some records lacking a metric."""
    logs = []
    for _ in range(seeds):
        log = []
        for step in range(1, steps + 1):
            record = {"step": step, "reward": rng.random(), "kl": 0.01 * step + rng.random() * 0.01}
            if step % 3:  # every third step has no oracle score
                record["oracle_score"] = offset + 0.1 * step + rng.gauss(0, 0.05)
            log.append(record)
        rng.shuffle(log)  # order in the file must not matter
        logs.append(log)
    return logs


def naive_band(logs, metric, window):
    """Per step mean and sample std over seeds of each seed's trailing mean, by explicit loops."""
    per_step: dict[int, list[float]] = {}
    for log in logs:
        points = sorted((r["step"], r[metric]) for r in log if metric in r)
        for k, (step, _) in enumerate(points):
            chunk = [v for _, v in points[max(0, k - window + 1) : k + 1]]
            per_step.setdefault(step, []).append(sum(chunk) / len(chunk))
    steps = sorted(per_step)
    means = [statistics.fmean(per_step[s]) for s in steps]
    stds = [statistics.stdev(per_step[s]) if len(per_step[s]) > 1 else 0.0 for s in steps]
    return steps, means, stds


def test_mean_and_std_matches_statistics():
    values = [0.3, 1.7, -0.4, 2.2]
    assert mean_and_std(values) == pytest.approx((statistics.fmean(values), statistics.stdev(values)))
    assert mean_and_std([5.0]) == (5.0, 0.0)
    with pytest.raises(ValueError, match="no values"):
        mean_and_std([])


def test_trailing_mean_matches_loop():
    values = np.array([random.Random(1).uniform(-1, 1) for _ in range(17)])
    for window in (1, 2, 5, 30):
        expected = [values[max(0, k - window + 1) : k + 1].mean() for k in range(len(values))]
        np.testing.assert_allclose(trailing_mean(values, window), expected, rtol=1e-12)
    with pytest.raises(ValueError, match="window"):
        trailing_mean(values, 0)


def test_metric_curve_sorts_and_skips_missing_and_nan():
    log = [{"step": 3, "kl": 0.3}, {"step": 1, "kl": 0.1}, {"step": 2}, {"step": 4, "kl": math.nan}, {"kl": 9.0}]
    steps, values = metric_curve(log, "kl")
    assert steps.tolist() == [1, 3]
    assert values.tolist() == [0.1, 0.3]


@pytest.mark.parametrize("window", [1, 4])
def test_seed_band_matches_naive_loop(window):
    logs = synthetic_logs(seeds=3, steps=20, offset=0.0, rng=random.Random(0))
    # a fourth seed that stopped early: the last steps have fewer seeds
    logs.append([r for r in synthetic_logs(1, 12, 0.5, random.Random(7))[0]])
    band = seed_band(logs, "oracle_score", window)
    steps, means, stds = naive_band(logs, "oracle_score", window)
    assert band["step"].tolist() == steps
    np.testing.assert_allclose(band["mean"], means, rtol=1e-12)
    np.testing.assert_allclose(band["std"], stds, rtol=1e-9, atol=1e-12)
    assert band["count"].tolist() == [4 if s <= 12 else 3 for s in steps]


def test_figure_draws_the_seed_means_and_bands(tmp_path):
    rng = random.Random(3)
    curves = {
        "ppo-sparse": synthetic_logs(3, 15, 0.0, rng),
        "ppo-red": synthetic_logs(3, 15, 0.4, rng),
        "dpo": [[{"step": 1}]],
    }
    fig = plot_learning_curves(curves, metrics=("oracle_score", "kl"), references={"oracle_score": 0.25}, window=2)
    oracle_axis, kl_axis = fig.axes
    # method lines first, then the SFT reference line; `dpo` logged no oracle score and is left out
    drawn = oracle_axis.lines
    assert [line.get_label() for line in drawn] == ["ppo-sparse (n=3)", "ppo-red (n=3)", "SFT policy"]
    for line, method in zip(drawn, ["ppo-sparse", "ppo-red"]):
        steps, means, _ = naive_band(curves[method], "oracle_score", 2)
        np.testing.assert_allclose(line.get_xdata(), steps)
        np.testing.assert_allclose(line.get_ydata(), means, rtol=1e-12)
    assert list(drawn[2].get_ydata()) == [0.25, 0.25]
    # the band is mean +- std: its polygon spans exactly [min(mean - std), max(mean + std)]
    _, means, stds = naive_band(curves["ppo-red"], "oracle_score", 2)
    band_y = oracle_axis.collections[1].get_paths()[0].vertices[:, 1]
    assert band_y.min() == pytest.approx(min(m - s for m, s in zip(means, stds)))
    assert band_y.max() == pytest.approx(max(m + s for m, s in zip(means, stds)))
    kl_steps, kl_means, _ = naive_band(curves["ppo-sparse"], "kl", 2)
    np.testing.assert_allclose(kl_axis.lines[0].get_ydata(), kl_means, rtol=1e-12)

    path = save_learning_curves(tmp_path / "sub" / "curves.png", curves, metrics=("oracle_score",))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="at least one metric"):
        plot_learning_curves(curves, metrics=())


def test_a_runaway_curve_does_not_flatten_the_others():
    rng = random.Random(5)
    steps = 40
    stable = {
        f"m{k}": [
            [
                {"step": s, "oracle_score": -0.8 + 0.05 * k + 0.004 * s + rng.gauss(0, 0.01)}
                for s in range(1, steps + 1)
            ]
        ]
        for k in range(5)
    }
    runaway = {
        "collapse": [
            [{"step": s, "oracle_score": -0.8 - (0.5 * (s - 20) if s > 20 else 0.0)} for s in range(1, steps + 1)]
        ]
    }
    fig = plot_learning_curves({**stable, **runaway}, metrics=("oracle_score",))
    low, high = fig.axes[0].get_ylim()
    values = [r["oracle_score"] for logs in stable.values() for r in logs[0]]
    assert low <= min(values) and high >= max(values)  # every stable curve stays in view
    assert low > -5.0  # the collapse (down to -10.8) is cut off ...
    assert (high - low) < 3 * (max(values) - min(values))  # ... so the stable curves keep most of the panel
    assert "leave the panel" in fig.axes[0].get_title()

    # without a runaway the axis is the data's span padded by 5% each side
    fig = plot_learning_curves(stable, metrics=("oracle_score",))
    span = max(values) - min(values)
    assert fig.axes[0].get_ylim() == pytest.approx((min(values) - 0.05 * span, max(values) + 0.05 * span))
    assert fig.axes[0].get_title() == ""
