"""The comparison at matched KL of `bench rl` and `bench preference`: each run's held-out oracle
score along training, read at common values of its KL to the SFT policy.

A run's curve is its held-out points in step order (`run_curve`): the SFT policy (step 0, KL 0,
its score under the run's evaluation seed), the policies saved along training
(`rl_evaluation.evaluate_along_training`) and the final policy. KL is the evaluation's: the
summed log-ratio to the SFT policy per sampled held-out response.

Reading a curve at KL `k` (`score_at_kl`): with `j` the first point whose KL reaches `k`,
    score(k) = s[j-1] + (k - kl[j-1]) / (kl[j] - kl[j-1]) * (s[j] - s[j-1]),
linear in KL between the two points around the first crossing: the score the run had when its
KL first reached `k`, as if it had stopped there. A run whose KL never reaches `k` has no value
there (no extrapolation); readings say how many seeds reach.

The headline (`matched_kl`): every method read at the baseline's final KL, the smallest final KL
among the baseline's seeds (so every baseline seed reaches it), as mean ± std over the seeds
that reach it. The frontier (`frontier`): the same reading on a grid of KL values from 0 to the
largest KL of any run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tokenreward.viz.plots import mean_and_std

Point = tuple[int, float, float]  # (step, kl, oracle score)
GRID_POINTS = 41


def run_curve(
    sft_eval: dict[str, Any], points: Sequence[dict[str, Any]], final_eval: dict[str, Any], steps: int
) -> list[Point]:
    """The run's held-out points in step order: SFT (step 0, KL 0), saved policies, final policy."""
    curve = [(0, 0.0, float(sft_eval["oracle_score"]))]
    curve += sorted(
        (int(p["step"]), float(p["kl"]), float(p["oracle_score"])) for p in points if 0 < p["step"] < steps
    )
    curve.append((steps, float(final_eval["kl"]), float(final_eval["oracle_score"])))
    return curve


def score_at_kl(curve: Sequence[Point], kl: float) -> float | None:
    """The score where the curve's KL first reaches `kl`, linear in KL from the point before
    (the first point's score for `kl` at or below its KL); None if the KL never reaches it."""
    for j, (_, kl_j, score_j) in enumerate(curve):
        if kl_j >= kl:
            if j == 0:
                return score_j
            _, kl_i, score_i = curve[j - 1]
            return score_i + (kl - kl_i) / (kl_j - kl_i) * (score_j - score_i)
    return None


def reading(curves: Sequence[Sequence[Point]], kl: float) -> dict[str, Any]:
    """Mean ± std over the seeds whose curve reaches `kl`, with `reached` of `of` seeds."""
    values = [v for v in (score_at_kl(c, kl) for c in curves) if v is not None]
    mean, std = mean_and_std(values) if values else (None, None)
    return {"mean": mean, "std": std, "values": values, "kl": kl, "reached": len(values), "of": len(curves)}


def matched_kl(curves: dict[str, list[list[Point]]], baseline: str) -> dict[str, Any] | None:
    """Every method read at the baseline's final KL (the least of its seeds'); None without the baseline."""
    if not curves.get(baseline):
        return None
    kl = min(curve[-1][1] for curve in curves[baseline])
    return {"kl": kl, "baseline": baseline, "methods": {name: reading(runs, kl) for name, runs in curves.items()}}


def frontier(curves: dict[str, list[list[Point]]], points: int = GRID_POINTS) -> dict[str, Any]:
    """Per method the reading's mean, min, max and `reached` on a grid of KL values: `points`
    evenly from 0 to the largest KL of any run, and every evaluated KL (so the lines bend where
    the runs do); and each seed's own points as `[kl, score]` (`seeds`)."""
    evaluated = [kl for runs in curves.values() for curve in runs for _, kl, _ in curve if kl >= 0]
    top = max(evaluated, default=0.0)
    grid = sorted(set(np.linspace(0.0, top, points).tolist()) | set(evaluated))
    methods = {}
    for name, runs in curves.items():
        rows = [[v for v in (score_at_kl(c, k) for c in runs) if v is not None] for k in grid]
        methods[name] = {
            "mean": [float(np.mean(row)) if row else None for row in rows],
            "min": [min(row, default=None) for row in rows],
            "max": [max(row, default=None) for row in rows],
            "reached": [len(row) for row in rows],
            "of": len(runs),
            "seeds": [[[kl, score] for _, kl, score in curve] for curve in runs],
        }
    return {"kl": grid, "methods": methods}


def method_curves(
    runs: dict[str, list[dict[str, Any]]], sft_runs: list[dict[str, Any]], steps: int
) -> dict[str, list[list[Point]]]:
    """Per method each seed's curve; the SFT point of a run is the SFT evaluation with its seed
    (the only one when every policy has the same evaluation seed)."""
    sft = {r["seed"]: r["eval"]["sampled"] for r in sft_runs}
    return {
        name: [
            run_curve(
                sft.get(r["seed"], sft_runs[0]["eval"]["sampled"]), r.get("points", []), r["eval"]["sampled"], steps
            )
            for r in method_runs
        ]
        for name, method_runs in runs.items()
    }
