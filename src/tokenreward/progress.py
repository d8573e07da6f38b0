"""A rich progress bar that also shows the latest metrics."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def progress_bar(total: int, description: str, start: int = 0, enabled: bool = True) -> Iterator[Any]:
    """A rich progress bar; yields `advance(n=1, **fields)` that also shows the latest metrics."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[metrics]}"),
    ]
    with Progress(*columns, disable=not enabled, transient=False) as bar:
        task = bar.add_task(description, total=total, completed=start, metrics="")

        def advance(n: int = 1, **metrics: Any) -> None:
            shown = "  ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
            bar.update(task, advance=n, metrics=shown)

        yield advance
