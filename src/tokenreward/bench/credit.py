"""`tokenreward bench credit`: how well each rewarder's token rewards match the world's true credit.

On the world's held-out responses, for every registered rewarder (those whose resources the
world lacks are skipped with the reason; so, in the default set, are those the world's
resources make degenerate: `implicit` and `rto` with the SFT policy as both policy and
reference, whose `log pi - log ref` is 0 on every token, and `verifiable`, a verdict) plus the `uniform` and `random`
baselines; with `--reward-model [LABEL=]PATH,...` every rewarder built on a reward model runs
once more per model, named `REWARDER [LABEL]`, beside the world's:
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
  `uniform` is exactly 0.5, so this isolates where the reward lands;
- `auroc_within_by_kind`: the same per kind of defect, each kind's tokens against the clean
  tokens of the response (`tokenreward.bench.credit_kinds`);
- `step_auroc`, `step_auroc_within`, `step_top1` (when the split has responses of a family that
  writes steps, `multistep`): the same questions asked of the oracle's steps, each scored by the
  rewarder's step score (`prm`) or by the sum of its token rewards over the step
  (`tokenreward.bench.credit_steps`).
Tokens are each rewarder's own tokens (character offsets), so rewarders with different
tokenizers are compared on the same characters. The rewarders that read a model of their own
kind take it from a flag (`OWN_MODELS`): `prm` its process reward model from `--prm` (without it
`prm` is skipped: the world's reward model scores whole responses), `segment` its segment reward
model from `--segment-model` (without it, the world's reward model).
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
from tokenreward.bench.credit_kinds import defect_kinds, kind_labels
from tokenreward.bench.credit_stats import auroc, auroc_within, spearman, top1
from tokenreward.bench.credit_steps import step_metrics, step_truths
from tokenreward.config import validate_ranges
from tokenreward.errors import UserInputError
from tokenreward.models import ModelLoading
from tokenreward.rewards import REWARDERS, TokenRewards, build_rewarder, rewarder_requirements, with_reward_model
from tokenreward.world import SPLITS, open_world
from tokenreward.world.oracle import defect_tokens, token_credit

BASELINES = ("uniform", "random")
#: rewarder -> the config field naming its own reward model, and whether it needs one (the world's
#: Bradley-Terry reward model scores whole responses, which `prm` cannot read as step scores)
OWN_MODELS = {"prm": ("prm", True), "segment": ("segment_model", False)}


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
    reward_model: list[str] = field(
        default_factory=list,
        metadata={
            "help": "more reward models, [LABEL=]PATH (a folder or GGUF file the loaders accept; label: its name): "
            "each runs the rewarders built on a reward model, named REWARDER [LABEL]",
            "aliases": ["--reward-models"],
        },
    )
    prm: str | None = field(
        default=None,
        metadata={"help": "process reward model folder for the prm rewarder (`tokenreward train prm`'s final/)"},
    )
    segment_model: str | None = field(
        default=None,
        metadata={
            "help": "segment reward model folder for the segment rewarder (`train segment-reward-model`'s final/; "
            "default: the world's reward model)"
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        validate_ranges(self)


def auroc_within_by_kind(
    rewards: Sequence[Sequence[float]],
    offsets: Sequence[Sequence[tuple[int, int]]],
    kinds: Sequence[Sequence[tuple[str, int, int]]],
    credit_spans: Sequence[list],
) -> dict[str, dict[str, float]]:
    """`{kind: {"auroc", "responses"}}`: per defect kind, the mean over responses with a token of
    that kind and a clean token of the AUROC of those tokens (lower reward = defect; `credit_kinds`)."""
    per_kind: dict[str, list[float]] = {}
    for row, token_spans, defects, spans in zip(rewards, offsets, kinds, credit_spans):
        hits, clean = kind_labels(token_spans, defects, spans)
        for kind, hit in hits.items():
            kept = [i for i, (h, c) in enumerate(zip(hit, clean)) if h or c]
            if any(hit) and any(clean):
                per_kind.setdefault(kind, []).append(auroc([-row[i] for i in kept], [hit[i] for i in kept]))
    return {kind: {"auroc": float(np.mean(v)), "responses": len(v)} for kind, v in sorted(per_kind.items())}


def credit_metrics(
    result: TokenRewards,
    credit_spans: Sequence[list],
    seconds: float,
    cpu_seconds: float = math.nan,
    kinds: Sequence[Sequence[tuple[str, int, int]]] | None = None,
) -> dict[str, Any]:
    """The benchmark's numbers for one rewarder's output on responses with the given true spans
    (and, given each response's defect `kinds`, `auroc_within_by_kind`)."""
    rewards, credits, flags = [], [], []
    for i in range(len(result)):
        offsets = result.offsets[i]
        rewards.append(result.token_rewards(i))
        credits.append(token_credit(credit_spans[i], offsets))
        flags.append(defect_tokens(credit_spans[i], offsets))
    flat_rewards = [r for row in rewards for r in row]
    n_tokens = len(flat_rewards)
    by_kind = (
        {}
        if kinds is None
        else {"auroc_within_by_kind": auroc_within_by_kind(rewards, result.offsets, kinds, credit_spans)}
    )
    return {
        "auroc": auroc([-r for r in flat_rewards], [f for row in flags for f in row]),
        "spearman": spearman(flat_rewards, [c for row in credits for c in row]),
        "top1": top1(rewards, flags),
        "auroc_within": auroc_within(rewards, flags),
        "ms_per_1k": 1000.0 * seconds / n_tokens * 1000.0 if n_tokens else math.nan,
        "cpu_ms_per_1k": 1000.0 * cpu_seconds / n_tokens * 1000.0 if n_tokens else math.nan,
        "tokens": n_tokens,
        **by_kind,
    }


WARM_UP_BATCHES = 8
#: pairs each rewarder scores in turn; the rewarders take turns (in rotating order), so a change
#: of load on a shared machine falls on all of them alike
TIMING_CHUNK = 64


def parse_reward_models(items: Sequence[str]) -> dict[str, str]:
    """`{label: path}` of `--reward-model` items `LABEL=PATH` or `PATH` (label: the file or folder name)."""
    models: dict[str, str] = {}
    for item in items:
        label, _, path = item.partition("=") if "=" in item else ("", "", item)
        label = label or Path(path).name
        if not Path(path).exists():
            raise FileNotFoundError(f"--reward-model {item}: no file or folder {path}")
        if label in models:
            raise UserInputError(f"--reward-model: the label {label!r} is given twice; name them LABEL=PATH")
        models[label] = path
    return models


def degenerate_reason(name: str, resources: dict[str, Any]) -> str | None:
    """Why rewarder `name` would score nothing of its own with these resources (None if it would):
    a policy and a reference that are the same model make `log pi - log ref` 0 on every token; a
    rewarder whose class says it gives no token credit of its own (`no_token_credit`, e.g. a verdict)."""
    verdict = getattr(REWARDERS.get(name), "no_token_credit", None)
    if verdict:
        return f"{verdict}; name it in --rewarders to score it anyway"
    needs = rewarder_requirements(name)
    if "policy" in needs and "reference" in needs and str(resources["policy"]) == str(resources["reference"]):
        return (
            f"its policy and reference are the same model ({resources['policy']}), so log pi - log ref is 0 on "
            "every token; name it in --rewarders to score it anyway"
        )
    return None


def model_resources(resources: dict[str, Any], reward_model: str) -> dict[str, Any]:
    """The resources with another reward model, read with its own tokenizer (`reward_tokenizer`,
    which a rewarder without a parameter of that name reads as its `tokenizer`)."""
    return with_reward_model(resources, reward_model, own_tokenizer=True)


def own_model_resources(name: str, resources: dict[str, Any], own_models: dict[str, str]) -> dict[str, Any] | str:
    """The resources of rewarder `name` with its own model from `own_models` (`OWN_MODELS`), or why
    it cannot run: a rewarder that needs its own model and was given none."""
    if name not in OWN_MODELS:
        return resources
    flag, needed = OWN_MODELS[name]
    if name in own_models:
        return model_resources(resources, own_models[name])
    if needed:
        return f"it reads a model of its own: pass --{flag.replace('_', '-')} PATH"
    return resources


def build_rewarders(
    names: Sequence[str],
    resources: dict[str, Any],
    reward_models: dict[str, str] | None = None,
    skip_degenerate: bool = False,
    own_models: dict[str, str] | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The rewarders the resources can build (with their `own_models`, `{rewarder: path}`; and, per
    reward model, each rewarder built on a reward model as `NAME [LABEL]`), and the reason for each one skipped."""
    rewarders: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name in names:
        missing = [r for r in rewarder_requirements(name) if r not in resources]
        reason = degenerate_reason(name, resources) if skip_degenerate and not missing else None
        own = own_model_resources(name, resources, own_models or {})
        if missing or reason or isinstance(own, str):
            skipped[name] = reason or (own if isinstance(own, str) else "the world has no " + ", ".join(missing))
            continue
        variants = {name: own}
        if "reward_model" in rewarder_requirements(name) and not OWN_MODELS.get(name, ("", False))[1]:
            variants.update(
                {
                    f"{name} [{label}]": model_resources(resources, path)
                    for label, path in (reward_models or {}).items()
                }
            )
        for row, given in variants.items():
            try:
                rewarders[row] = build_rewarder(name, given)
            except (ValueError, FileNotFoundError, OSError) as err:
                skipped[row] = f"could not be built: {err}"
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
    reward_models: dict[str, str] | None = None,
    skip_degenerate: bool = False,
    own_models: dict[str, str] | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Score `names` (`prm` and `segment` with their `own_models`, `{rewarder: path}`; each rewarder
    built on a reward model once more per `reward_models` entry) on the world's `split` responses,
    at token level and, on the responses with steps, at step level; returns (results, skipped reasons)."""
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
    kinds, truths = defect_kinds(world, split, records), step_truths(world, split, records)
    rewarders, skipped = build_rewarders(names, resources, reward_models, skip_degenerate, own_models)
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
    results = {}
    for name, rewarder in rewarders.items():
        result = TokenRewards.concat(parts[name])
        results[name] = credit_metrics(result, spans, wall[name], cpu[name], kinds)
        results[name].update(step_metrics(result, truths, getattr(rewarder, "steps_of", None)))
    return results, skipped


def own_models(config: CreditConfig) -> dict[str, str]:
    """`{rewarder: path}` of the own models the config names (`OWN_MODELS`), each checked to exist."""
    models = {}
    for rewarder, (flag, _) in OWN_MODELS.items():
        path = getattr(config, flag)
        if path is not None:
            if not Path(path).exists():
                raise FileNotFoundError(f"--{flag.replace('_', '-')} {path}: no such file or folder")
            models[rewarder] = path
    return models


@register_bench("credit", CreditConfig, help="token rewards vs the world's true credit: AUROC, Spearman, top-1, speed")
def run(config: CreditConfig, name: str = "credit") -> dict[str, dict[str, float]]:
    from tokenreward.bench.credit_tables import print_table
    from tokenreward.io import atomic_write, check_writable

    if config.limit is not None and config.limit < 0:
        raise UserInputError(f"--limit must be at least 0, got {config.limit}")
    if config.json:
        check_writable(config.json, "--json")
    reward_models = parse_reward_models(config.reward_model)
    world = open_world(config.world)
    print(f"reward model: {world.reward_model_description()}")
    names = rewarder_names(config.rewarders)
    results, skipped = bench_credit(
        world,
        names,
        config.split,
        config.limit,
        ModelLoading.of(config),
        reward_models=reward_models,
        skip_degenerate=not config.rewarders,
        own_models=own_models(config),
    )
    print_table(results, skipped, f"bench credit on {world.root} ({config.split} split)")
    if config.json:
        with atomic_write(Path(config.json)) as handle:
            handle.write(json.dumps(results, indent=1))
    return results
