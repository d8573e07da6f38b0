"""`bench rl`'s figures from finished runs: per-run metrics, learning-curve summaries, the
mean +- std table over seeds, the readings at matched KL (`tokenreward.bench.rl_frontier`),
and the gaps to the baseline method at matched KL and after equal steps."""

from __future__ import annotations

from typing import Any

from tokenreward.bench.rl_evaluation import LOGGED_SCORE
from tokenreward.bench.rl_frontier import frontier, matched_kl, method_curves
from tokenreward.viz.plots import mean_and_std, metric_curve, trailing_mean
from tokenreward.viz.report import gap_to_baseline

METRICS = ("oracle_score", "kl", "length", "defect_rate")


def run_metrics(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The sampled evaluation's metrics, and the greedy ones prefixed `greedy_`."""
    return {
        **{k: evaluation["sampled"].get(k) for k in METRICS},
        **{f"greedy_{k}": evaluation["greedy"].get(k) for k in METRICS},
    }


def smoothed_curve(
    log: list[dict[str, Any]], window: int, metric: str = "oracle_score"
) -> tuple[list[int], list[float]]:
    """The logged curve of `metric` as a trailing mean of `window` points, from the first full window."""
    steps, values = metric_curve(log, metric)
    if len(values) < window:
        return [], []
    return steps[window - 1 :].tolist(), trailing_mean(values, window)[window - 1 :].tolist()


def first_step_reaching(steps: list[int], values: list[float], target: float) -> int | None:
    return next((s for s, v in zip(steps, values) if v >= target), None)


def summarize(values: list[float]) -> dict[str, Any] | None:
    if not values:
        return None
    mean, std = mean_and_std(values)
    return {"mean": mean, "std": std, "values": values}


def summarize_runs(runs: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: summarize([r[key] for r in runs if isinstance(r.get(key), (int, float))]) for key in keys}


def aggregate(
    methods: list[Any], runs: dict[str, list[dict[str, Any]]], sft_runs: list[dict[str, Any]], config: Any
) -> dict[str, Any]:
    """`results.json`: the SFT policy's and each method's mean / std over seeds, and the logged
    steps each method needs to reach the baseline's final oracle score (`methods`: `bench.rl.Method`s; `config`:
    its `RLBenchConfig`)."""
    metric_keys = tuple(run_metrics({"sampled": {}, "greedy": {}}))
    logged = LOGGED_SCORE[config.reward]
    curves = {
        name: [smoothed_curve(r["log"], config.window, logged) for r in method_runs]
        for name, method_runs in runs.items()
    }
    target = None
    baseline_finals = [values[-1] for _, values in curves.get(config.baseline, []) if values]
    if baseline_finals:
        target = mean_and_std(baseline_finals)[0]
    sft_entries = [{"seed": r["seed"], **run_metrics(r["eval"])} for r in sft_runs]
    results: dict[str, Any] = {
        "benchmark": "rl",
        "reward": config.reward,
        "steps": config.steps,
        "seeds": list(range(config.seeds)),
        "split": config.eval_split,
        "eval_seed": config.eval_seed,
        "baseline": config.baseline,
        "window": config.window,
        "target_oracle_score": target,
        "heatmap_rewarder": config.heatmap_rewarder,
        "trainer_options": list(config.trainer_options),
        "sft": {"runs": sft_entries, **summarize_runs(sft_entries, metric_keys)},
        "methods": {},
    }
    for method in methods:
        method_runs = runs[method.name]
        entry: dict[str, Any] = {"trainer": method.trainer, "rewarder": method.rewarder, "runs": []}
        for run, (steps, values) in zip(method_runs, curves[method.name]):
            reached = first_step_reaching(steps, values, target) if target is not None else None
            logged_kl = dict(zip(*smoothed_curve(run["log"], config.window, "kl")))
            entry["runs"].append(
                {
                    "seed": run["seed"],
                    **run_metrics(run["eval"]),
                    "final_logged_oracle_score": values[-1] if values else None,
                    "steps_to_target": reached,
                    "kl_at_target": logged_kl.get(reached),
                    "train_seconds": run["done"]["train_seconds"],
                }
            )
        entry.update(summarize_runs(entry["runs"], metric_keys + ("train_seconds", "final_logged_oracle_score")))
        if target is not None:
            reached = [r["steps_to_target"] for r in entry["runs"] if r["steps_to_target"] is not None]
            stat = summarize(reached) or {"mean": None, "std": None, "values": []}
            kls = [r["kl_at_target"] for r in entry["runs"] if r["kl_at_target"] is not None]
            entry["steps_to_target"] = {
                **stat,
                "reached": len(reached),
                "of": len(entry["runs"]),
                "kl": summarize(kls),
            }
        results["methods"][method.name] = entry
    held_out = method_curves(runs, sft_runs, config.steps)
    results["matched_kl"] = matched_kl(held_out, config.baseline)
    results["frontier"] = frontier(held_out)
    results["comparisons"] = comparisons(results, [m.name for m in methods])
    at_kl = results["matched_kl"]
    results["comparisons_matched_kl"] = comparisons(results, [m.name for m in methods], at_kl and at_kl["methods"])
    return results


def comparisons(results: dict[str, Any], names: list[str], scores: dict[str, Any] | None = None) -> dict[str, Any]:
    """`gap_to_baseline` of every method that has one (`scores`: see there)."""
    gaps = {name: gap_to_baseline(results, name, scores) for name in names}
    return {name: gap for name, gap in gaps.items() if gap}


def score_name(results: dict[str, Any]) -> str:
    """What the held-out score of a `bench rl` run is: the verifiable oracle's 1/0 makes it an accuracy."""
    return "accuracy (verifiable oracle)" if results.get("reward") == "verifiable" else "oracle score"


def print_table(results: dict[str, Any], console) -> None:
    """The terminal table (score at matched KL first, then after equal steps with its KL) and,
    per method, the gap to the baseline in words at matched KL and after equal steps."""
    from rich.table import Table

    from tokenreward.viz.report import format_reading, format_stat, format_steps, gap_sentence, matched_kl_reading

    seeds = len(results["seeds"])
    over = f"mean ± std over {seeds} seeds" if seeds > 1 else "one seed (no spread)"
    matched = results.get("matched_kl")
    at = f"KL {matched['kl']:.3f} ({results['baseline']}'s final KL)" if matched else "matched KL (no baseline)"
    table = Table(title=f"held-out {score_name(results)} at {at} and after {results['steps']} steps, {over}")
    headers = (
        "method",
        f"score at KL {matched['kl']:.3f}" if matched else "score at matched KL",
        f"score after {results['steps']} steps",
        "KL",
        "greedy",
        "length",
        f"steps to {results['baseline']}",
    )
    for header in headers:
        table.add_column(header, justify="left" if header == "method" else "right")
    rows = [("SFT policy", results["sft"], "-", "-")]
    rows += [
        (
            name,
            m,
            format_reading(matched_kl_reading(results, name)),
            "baseline" if name == results["baseline"] else format_steps(m.get("steps_to_target")),
        )
        for name, m in results["methods"].items()
    ]
    for name, m, reading, steps in rows:
        table.add_row(
            name,
            reading,
            format_stat(m["oracle_score"]),
            format_stat(m["kl"]),
            format_stat(m["greedy_oracle_score"]),
            format_stat(m["length"], 1),
            steps,
        )
    console.print(table)
    for name, comparison in results.get("comparisons_matched_kl", {}).items():
        console.print(f"At {at}: " + gap_sentence(comparison))
    for name, comparison in results.get("comparisons", {}).items():
        kls = (results["methods"][name].get("kl"), results["methods"][results["baseline"]].get("kl"))
        console.print(
            f"After {results['steps']} steps (KL {format_stat(kls[0])} vs {format_stat(kls[1])}, not matched): "
            + gap_sentence(comparison)
        )
