"""`bench preference` at matched KL: the runs' held-out curves (the SFT policy of the run's seed,
the policies saved every `--eval-every` steps, the final policy; sampled responses) read at the
baseline's final KL and on a grid of KL values (`tokenreward.bench.rl_frontier`, as `bench rl`),
the headline table and `frontier.png`."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from tokenreward.bench.rl_frontier import frontier, matched_kl, method_curves
from tokenreward.viz.plots import save_frontier
from tokenreward.viz.report import format_stat


def compare_at_matched_kl(
    held_out: dict[str, list[dict[str, Any]]], sft: dict[int, dict[str, Any]], baseline: str, steps: int
) -> dict[str, Any]:
    """`matched_kl` (every method read at `baseline`'s final KL; None without it) and `frontier`;
    `held_out`: per method its runs' `{seed, points, eval}`, `sft`: the SFT evaluation per seed."""
    sft_runs = [{"seed": seed, "eval": evaluation} for seed, evaluation in sft.items()]
    curves = method_curves(held_out, sft_runs, steps)
    return {"matched_kl": matched_kl(curves, baseline), "frontier": frontier(curves)}


def save_sft_frontier(path: Path, results: dict[str, Any], sft: dict[int, dict[str, Any]]) -> Path:
    """`frontier.png`, with the SFT policy's sampled score (mean over the seeds) as reference line."""
    sft_score = statistics.fmean(evaluation["sampled"]["oracle_score"] for evaluation in sft.values())
    return save_frontier(path, results["frontier"], results["matched_kl"], sft_score)


def matched_kl_table(results: dict[str, Any]) -> str:
    """Each method's sampled held-out oracle score at the baseline's final KL (mean ± std over the
    seeds that reach it, and how many do), beside its score and KL after the full budget."""
    matched, steps = results.get("matched_kl"), results["steps"]
    if matched is None:
        return f"No comparison at matched KL: the baseline {results['baseline']!r} is not among the methods.\n"
    kl = matched["kl"]
    lines = [
        f"Sampled held-out oracle score at matched KL {kl:.3f} ({matched['baseline']}'s final KL, the least of its "
        f"seeds'; policies evaluated every {results['eval_every']} steps), mean ± std over the seeds that reach it.",
        "",
        f"| method | score at KL {kl:.3f} | seeds reaching | score after {steps} steps | KL after {steps} steps |",
        "|---|---|---|---|---|",
        f"| SFT | - | - | {results['sft']['oracle_score_sampled']:.3f} | 0 |",
    ]
    for name, reading in matched["methods"].items():
        final = results["methods"][name]
        lines.append(
            f"| {name} | {format_stat(reading)} | {reading['reached']}/{reading['of']} "
            f"| {format_stat(final['oracle_score_sampled'])} | {format_stat(final['kl_sampled'])} |"
        )
    return "\n".join(lines) + "\n"
