"""`tokenreward bench credit`: how well each rewarder's token rewards match the world's true credit.

On the world's held-out responses, for every registered rewarder (those whose resources the
world lacks are skipped with the reason) plus the `uniform` and `random` baselines:
- `auroc`: area under the ROC curve of telling defect tokens (tokens overlapping a span with
  negative credit) from the rest, lower reward = more defective; pooled over all tokens;
- `spearman`: rank correlation between token rewards and true token credit (the sum of the
  credits of the spans a token overlaps, 0 elsewhere), pooled over all tokens;
- `top1`: over responses with a defect token, the share whose lowest-reward token is a defect
  token (ties for the lowest reward count fractionally, as a random tie-break would);
- `ms_per_1k`: wall-clock milliseconds per 1000 tokens scored. Every rewarder first scores
  the longest pairs once, untimed (`warm_up`; without it the first rewarder of a run also paid
  the process's one-time costs and read up to 1.3x slower than the same call later); then the
  rewarders take turns on chunks of `TIMING_CHUNK` pairs, in rotating order, so that a change of
  load on a shared machine (which alone moved one rewarder's figure 3x between runs) falls on
  all of them alike;
- `cpu_ms_per_1k`: the same in CPU time of this process (all its threads);
- `auroc_within` (a diagnostic): the AUROC computed inside each response that has both defect
  and clean tokens, averaged over those responses. Pooled AUROC also rewards telling bad
  responses from good ones (`uniform` scores above 0.5 that way); within a response
  `uniform` is exactly 0.5, so this isolates where the reward lands.
Tokens are each rewarder's own tokens (character offsets), so rewarders with different
tokenizers are compared on the same characters.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tokenreward.bench import Recording, register_bench
from tokenreward.config import validate_ranges
from tokenreward.errors import UserInputError
from tokenreward.models import ModelLoading
from tokenreward.rewards import REWARDERS, TokenRewards, build_rewarder, rewarder_requirements
from tokenreward.world import SPLITS, open_world
from tokenreward.world.oracle import defect_tokens, token_credit

BASELINES = ("uniform", "random")


@dataclass
class CreditConfig(ModelLoading, Recording):
    """`tokenreward bench credit`: token rewards against the world's ground-truth credit."""

    world: str | None = field(
        default=None, metadata={"help": "world folder (default: $TOKENREWARD_WORLD or the cached world)"}
    )
    rewarders: list[str] = field(
        default_factory=list, metadata={"help": "rewarders to score (default: every registered one)"}
    )
    json: str | None = field(
        default=None, metadata={"help": "write {rewarder: {auroc, spearman, top1, ms_per_1k}} here"}
    )
    split: str = field(
        default="test", metadata={"help": f"world split whose responses are scored ({', '.join(SPLITS)})"}
    )
    limit: int | None = field(default=None, metadata={"help": "score only the first N responses", "min": 0})

    def __post_init__(self) -> None:
        super().__post_init__()
        validate_ranges(self)


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


def credit_metrics(
    result: TokenRewards, credit_spans: Sequence[list], seconds: float, cpu_seconds: float = math.nan
) -> dict[str, float]:
    """The benchmark's numbers for one rewarder's output on responses with the given true spans."""
    rewards, credits, flags = [], [], []
    for i in range(len(result)):
        offsets = result.offsets[i]
        rewards.append(result.token_rewards(i))
        credits.append(token_credit(credit_spans[i], offsets))
        flags.append(defect_tokens(credit_spans[i], offsets))
    flat_rewards = [r for row in rewards for r in row]
    n_tokens = len(flat_rewards)
    return {
        "auroc": auroc([-r for r in flat_rewards], [f for row in flags for f in row]),
        "spearman": spearman(flat_rewards, [c for row in credits for c in row]),
        "top1": top1(rewards, flags),
        "auroc_within": auroc_within(rewards, flags),
        "ms_per_1k": 1000.0 * seconds / n_tokens * 1000.0 if n_tokens else math.nan,
        "cpu_ms_per_1k": 1000.0 * cpu_seconds / n_tokens * 1000.0 if n_tokens else math.nan,
        "tokens": n_tokens,
    }


WARM_UP_BATCHES = 8
#: pairs each rewarder scores in turn; the rewarders take turns (in rotating order), so a change
#: of load on a shared machine falls on all of them alike
TIMING_CHUNK = 64


def build_rewarders(names: Sequence[str], resources: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The rewarders the resources can build, and the reason for each one skipped."""
    rewarders: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name in names:
        missing = [r for r in rewarder_requirements(name) if r not in resources]
        if missing:
            skipped[name] = "the world has no " + ", ".join(missing)
            continue
        try:
            rewarders[name] = build_rewarder(name, resources)
        except (ValueError, FileNotFoundError, OSError) as err:
            skipped[name] = f"could not be built from the world: {err}"
    return rewarders, skipped


def warm_up(rewarder, prompts: Sequence[Any], responses: Sequence[Any]) -> None:
    """Score the `WARM_UP_BATCHES * batch_size` pairs with the longest responses once, untimed."""
    count = WARM_UP_BATCHES * max(1, rewarder.batch_size)
    longest = sorted(range(len(responses)), key=lambda i: -len(str(responses[i])))[:count]
    rewarder.score([prompts[i] for i in longest], [responses[i] for i in longest])


def rewarder_names(requested: Sequence[str]) -> list[str]:
    names = list(requested) if requested else REWARDERS.names()
    for baseline in BASELINES:
        if baseline not in names:
            names.append(baseline)
    unknown = [n for n in names if n not in REWARDERS]
    if unknown:
        raise UserInputError(f"unknown rewarder(s) {', '.join(unknown)}; known: {', '.join(REWARDERS.names())}")
    return names


def bench_credit(
    world,
    names: Sequence[str],
    split: str = "test",
    limit: int | None = None,
    loading: ModelLoading | None = None,
    progress: bool = True,
) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """Score `names` on the world's `split` responses; returns (results, skipped reasons)."""
    from tokenreward.progress import progress_bar

    records = world.responses(split)[:limit]
    if not records:
        raise UserInputError(f"the world's {split!r} split has no responses")
    prompts = [r["prompt"] for r in records]
    responses = [r["response"] for r in records]
    spans = [r["credit_spans"] for r in records]
    resources: dict[str, Any] = dict(world.resources())
    if loading is not None:
        resources["loading"] = loading
    rewarders, skipped = build_rewarders(names, resources)
    for rewarder in rewarders.values():
        warm_up(rewarder, prompts, responses)
    parts: dict[str, list[TokenRewards]] = {name: [] for name in rewarders}
    wall, cpu = dict.fromkeys(rewarders, 0.0), dict.fromkeys(rewarders, 0.0)
    with progress_bar(len(prompts), "bench credit", enabled=progress) as advance:
        for k, begin in enumerate(range(0, len(prompts), TIMING_CHUNK)):
            stop = min(begin + TIMING_CHUNK, len(prompts))
            order = list(rewarders)[k % len(rewarders) :] + list(rewarders)[: k % len(rewarders)] if rewarders else []
            for name in order:
                start, cpu_start = time.perf_counter(), time.process_time()
                parts[name].append(rewarders[name].score(prompts[begin:stop], responses[begin:stop]))
                wall[name] += time.perf_counter() - start
                cpu[name] += time.process_time() - cpu_start
            advance(stop - begin)
    results = {
        name: credit_metrics(TokenRewards.concat(parts[name]), spans, wall[name], cpu[name]) for name in rewarders
    }
    return results, skipped


def print_table(results: dict[str, dict[str, float]], skipped: dict[str, str], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("rewarder", "AUROC", "Spearman", "top1", "ms / 1k tok", "CPU ms / 1k", "AUROC within"):
        table.add_column(column, justify="left" if column == "rewarder" else "right")
    for name, m in sorted(results.items(), key=lambda kv: -np.nan_to_num(kv[1]["auroc"], nan=-1.0)):
        table.add_row(
            name,
            f"{m['auroc']:.3f}",
            f"{m['spearman']:.3f}",
            f"{m['top1']:.3f}",
            f"{m['ms_per_1k']:.1f}",
            f"{m['cpu_ms_per_1k']:.1f}",
            f"{m['auroc_within']:.3f}",
        )
    console = Console()
    console.print(table)
    for name, reason in skipped.items():
        console.print(f"skipped {name}: {reason}")


@register_bench("credit", CreditConfig, help="token rewards vs the world's true credit: AUROC, Spearman, top-1, speed")
def run(config: CreditConfig, name: str = "credit") -> dict[str, dict[str, float]]:
    from tokenreward.io import atomic_write, check_writable

    if config.limit is not None and config.limit < 0:
        raise UserInputError(f"--limit must be at least 0, got {config.limit}")
    if config.json:
        check_writable(config.json, "--json")
    world = open_world(config.world)
    names = rewarder_names(config.rewarders)
    results, skipped = bench_credit(world, names, config.split, config.limit, ModelLoading.of(config))
    print_table(results, skipped, f"bench credit on {world.root} ({config.split} split)")
    if config.json:
        with atomic_write(Path(config.json)) as handle:
            handle.write(json.dumps(results, indent=1))
    return results
