"""`tokenreward bench rl`: train several RL methods on the world with the same budget and
compare the held-out oracle score of their final policies.

A method is `TRAINER` or `TRAINER-REWARDER` (`ppo-sparse`, `ppo-red`, `remax`, `rloo`,
`ppo-tlcr`, `figa`, ...), resolved through the trainer and rewarder registries, so a trainer
from any module plugs in by name. Each (method, seed) runs in `OUT/<method>/seed-<s>/`.

How a trainer must look to be driven by `bench rl` (the same contract `tokenreward train`
uses): it is registered with `register_trainer(NAME, Config)` and `run(config, NAME)`
- `Config` is a dataclass with the fields `world` (the world folder), `steps` (the budget),
  `seed` and `out` (the run folder); a `rewarder` field when the method names one
  (`TRAINER-REWARDER`); optionally `resume: bool` (bench sets it when the run folder holds a
  checkpoint, so a killed run continues); every other field has a default, which
  `--trainer-options key=value,...` may override for every trainer that has that field;
- `run` writes the final policy to `OUT/final` (a Hugging Face folder) and one JSON object
  per step to `OUT/log.jsonl` with `step` and, for the learning curves, `oracle_score`
  (and `kl`, ...).

Per run, bench writes `done.json` after training (runs holding it are skipped, so a long
benchmark resumes where it stopped, in another session too) and `eval.json` after
evaluating `OUT/final` with `tokenreward.evaluation.evaluate_policy` on the held-out split:
one sampled response per prompt (temperature 1, as in training, seeded by the run's seed;
the headline numbers) and the greedy response. The SFT policy is evaluated the same way with
each seed. Then: `results.json` (per method mean and std over seeds of the oracle score, KL to
the SFT policy, length, defect rate, greedy oracle score, and the steps each method needs to
reach the baseline's final oracle score), `curves.png`, `samples.json` and a self-contained
`report.html`.

Steps to the baseline: each run's logged `oracle_score` curve (the training batches' oracle
grade) is smoothed by a trailing mean of `window` logged points, read from the first full
window on; the target is the mean over the baseline's seeds of their last smoothed value; a
run's figure is the first logged step whose smoothed value reaches it (None if never).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenreward.bench import register_bench
from tokenreward.config import add_config_arguments, config_from_args, validate_ranges
from tokenreward.io import check_writable, write_atomic
from tokenreward.options import parse_assignments, parse_bool
from tokenreward.trainers import TRAINERS
from tokenreward.trainers.checkpoints import latest_checkpoint
from tokenreward.viz.plots import mean_and_std, metric_curve, save_learning_curves, trailing_mean
from tokenreward.viz.report import gap_to_baseline

DEFAULT_METHODS = ["ppo-sparse", "ppo-red", "ppo-abc", "remax", "rloo"]
CONTRACT_FIELDS = ("world", "steps", "seed", "out")
METRICS = ("oracle_score", "kl", "length", "defect_rate")
EVAL_MODES = ("sampled", "greedy")
DONE = "done.json"
EVAL = "eval.json"


@dataclass
class RLBenchConfig:
    """`tokenreward bench rl`: every method, every seed, the same number of steps."""

    out: Path = field(metadata={"help": "output folder: OUT/<method>/seed-<s>/, results.json, curves.png, report.html"})
    methods: list[str] = field(
        default_factory=lambda: list(DEFAULT_METHODS),
        metadata={"help": "methods, TRAINER or TRAINER-REWARDER, comma-separated"},
    )
    seeds: int = field(default=3, metadata={"help": "seeds per method (0 .. seeds-1)", "min": 1})
    steps: int = field(default=100, metadata={"help": "training steps per run (the same budget for every method)", "min": 1})
    world: Path | None = field(default=None, metadata={"help": "world folder (default: the built world in the cache)"})
    baseline: str = field(default="ppo-sparse", metadata={"help": "method whose final oracle score the others race to"})
    eval_split: str = field(default="test", metadata={"help": "held-out split for the final evaluation"})
    eval_prompts: int | None = field(default=None, metadata={"help": "held-out prompts to evaluate (default: all)", "min": 1})
    eval_seed: int | None = field(
        default=None,
        metadata={"help": "sampling seed of every held-out evaluation (default: each run's own seed); one fixed seed "
                          "gives every policy the same random draws, so the seed spread is the training's, not the sampling's",
                  "min": 0},
    )
    window: int = field(default=5, metadata={"help": "trailing mean over this many logged points for curves and steps-to-baseline", "min": 1})
    samples: int = field(default=3, metadata={"help": "sample responses per method shown as heatmaps in the report", "min": 0})
    heatmap_rewarder: str = field(default="red", metadata={"help": "rewarder that colours the report's sample responses"})
    trainer_options: list[str] = field(
        default_factory=list,
        metadata={"help": "key=value settings passed to every trainer config that has the field, comma-separated"},
    )
    jobs: int = field(default=1, metadata={"help": "runs trained at once, each in its own process with one thread (2 suits 2 cores)"})

    def __post_init__(self) -> None:
        validate_ranges(self)


@dataclass(frozen=True)
class Method:
    name: str
    trainer: str
    rewarder: str | None


def resolve_method(name: str) -> Method:
    """`TRAINER` or `TRAINER-REWARDER`, both looked up in their registries."""
    from tokenreward.rewards import REWARDERS

    if name in TRAINERS:
        return Method(name, name, None)
    matches = [
        Method(name, name[:k], name[k + 1 :])
        for k, char in enumerate(name)
        if char == "-" and name[:k] in TRAINERS and name[k + 1 :] in REWARDERS
    ]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ValueError(f"method {name!r} is ambiguous: " + ", ".join(f"{m.trainer} + {m.rewarder}" for m in matches))
    raise ValueError(
        f"unknown method {name!r}: expected TRAINER or TRAINER-REWARDER; trainers: {', '.join(TRAINERS.names())}; "
        f"rewarders: {', '.join(REWARDERS.names())}"
    )


def parse_options(items: list[str]) -> dict[str, str]:
    return parse_assignments(items, "--trainer-options")


class _RaisingParser(argparse.ArgumentParser):
    def error(self, message: str):
        raise ValueError(f"{self.prog}: {message}")


def trainer_config(method: Method, world: Path, steps: int, seed: int, out: Path, options: dict[str, str], resume: bool) -> Any:
    """The trainer's config for one run, built through the same flags as `tokenreward train`."""
    spec = TRAINERS.get(method.trainer)
    if not dataclasses.is_dataclass(spec.config):
        raise ValueError(f"trainer {method.trainer!r}: its config {spec.config.__name__} is not a dataclass")
    fields = {f.name: f for f in dataclasses.fields(spec.config)}
    hints = typing.get_type_hints(spec.config)
    missing = [name for name in CONTRACT_FIELDS if name not in fields]
    if method.rewarder is not None and "rewarder" not in fields:
        missing.append("rewarder")
    if missing:
        raise ValueError(
            f"method {method.name!r}: trainer {method.trainer!r} cannot be driven by bench rl: its config "
            f"{spec.config.__name__} lacks the field(s) {', '.join(missing)}"
        )
    flags = {"world": str(world), "steps": str(steps), "seed": str(seed), "out": str(out)}
    if method.rewarder is not None:
        flags["rewarder"] = method.rewarder
    flags.update({k: v for k, v in options.items() if k in fields})
    if resume and "resume" in fields:
        flags["resume"] = "true"
    argv = []
    for key, value in flags.items():
        flag = "--" + key.replace("_", "-")
        if hints[key] is bool:
            argv.append(flag if parse_bool(value, f"--trainer-options {key}") else "--no-" + key.replace("_", "-"))
        else:
            argv += [flag, value]
    parser = _RaisingParser(prog=f"tokenreward train {method.trainer}", exit_on_error=False)
    add_config_arguments(parser, spec.config)
    try:
        args = parser.parse_args(argv)
    except argparse.ArgumentError as err:
        raise ValueError(f"method {method.name!r}: {err}") from None
    return config_from_args(spec.config, args)


def _jsonable(config: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def train_run(method: Method, run_dir: Path, config: RLBenchConfig, world_root: Path, seed: int, options: dict[str, str], console) -> dict[str, Any]:
    """Train one (method, seed) unless its done marker says it finished with the same config."""
    trainer_cfg = trainer_config(method, world_root, config.steps, seed, run_dir, options, resume=False)
    wanted = {k: v for k, v in _jsonable(trainer_cfg).items() if k not in ("resume", "progress")}
    done = _read_json(run_dir / DONE)
    if done is not None:
        before = done["config"]
        changed = [f"{k}: {before.get(k)!r} -> {wanted.get(k)!r}" for k in sorted(set(wanted) | set(before)) if wanted.get(k) != before.get(k)]
        if changed:
            raise ValueError(
                f"{run_dir} finished with other settings ({'; '.join(changed)}); use another --out or delete that run folder"
            )
        console.print(f"  [dim]{method.name} seed {seed}: finished earlier, kept ({run_dir / DONE})[/]")
        return done
    resume = latest_checkpoint(run_dir) is not None
    if resume:
        trainer_cfg = trainer_config(method, world_root, config.steps, seed, run_dir, options, resume=True)
        console.print(f"  {method.name} seed {seed}: resuming from {latest_checkpoint(run_dir)}")
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    TRAINERS.get(method.trainer).run(trainer_cfg, method.trainer)
    seconds = time.perf_counter() - start
    if not (run_dir / "final").is_dir():
        raise FileNotFoundError(f"trainer {method.trainer!r} finished without writing {run_dir / 'final'}")
    done = {"method": method.name, "trainer": method.trainer, "rewarder": method.rewarder, "seed": seed,
            "train_seconds": seconds, "resumed": resume, "config": wanted}
    _write_json(run_dir / DONE, done)
    return done


def evaluate_run(policy_dir: Path, eval_path: Path, world, reference, config: RLBenchConfig, seed: int) -> dict[str, Any]:
    """Held-out evaluation of one policy folder, sampled (seeded by `seed`, as in training, or
    by `config.eval_seed` when set) and greedy, cached in `eval_path` for these settings."""
    from tokenreward.evaluation import evaluate_policy
    from tokenreward.models import load_causal_lm

    seed = seed if config.eval_seed is None else config.eval_seed
    settings = {"split": config.eval_split, "n": config.eval_prompts, "seed": seed}
    cached = _read_json(eval_path)
    if cached is not None and cached.get("settings") == settings:
        return cached
    policy = load_causal_lm(policy_dir).eval()
    result: dict[str, Any] = {"settings": settings}
    for mode in EVAL_MODES:
        result[mode] = evaluate_policy(policy, world, split=config.eval_split, reference=reference,
                                       n=config.eval_prompts, greedy=mode == "greedy", seed=seed)
    eval_path.parent.mkdir(parents=True, exist_ok=True)
    _write_json(eval_path, result)
    return result


def run_metrics(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The sampled evaluation's metrics, and the greedy ones prefixed `greedy_`."""
    return {
        **{k: evaluation["sampled"].get(k) for k in METRICS},
        **{f"greedy_{k}": evaluation["greedy"].get(k) for k in METRICS},
    }


def smoothed_curve(log: list[dict[str, Any]], window: int) -> tuple[list[int], list[float]]:
    """The logged oracle curve as a trailing mean of `window` points, from the first full window."""
    steps, values = metric_curve(log, "oracle_score")
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


def aggregate(methods: list[Method], runs: dict[str, list[dict[str, Any]]], sft_runs: list[dict[str, Any]], config: RLBenchConfig) -> dict[str, Any]:
    """`results.json`: the SFT policy's and each method's mean / std over seeds, and the logged
    steps each method needs to reach the baseline's final oracle score."""
    metric_keys = tuple(run_metrics({"sampled": {}, "greedy": {}}))
    curves = {name: [smoothed_curve(r["log"], config.window) for r in method_runs] for name, method_runs in runs.items()}
    target = None
    baseline_finals = [values[-1] for _, values in curves.get(config.baseline, []) if values]
    if baseline_finals:
        target = mean_and_std(baseline_finals)[0]
    sft_entries = [{"seed": r["seed"], **run_metrics(r["eval"])} for r in sft_runs]
    results: dict[str, Any] = {
        "benchmark": "rl",
        "steps": config.steps,
        "seeds": list(range(config.seeds)),
        "split": config.eval_split,
        "eval_seed": config.eval_seed,
        "baseline": config.baseline,
        "window": config.window,
        "target_oracle_score": target,
        "heatmap_rewarder": config.heatmap_rewarder,
        "sft": {"runs": sft_entries, **summarize_runs(sft_entries, metric_keys)},
        "methods": {},
    }
    for method in methods:
        method_runs = runs[method.name]
        entry: dict[str, Any] = {"trainer": method.trainer, "rewarder": method.rewarder, "runs": []}
        for run, (steps, values) in zip(method_runs, curves[method.name]):
            entry["runs"].append({
                "seed": run["seed"],
                **run_metrics(run["eval"]),
                "final_logged_oracle_score": values[-1] if values else None,
                "steps_to_target": first_step_reaching(steps, values, target) if target is not None else None,
                "train_seconds": run["done"]["train_seconds"],
            })
        entry.update(summarize_runs(entry["runs"], metric_keys + ("train_seconds", "final_logged_oracle_score")))
        if target is not None:
            reached = [r["steps_to_target"] for r in entry["runs"] if r["steps_to_target"] is not None]
            stat = summarize(reached) or {"mean": None, "std": None, "values": []}
            entry["steps_to_target"] = {**stat, "reached": len(reached), "of": len(entry["runs"])}
        results["methods"][method.name] = entry
    results["comparisons"] = {m.name: gap_to_baseline(results, m.name) for m in methods if gap_to_baseline(results, m.name)}
    return results


def score_samples(world, samples: dict[str, list[dict[str, Any]]], rewarder_name: str) -> dict[str, list[dict[str, Any]]]:
    """Attach to each sample the heatmap rewarder's `TokenRewards.record` of its response."""
    from tokenreward.rewards import build_rewarder

    rewarder = build_rewarder(rewarder_name, world.resources())
    scored = {}
    for method, items in samples.items():
        records = rewarder.score([s["prompt"] for s in items], [s["response"] for s in items]).records() if items else []
        scored[method] = [{**s, "record": r} for s, r in zip(items, records)]
    return scored


def print_table(results: dict[str, Any], console) -> None:
    from rich.table import Table

    from tokenreward.viz.report import format_stat, format_steps, gap_sentence

    seeds = len(results["seeds"])
    over = f"mean ± std over {seeds} seeds" if seeds > 1 else "one seed (no spread)"
    table = Table(title=f"held-out oracle score after {results['steps']} steps, {over}")
    for header in ("method", "oracle score", "greedy", "KL", "length", f"steps to {results['baseline']}"):
        table.add_column(header, justify="left" if header == "method" else "right")
    rows = [("SFT policy", results["sft"], "-")]
    rows += [(name, m, "baseline" if name == results["baseline"] else format_steps(m.get("steps_to_target")))
             for name, m in results["methods"].items()]
    for name, m, steps in rows:
        table.add_row(name, format_stat(m["oracle_score"]), format_stat(m["greedy_oracle_score"]), format_stat(m["kl"]),
                      format_stat(m["length"], 1), steps)
    console.print(table)
    for comparison in results.get("comparisons", {}).values():
        console.print(gap_sentence(comparison))


@register_bench("rl", RLBenchConfig, help="train RL methods on the world (same budget, several seeds) and compare held-out oracle scores")
def run(config: RLBenchConfig, name: str = "rl") -> Path:
    """Run (or resume) the benchmark; returns the path of `results.json`."""
    from rich.console import Console

    from tokenreward.bench.rl_runs import run_all
    from tokenreward.models import load_causal_lm
    from tokenreward.viz.report import rl_report
    from tokenreward.world import open_world

    check_writable(config.out, "--out", folder=True)  # before any model is loaded
    console = Console(stderr=True)
    if min(config.seeds, config.steps, config.window, config.jobs) < 1:
        raise ValueError(f"bench rl: seeds, steps, window and jobs must be positive (got {config.seeds}, {config.steps}, "
                         f"{config.window}, {config.jobs})")
    if not config.methods or len(set(config.methods)) != len(config.methods):
        raise ValueError(f"bench rl: --methods must name distinct methods, got {config.methods}")
    methods = [resolve_method(m) for m in config.methods]
    options = parse_options(config.trainer_options)
    reserved = sorted(set(options) & set(CONTRACT_FIELDS + ("rewarder", "resume")))
    if reserved:
        raise ValueError(f"--trainer-options cannot set {', '.join(reserved)}: bench rl sets them per run")
    known = set().union(*({f.name for f in dataclasses.fields(TRAINERS.get(m.trainer).config)} for m in methods))
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"--trainer-options: {', '.join(unknown)} is not a setting of any of the trainers {sorted({m.trainer for m in methods})}")

    if config.baseline not in config.methods:
        console.print(f"[yellow]baseline {config.baseline!r} is not among --methods: no steps-to-baseline figures[/]")
    world = open_world(config.world)
    world_root = Path(world.root).resolve()
    out = Path(config.out)
    for method in methods:  # validate every trainer config before the first long run
        trainer_config(method, world_root, config.steps, 0, out / method.name / "seed-0", options, resume=False)

    reference = load_causal_lm(world.policy_dir).eval()
    sft_runs = []
    for seed in range(config.seeds) if config.eval_seed is None else [config.eval_seed]:
        console.rule(f"[bold]bench rl: SFT policy, evaluation seed {seed}")
        sft_runs.append({"seed": seed, "eval": evaluate_run(Path(world.policy_dir), out / "sft" / f"eval-seed-{seed}.json", world, reference, config, seed)})
    runs = run_all(methods, config, world, world_root, reference, options, console)

    results = aggregate(methods, runs, sft_runs, config)
    results["world"] = str(world_root)
    results["eval_prompts"] = sft_runs[0]["eval"]["sampled"]["n"]
    _write_json(out / "results.json", results)
    curves = {name: [r["log"] for r in method_runs] for name, method_runs in runs.items()}
    png = save_learning_curves(out / "curves.png", curves, metrics=("oracle_score", "kl"), window=config.window,
                               title=f"oracle score and KL of the sampled training batches, mean ± std over {config.seeds} seed(s)")
    samples = {"SFT policy": sft_runs[0]["eval"]["sampled"]["samples"][: config.samples]}
    samples.update({name: method_runs[0]["eval"]["sampled"]["samples"][: config.samples] for name, method_runs in runs.items()})
    scored = score_samples(world, samples, config.heatmap_rewarder)
    _write_json(out / "samples.json", scored)
    write_atomic(out / "report.html", rl_report(results, png, scored))
    print_table(results, console)
    console.print(f"results: {out / 'results.json'}\ncurves:  {png}\nreport:  {out / 'report.html'}")
    return out / "results.json"
