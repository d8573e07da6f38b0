"""`bench credit`'s tables on the terminal: the token-level table, the within-response AUROC per
defect kind, and the step-level table of the responses with steps (`credit_steps`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def print_table(results: dict[str, dict[str, float]], skipped: dict[str, str], title: str) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title))
    for column in ("rewarder", "AUROC", "Spearman", "top1", "ms / 1k tok", "CPU ms / 1k", "AUROC within"):
        table.add_column(column, justify="left" if column == "rewarder" else "right")
    for name, m in sorted(results.items(), key=lambda kv: -np.nan_to_num(kv[1]["auroc"], nan=-1.0)):
        table.add_row(
            escape(name),
            f"{m['auroc']:.3f}",
            f"{m['spearman']:.3f}",
            f"{m['top1']:.3f}",
            f"{m['ms_per_1k']:.1f}",
            f"{m['cpu_ms_per_1k']:.1f}",
            f"{m['auroc_within']:.3f}",
        )
    console = Console()
    console.print(table)
    kinds = sorted({kind for m in results.values() for kind in m.get("auroc_within_by_kind", {})})
    if kinds:
        by_kind = Table(title="per defect kind: AUROC within a response, its tokens vs the clean ones (n: responses)")
        by_kind.add_column("rewarder")
        for kind in kinds:
            counts = [m["auroc_within_by_kind"].get(kind, {}).get("responses", 0) for m in results.values()]
            by_kind.add_column(f"{kind} (n={max(counts)})", justify="right")
        for name, m in sorted(results.items()):
            cells = [m["auroc_within_by_kind"].get(kind, {}).get("auroc") for kind in kinds]
            by_kind.add_row(escape(name), *("-" if v is None or math.isnan(v) else f"{v:.3f}" for v in cells))
        console.print(by_kind)
    steps = step_table(results)
    if steps is not None:
        console.print(steps)
    for name, reason in skipped.items():
        console.print(escape(f"skipped {name}: {reason}"))


def step_table(results: dict[str, dict[str, Any]]):
    """The step-level table (`credit_steps`), best step AUROC first; None when no response had steps."""
    from rich.markup import escape
    from rich.table import Table

    scored = {name: m for name, m in results.items() if "step_auroc" in m}
    if not scored:
        return None
    first = next(iter(scored.values()))
    table = Table(
        title=f"step level: the oracle's steps of the responses with steps ({first['steps']} steps, "
        f"{first['incorrect_steps']} incorrect); score: the step score, else the step's summed token rewards"
    )
    for column in ("rewarder", "step AUROC", "step AUROC within", "step top1"):
        table.add_column(column, justify="left" if column == "rewarder" else "right")
    for name, m in sorted(scored.items(), key=lambda kv: -np.nan_to_num(kv[1]["step_auroc"], nan=-1.0)):
        table.add_row(escape(name), *(f"{m[k]:.3f}" for k in ("step_auroc", "step_auroc_within", "step_top1")))
    return table
