"""`bench rl` at matched KL: reading held-out curves at a KL value, the headline, the frontier and its plot."""

from __future__ import annotations

import random
import statistics

import pytest

from tokenreward.bench.rl_frontier import frontier, matched_kl, method_curves, reading, run_curve, score_at_kl
from tokenreward.viz.plots import plot_frontier, save_frontier


def test_score_at_kl_interpolates_linearly_on_the_first_crossing():
    two = [(0, 0.0, -1.0), (10, 0.4, -0.2)]
    # k = 0.1 is a quarter of the way from KL 0 to KL 0.4: -1 + 0.25 * 0.8
    assert score_at_kl(two, 0.1) == pytest.approx(-0.8)
    assert score_at_kl(two, 0.4) == pytest.approx(-0.2)
    assert score_at_kl(two, 0.0) == -1.0 and score_at_kl(two, -0.05) == -1.0
    assert score_at_kl(two, 0.41) is None  # never reached: no extrapolation
    # the KL rises to 0.3, falls back, then rises to 0.6: 0.2 is read on the first rise, 0.5 on the last segment
    wavy = [(0, 0.0, 0.0), (5, 0.3, 0.6), (10, 0.1, 0.1), (15, 0.6, 1.1)]
    assert score_at_kl(wavy, 0.2) == pytest.approx(0.0 + (0.2 / 0.3) * 0.6)
    assert score_at_kl(wavy, 0.5) == pytest.approx(0.1 + (0.4 / 0.5) * 1.0)


def test_run_curve_orders_the_points_from_the_sft_policy_to_the_final_one():
    sft, final = {"oracle_score": -1.0, "kl": 0.0}, {"oracle_score": 0.5, "kl": 0.9}
    points = [{"step": 6, "kl": 0.5, "oracle_score": 0.1}, {"step": 3, "kl": 0.2, "oracle_score": -0.4}]
    assert run_curve(sft, points, final, 8) == [(0, 0.0, -1.0), (3, 0.2, -0.4), (6, 0.5, 0.1), (8, 0.9, 0.5)]


def test_headline_reads_every_method_at_the_baselines_least_final_kl():
    curves = {
        "base": [[(0, 0.0, 0.0), (10, 0.2, 1.0)], [(0, 0.0, 0.2), (10, 0.3, 1.4)]],
        "other": [[(0, 0.0, 0.0), (10, 0.8, 2.0)], [(0, 0.0, 0.2), (10, 0.1, 0.5)]],
    }
    headline = matched_kl(curves, "base")
    assert headline["kl"] == 0.2
    base = [1.0, 0.2 + (0.2 / 0.3) * 1.2]
    assert headline["methods"]["base"]["values"] == pytest.approx(base)
    assert headline["methods"]["base"]["mean"] == pytest.approx(statistics.fmean(base))
    assert headline["methods"]["base"]["std"] == pytest.approx(statistics.stdev(base))
    other = headline["methods"]["other"]  # the second seed stopped at KL 0.1: one of two seeds reaches 0.2
    assert (other["reached"], other["of"]) == (1, 2) and other["values"] == pytest.approx([0.5]) and other["std"] == 0
    assert matched_kl(curves, "missing") is None


def test_frontier_matches_a_naive_loop():
    rng = random.Random(3)
    curves = {
        name: [
            [(0, 0.0, rng.uniform(-1, 0))]
            + [(5 * k, 0.1 * k + rng.uniform(0, 0.05), rng.uniform(-1, 1)) for k in range(1, rng.randint(2, 6))]
            for _ in range(3)
        ]
        for name in ("a", "b")
    }
    result = frontier(curves, points=11)
    evaluated = {kl for runs in curves.values() for curve in runs for _, kl, _ in curve}
    even = {max(evaluated) * i / 10 for i in range(11)}
    assert result["kl"] == pytest.approx(sorted(even | evaluated))
    for name, runs in curves.items():
        line = result["methods"][name]
        for i, kl in enumerate(result["kl"]):
            values = [score_at_kl(c, kl) for c in runs]
            values = [v for v in values if v is not None]
            assert line["reached"][i] == len(values) == reading(runs, kl)["reached"]
            if values:
                assert line["mean"][i] == pytest.approx(statistics.fmean(values))
                assert (line["min"][i], line["max"][i]) == (min(values), max(values))
            else:
                assert line["mean"][i] is line["min"][i] is line["max"][i] is None
        assert line["seeds"] == [[[kl, score] for _, kl, score in c] for c in runs]


def test_method_curves_start_at_the_sft_evaluation_of_each_seed():
    sft_runs = [{"seed": s, "eval": {"sampled": {"oracle_score": -s, "kl": 0.0}}} for s in (0, 1)]
    runs = {
        "m": [
            {
                "seed": s,
                "points": [{"step": 2, "kl": 0.1, "oracle_score": 0.5}],
                "eval": {"sampled": {"kl": 0.3, "oracle_score": 1.0}},
            }
            for s in (0, 1)
        ]
    }
    curves = method_curves(runs, sft_runs, steps=4)
    assert [c[0] for c in curves["m"]] == [(0, 0.0, 0.0), (0, 0.0, -1.0)]
    assert curves["m"][1] == [(0, 0.0, -1.0), (2, 0.1, 0.5), (4, 0.3, 1.0)]


def test_frontier_plot_draws_one_line_per_method_and_the_references(tmp_path):
    curves = {
        "a": [[(0, 0.0, 0.0), (4, 0.4, 1.0)], [(0, 0.0, 0.1), (4, 0.3, 0.8)]],
        "b": [[(0, 0.0, 0.0), (4, 0.6, 0.5)]],
    }
    data, headline = frontier(curves), matched_kl(curves, "a")
    figure = plot_frontier(data, headline, 0.05)
    lines = {line.get_label(): line for line in figure.axes[0].lines}
    assert [label for label in lines if not label.startswith("_")] == [
        "a (n=2)",
        "b (n=1)",
        "a's final KL",
        "SFT policy",
    ]
    # a's mean line stops where its second seed stops (KL 0.3): beyond it not every seed has a value
    assert max(lines["a (n=2)"].get_xdata()) == pytest.approx(0.3)
    assert max(lines["b (n=1)"].get_xdata()) == pytest.approx(0.6)
    # the seeds' own curves: one thin line per seed, through its points
    thin = [tuple(line.get_xdata()) for line in figure.axes[0].lines if line.get_label().startswith("_")]
    assert sorted(thin) == [(0.0, 0.3), (0.0, 0.4), (0.0, 0.6)]
    path = save_frontier(tmp_path / "f.png", data, headline, 0.05)
    assert path.read_bytes()[:4] == b"\x89PNG" and not list(tmp_path.glob(".*"))
