"""`tokenreward bench preference`: train the preference methods on the world's reward pairs
(several seeds each), evaluate them on held-out prompts, and compare them with the SFT policy.

Per (method, seed) the run lives in `OUT/<method>/seed-<s>/` and is trained through the same
flags as `tokenreward train METHOD` (`tokenreward.bench.rl.train_run`: a `done.json` marks a
finished run, which is skipped; a run with a checkpoint resumes). TGDPO and SePO are guided by
the implicit token reward of the DPO run of the same seed, so `dpo` is trained first whenever
they are listed.

Evaluation (`OUT/<method>/seed-<s>/preference-eval.json`, kept unless its settings change):
`tokenreward.evaluation.evaluate_policy` on the held-out split, greedy and sampled (seeded by
the run's seed), giving the oracle score, defect rate, KL to the SFT policy and length; and the
win rate against the SFT policy judged by the oracle,

`win = mean_prompts( [s_method > s_sft] + 0.5 * [s_method = s_sft] )`,

greedy against the SFT's greedy responses and sampled against the SFT's samples of the same
seed. With `credit` (default), each trained policy's implicit token reward
`log pi - log ref` (the `implicit` rewarder, reference = the SFT policy) is scored against the
world's true token credit with `bench credit`'s metrics (AUROC of finding defect tokens,
Spearman with the true credit, top-1), and so is the `contrastive` reward T-REG regularises
towards. `OUT/results.json` holds per method the mean and standard deviation over seeds,
`OUT/results.md` the tables.

At matched KL (as `bench rl`, docs/bench-rl.md "How methods are compared"): every `--eval-every`
steps the trainer keeps a checkpoint, whose policy is evaluated (sampled, as the final one;
`bench.rl_evaluation`, cached in `RUN/evals/step-N.json`); each method is read at the
`--baseline`'s final KL on these held-out curves (`bench.rl_frontier`): `matched_kl` and
`frontier` in `results.json`, the first table of `results.md`, and `OUT/frontier.png`.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenreward.bench import Recording, register_bench
from tokenreward.bench.preference_frontier import compare_at_matched_kl, matched_kl_table, save_sft_frontier
from tokenreward.bench.preference_tables import CREDIT_METRICS, credit_table, difference_table, markdown_table
from tokenreward.bench.rl_evaluation import (
    checkpoint_options,
    eval_every_field,
    eval_interval,
    evaluate_along_training,
    evaluate_modes,
    refuse_checkpoint_overrides,
)
from tokenreward.bench.rl_methods import dtype_setting
from tokenreward.config import validate_ranges
from tokenreward.errors import UserInputError
from tokenreward.io import check_writable, write_atomic
from tokenreward.losses.preference_methods import PREFERENCE_METHODS
from tokenreward.models import ModelLoading

GUIDED = ("tgdpo", "sepo")
METRICS = (
    "oracle_score",
    "oracle_score_sampled",
    "win_rate",
    "win_rate_sampled",
    "kl",
    "kl_sampled",
    "length",
    "length_sampled",
    "defect_rate",
    "defect_rate_sampled",
)
EVAL = "preference-eval.json"
CREDIT = "implicit-credit.json"


@dataclass(kw_only=True)
class PreferenceBenchConfig(ModelLoading, Recording):
    """`tokenreward bench preference`: every preference method, every seed, the same budget; the
    loading flags (`--dtype`, ...) go to every run's trainer, the evaluation and the credit scores."""

    out: Path = field(metadata={"help": "output folder: OUT/<method>/seed-<s>/, results.json, results.md"})
    methods: list[str] = field(
        default_factory=PREFERENCE_METHODS.names, metadata={"help": "preference methods, comma-separated"}
    )
    seeds: int = field(default=3, metadata={"help": "seeds per method (0 .. seeds-1)", "min": 1})
    steps: int = field(default=200, metadata={"help": "training steps per run", "min": 1})
    world: Path | None = field(default=None, metadata={"help": "world folder (default: the built world in the cache)"})
    baseline: str = field(
        default="dpo", metadata={"help": "every method is compared at this method's final KL to the SFT policy"}
    )
    eval_split: str = field(default="test", metadata={"help": "held-out split for the evaluation"})
    eval_prompts: int | None = field(
        default=None, metadata={"help": "held-out prompts to evaluate (default: all)", "min": 1}
    )
    eval_every: int | None = eval_every_field()
    trainer_options: list[str] = field(
        default_factory=list,
        metadata={
            "help": "key=value settings for every run's trainer config (e.g. learning_rate=1e-4), comma-separated"
        },
    )
    credit: bool = field(
        default=True,
        metadata={
            "help": "score each trained policy's implicit token reward against the world's true credit (as `bench credit` does)"
        },
    )
    credit_split: str = field(default="test", metadata={"help": "world split whose responses the credit scores use"})
    credit_limit: int | None = field(
        default=None, metadata={"help": "score only the first N responses of that split", "min": 0}
    )
    examples: int = field(
        default=6,
        metadata={
            "help": "defective responses drawn in OUT/token-rewards.html: true credit, contrastive, and each method's implicit reward (seed 0)",
            "min": 0,
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        validate_ranges(self)


def win_rate(scores: Sequence[float], baseline: Sequence[float]) -> float:
    """Share of prompts where `scores` beats `baseline`, ties counting one half."""
    if len(scores) != len(baseline) or not scores:
        raise UserInputError(f"win rate needs the same, non-zero number of scores ({len(scores)} vs {len(baseline)})")
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(scores, baseline)) / len(scores)


def mean_std(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def sample_scores(evaluation: dict[str, Any]) -> tuple[list[str], list[float]]:
    samples = evaluation["samples"]
    return [s["prompt"] for s in samples], [float(s["oracle_score"]) for s in samples]


def evaluate(
    policy_dir: Path,
    path: Path,
    world,
    reference,
    config: PreferenceBenchConfig,
    seed: int,
    modes: Sequence[str] = ("greedy", "sampled"),
) -> dict[str, Any]:
    """Held-out evaluation of one policy folder (greedy and / or sampled), cached in `path`."""
    settings = {"split": config.eval_split, "n": config.eval_prompts, "seed": seed, "modes": list(modes)}
    settings.update(dtype_setting(config))
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("settings") == settings:
            return cached
    result = {"settings": settings, **evaluate_modes(policy_dir, world, reference, config, seed, modes)}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(result, indent=2))
    return result


def credit_scores(
    rewarder_name: str, resources: dict[str, Any], path: Path, world, config: PreferenceBenchConfig
) -> dict[str, float]:
    """`bench credit`'s AUROC / Spearman / top-1 of one rewarder on the world's responses, cached."""
    from tokenreward.bench.credit import credit_metrics
    from tokenreward.rewards import build_rewarder

    settings = {"rewarder": rewarder_name, "split": config.credit_split, "limit": config.credit_limit}
    settings.update(dtype_setting(config))
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("settings") == settings:
            return cached["metrics"]
    records = world.responses(config.credit_split)[: config.credit_limit]
    rewarder = build_rewarder(rewarder_name, {**resources, "loading": ModelLoading.of(config)})
    result = rewarder.score([r["prompt"] for r in records], [r["response"] for r in records])
    metrics = credit_metrics(result, [r["credit_spans"] for r in records], 0.0)
    metrics = {k: metrics[k] for k in CREDIT_METRICS}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps({"settings": settings, "metrics": metrics}, indent=2))
    return metrics


def examples_page(world, out: Path, methods: Sequence[str], config: PreferenceBenchConfig) -> str:
    """Heatmaps of the first defective responses of the credit split: the world's true token
    credit, the contrastive reward, and the implicit reward of each method's seed-0 policy."""
    from tokenreward.rewards import build_rewarder
    from tokenreward.viz.heatmap import html_page
    from tokenreward.world.oracle import token_credit

    records = [r for r in world.responses(config.credit_split) if any(c < 0 for _, _, c in r["credit_spans"])][
        : config.examples
    ]
    prompts, responses = [r["prompt"] for r in records], [r["response"] for r in records]
    rows: list[list[dict[str, Any]]] = [[] for _ in records]
    loading = ModelLoading.of(config)
    scorers = [
        ("contrastive (T-REG's target)", build_rewarder("contrastive", {**world.resources(), "loading": loading}))
    ]
    scorers += [
        (
            f"implicit of {m} (seed 0)",
            build_rewarder(
                "implicit",
                policy=str(out / m / "seed-0" / "final"),
                reference=str(world.policy_dir),
                tokenizer=str(world.tokenizer_dir),
                loading=loading,
            ),
        )
        for m in methods
    ]
    for label, rewarder in scorers:
        for i, record in enumerate(rewarder.score(prompts, responses).records()):
            if label == scorers[0][0]:
                truth = token_credit(records[i]["credit_spans"], record["offsets"])
                rows[i].append(
                    {**record, "rewarder": "true credit (the world)", "rewards": truth, "sequence_reward": sum(truth)}
                )
            rows[i].append({**record, "rewarder": label})
    return html_page(
        [r for row in rows for r in row], f"token rewards on {len(records)} defective {config.credit_split} responses"
    )


def run_metrics(
    evaluation: dict[str, Any], sft_greedy: dict[str, Any], sft_sampled: dict[str, Any]
) -> dict[str, float]:
    """The table's numbers for one run: greedy and sampled metrics and win rates vs the SFT."""
    metrics = {}
    for mode, suffix, sft in (("greedy", "", sft_greedy), ("sampled", "_sampled", sft_sampled)):
        prompts, scores = sample_scores(evaluation[mode])
        sft_prompts, sft_scores = sample_scores(sft)
        if prompts != sft_prompts:
            raise UserInputError("the method and the SFT policy were evaluated on different prompts")
        metrics["win_rate" + suffix] = win_rate(scores, sft_scores)
        for key in ("oracle_score", "kl", "length", "defect_rate"):
            metrics[key + suffix] = float(evaluation[mode][key])
    return metrics


def paired_differences(
    runs: dict[str, list[dict[str, Any]]], baseline: str, keys: Sequence[str]
) -> dict[str, dict[str, dict[str, float]]]:
    """Per method, mean and std over seeds of `metric(method, seed) - metric(baseline, seed)`
    (the same seed gives the same data order, so seeds pair up)."""
    base = {r["seed"]: r for r in runs[baseline]}
    return {
        method: {key: mean_std([r[key] - base[r["seed"]][key] for r in method_runs]) for key in keys}
        for method, method_runs in runs.items()
        if method != baseline
    }


@register_bench(
    "preference",
    PreferenceBenchConfig,
    help="train the preference methods on the world (several seeds) and compare oracle score, win rate vs SFT, KL, length",
)
def run(config: PreferenceBenchConfig, name: str = "preference") -> None:
    from rich.console import Console

    from tokenreward.bench.rl import train_run
    from tokenreward.bench.rl_methods import Method, parse_options, trainer_config
    from tokenreward.models import load_causal_lm
    from tokenreward.world import open_world

    check_writable(config.out, "--out", folder=True)  # before any model is loaded
    console = Console(stderr=True)
    unknown = [m for m in config.methods if m not in PREFERENCE_METHODS]
    if unknown or not config.methods:
        raise UserInputError(
            f"bench preference: unknown method(s) {unknown}; known: {', '.join([*PREFERENCE_METHODS.names(), *PREFERENCE_METHODS.aliases()])}"
        )
    options = parse_options(config.trainer_options)
    refuse_checkpoint_overrides(config, options, "bench preference")
    methods = list(dict.fromkeys((["dpo"] if any(m in GUIDED for m in config.methods) else []) + list(config.methods)))
    if config.baseline not in methods:
        console.print(f"[yellow]baseline {config.baseline!r} is not among the methods: no comparison at matched KL[/]")
    world = open_world(str(config.world) if config.world else None)
    world_root, out = Path(world.root).resolve(), Path(config.out)
    console.print(f"reward model: {world.reward_model_description()}", markup=False, highlight=False)
    loading = ModelLoading.of(config)
    reference = load_causal_lm(str(world.policy_dir), loading=loading).eval()

    console.rule("[bold]bench preference: SFT policy")
    sft = {  # greedy decoding does not depend on the seed
        seed: evaluate(
            Path(world.policy_dir),
            out / "sft" / f"seed-{seed}" / EVAL,
            world,
            reference,
            config,
            seed,
            ("greedy", "sampled") if seed == 0 else ("sampled",),
        )
        for seed in range(config.seeds)
    }
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    held_out: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}  # evaluations along training
    for k, (method, seed) in enumerate((m, s) for m in methods for s in range(config.seeds)):
        run_dir = out / method / f"seed-{seed}"
        console.rule(f"[bold]bench preference [{k + 1}/{len(methods) * config.seeds}]: {method}, seed {seed}")
        run_options = {**options, **checkpoint_options(config)}
        if method in GUIDED:
            run_options["guide_policy"] = str((out / "dpo" / f"seed-{seed}" / "final").resolve())
        spec = Method(method, method, None)
        trainer_config(
            spec, world_root, config.steps, seed, run_dir, run_options, False, loading
        )  # bad options fail early
        train_run(spec, run_dir, config, world_root, seed, run_options, console)
        evaluation = evaluate(run_dir / "final", run_dir / EVAL, world, reference, config, seed)
        points = evaluate_along_training(run_dir, world, reference, config, seed)
        held_out[method].append({"seed": seed, "points": points, "eval": evaluation})
        metrics = run_metrics(evaluation, sft[0]["greedy"], sft[seed]["sampled"])
        if config.credit:
            implicit = {
                "policy": str(run_dir / "final"),
                "reference": str(world.policy_dir),
                "tokenizer": str(world.tokenizer_dir),
            }
            credit = credit_scores("implicit", implicit, run_dir / CREDIT, world, config)
            metrics.update({f"implicit_{k}": v for k, v in credit.items()})
        runs[method].append({"seed": seed, **metrics})

    sft_row = {
        key + suffix: float(sft[0][mode][key])
        for mode, suffix in (("greedy", ""), ("sampled", "_sampled"))
        for key in ("oracle_score", "kl", "length", "defect_rate")
    }
    results = {
        "world": str(world_root),
        "reward_model": world.reward_model_description(),
        "steps": config.steps,
        "seeds": config.seeds,
        "eval_split": config.eval_split,
        "eval_prompts": len(sft[0]["greedy"]["samples"]),
        "eval_every": eval_interval(config),
        "baseline": config.baseline,
        "trainer_options": options,
        "sft": sft_row,
        "methods": {m: {key: mean_std([r[key] for r in runs[m]]) for key in METRICS} for m in methods},
        "runs": runs,
        **compare_at_matched_kl(held_out, sft, config.baseline, config.steps),
    }
    if "dpo" in runs and len(runs) > 1:
        results["difference_to_dpo"] = paired_differences(
            runs, "dpo", [k for k in (*METRICS, *(f"implicit_{c}" for c in CREDIT_METRICS)) if k in runs["dpo"][0]]
        )
    if config.credit:
        keys = [f"implicit_{k}" for k in CREDIT_METRICS]
        results["credit"] = {m: {key: mean_std([r[key] for r in runs[m]]) for key in keys} for m in methods}
        results["credit"]["contrastive (the T-REG target, from the SFT policy)"] = {
            f"implicit_{k}": {"mean": v, "std": 0.0, "n": 1}
            for k, v in credit_scores(
                "contrastive", dict(world.resources()), out / "sft" / "contrastive-credit.json", world, config
            ).items()
        }
    write_atomic(out / "results.json", json.dumps(results, indent=2))
    save_sft_frontier(out / "frontier.png", results, sft)
    if config.examples > 0:
        write_atomic(out / "token-rewards.html", examples_page(world, out, methods, config))
    table = matched_kl_table(results) + "\n" + markdown_table(results)
    if config.credit:
        table += "\n" + credit_table(results)
    if "difference_to_dpo" in results:
        table += "\n" + difference_table(results["difference_to_dpo"])
    write_atomic(out / "results.md", f"Reward model: {results['reward_model']}.\n\n{table}")
    console.print(table)
    console.print(f"results: {out / 'results.json'}\nfrontier: {out / 'frontier.png'}")
