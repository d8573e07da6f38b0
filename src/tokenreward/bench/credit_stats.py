"""`bench credit`'s statistics: average ranks, AUROC, Spearman, top-1 and the within-response AUROC
(closed forms on numpy; `tests/test_bench_credit.py` checks them against naive loops)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def average_ranks(values: Sequence[float]) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank."""
    x = np.asarray(values, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    _, first, counts = np.unique(x[order], return_index=True, return_counts=True)
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    return ranks


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """P(score of a positive > score of a negative) + 0.5 P(equal) (Mann-Whitney U / n_pos n_neg)."""
    labels = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = average_ranks(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation of the average ranks; NaN when either side is constant."""
    rx, ry = average_ranks(x), average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = math.sqrt(float((rx * rx).sum() * (ry * ry).sum()))
    return float((rx * ry).sum() / denominator) if denominator > 0 else math.nan


def top1(rewards: Sequence[Sequence[float]], defects: Sequence[Sequence[bool]]) -> float:
    """Share of defective responses whose lowest-reward token is a defect token (ties fractional)."""
    hits, counted = 0.0, 0
    for row, flags in zip(rewards, defects):
        if not any(flags):
            continue
        row = np.asarray(row, dtype=np.float64)
        lowest = row == row.min()
        hits += float(np.asarray(flags)[lowest].mean())
        counted += 1
    return hits / counted if counted else math.nan


def auroc_within(rewards: Sequence[Sequence[float]], defects: Sequence[Sequence[bool]]) -> float:
    """Mean per-response AUROC (lower reward = defect) over responses with both token classes."""
    values = [auroc([-r for r in row], flags) for row, flags in zip(rewards, defects) if any(flags) and not all(flags)]
    return float(np.mean(values)) if values else math.nan
