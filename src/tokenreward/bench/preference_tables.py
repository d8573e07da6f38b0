"""Markdown tables of `bench preference`'s results: per method, the token rewards' credit
figures, and the differences to DPO on the same seed."""

from __future__ import annotations

from typing import Any

CREDIT_METRICS = ("auroc", "spearman", "top1")


def credit_table(results: dict[str, Any]) -> str:
    lines = ["| token reward | AUROC | Spearman | top-1 |", "|---|---|---|---|"]
    for name, metrics in results["credit"].items():
        label = name if name.startswith("contrastive") else f"implicit of {name}"
        lines.append(
            f"| {label} | "
            + " | ".join(
                f"{metrics[f'implicit_{k}']['mean']:.3f} ± {metrics[f'implicit_{k}']['std']:.3f}"
                for k in CREDIT_METRICS
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def difference_table(differences: dict[str, dict[str, dict[str, float]]]) -> str:
    keys = [
        k
        for k in (
            "oracle_score",
            "oracle_score_sampled",
            "win_rate",
            "win_rate_sampled",
            "implicit_auroc",
            "implicit_spearman",
        )
        if differences and k in next(iter(differences.values()))
    ]
    lines = ["| minus DPO (same seed) | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for method, values in differences.items():
        lines.append(
            f"| {method} | " + " | ".join(f"{values[k]['mean']:+.3f} ± {values[k]['std']:.3f}" for k in keys) + " |"
        )
    return "\n".join(lines) + "\n"


def markdown_table(results: dict[str, Any]) -> str:
    columns = [
        ("oracle_score", "oracle (greedy)"),
        ("oracle_score_sampled", "oracle (sampled)"),
        ("win_rate", "win vs SFT (greedy)"),
        ("win_rate_sampled", "win vs SFT (sampled)"),
        ("kl", "KL"),
        ("length", "length"),
        ("defect_rate", "defect rate"),
    ]
    lines = ["| method | " + " | ".join(title for _, title in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    sft = results["sft"]
    lines.append("| SFT | " + " | ".join(f"{sft[k]:.3f}" if k in sft else "-" for k, _ in columns) + " |")
    for name, metrics in results["methods"].items():
        lines.append(
            f"| {name} | "
            + " | ".join(f"{metrics[k]['mean']:.3f} ± {metrics[k]['std']:.3f}" for k, _ in columns)
            + " |"
        )
    return "\n".join(lines) + "\n"
