"""`tokenreward bench rl`: train several RL methods on the world with the same budget and
compare the held-out oracle score of their final policies.

A method is `TRAINER` or `TRAINER-REWARDER` (`ppo-sparse`, `ppo-red`, `remax`, `rloo`,
`ppo-tlcr`, `figa`, ...), resolved through the trainer and rewarder registries, so a trainer
from any module plugs in by name; `:ESTIMATOR` sets a method's advantage estimator
(`rloo-verifiable:gtpo`). Each (method, seed) runs in `OUT/<method>/seed-<s>/`.

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
benchmark resumes where it stopped, in a later invocation too) and `eval.json` after
evaluating `OUT/final` with `tokenreward.evaluation.evaluate_policy` on the held-out split:
one sampled response per prompt (temperature 1, as in training, seeded by the run's seed;
the headline numbers) and the greedy response. The SFT policy is evaluated the same way with
each seed. With `--eval-every N` the policies saved every N steps are evaluated too (sampled,
`bench.rl_evaluation`), and each method is read at the baseline's final KL
(`bench.rl_frontier`, docs/bench-rl.md "How methods are compared"). Then: `results.json` (per
method mean and std over seeds of the oracle score at matched KL and after the full budget, KL
to the SFT policy, length, defect rate, greedy oracle score, and the steps each method needs to
reach the baseline's final oracle score with the KL there), `curves.png`, `frontier.png` (score
against KL), `samples.json` and a self-contained `report.html`.

Steps to the baseline: each run's logged `oracle_score` curve (the training batches' oracle
grade) is smoothed by a trailing mean of `window` logged points, read from the first full
window on; the target is the mean over the baseline's seeds of their last smoothed value; a
run's figure is the first logged step whose smoothed value reaches it (None if never).
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tokenreward.bench import Recording, register_bench
from tokenreward.bench.rl_evaluation import (
    CHECKPOINT_FIELDS,
    LOGGED_SCORE,
    checkpoint_options,
    eval_every_field,
    evaluate_along_training,
    evaluate_run,
    refuse_checkpoint_overrides,
    reward_options,
    score_samples,
)
from tokenreward.bench.rl_methods import (
    Method,
    check_trainer_options,
    parse_options,
    resolve_method,
    reward_model_description,
    reward_model_options,
    trainer_config,
)
from tokenreward.bench.rl_results import aggregate, print_table
from tokenreward.config import validate_ranges
from tokenreward.errors import UserInputError
from tokenreward.io import check_writable, read_json_file, write_atomic
from tokenreward.models import ModelLoading
from tokenreward.trainers import TRAINERS
from tokenreward.trainers.checkpoints import latest_checkpoint
from tokenreward.trainers.run_folder import fields_at_default
from tokenreward.viz.plots import save_frontier, save_learning_curves

DEFAULT_METHODS = ["ppo-sparse", "ppo-red", "ppo-abc", "remax", "rloo"]
DONE = "done.json"
EVAL = "eval.json"


@dataclass(kw_only=True)
class RLBenchConfig(ModelLoading, Recording):
    """`tokenreward bench rl`: every method, every seed, the same number of steps; the loading
    flags (`--dtype`, ...) go to every run's trainer and to the evaluation."""

    out: Path = field(
        metadata={"help": "output folder: OUT/<method>/seed-<s>/, results.json, curves.png, report.html"}
    )
    methods: list[str] = field(
        default_factory=lambda: list(DEFAULT_METHODS),
        metadata={
            "help": "methods, TRAINER or TRAINER-REWARDER, optionally :ESTIMATOR (the trainer's --estimator for that "
            "method, e.g. rloo-verifiable:gtpo), comma-separated"
        },
    )
    seeds: int = field(default=3, metadata={"help": "seeds per method (0 .. seeds-1)", "min": 1})
    steps: int = field(
        default=100, metadata={"help": "training steps per run (the same budget for every method)", "min": 1}
    )
    world: Path | None = field(default=None, metadata={"help": "world folder (default: the built world in the cache)"})
    baseline: str = field(
        default="ppo-sparse", metadata={"help": "method whose final oracle score the others race to"}
    )
    reward: Literal["score", "verifiable"] = field(
        default="score",
        metadata={
            "help": "the held-out score: score (the oracle's holistic grade, every family) or verifiable (the "
            "verifiable oracle's 1/0, so the score is the accuracy; training and held-out prompts of the world's "
            "verifiable families only; e.g. methods rloo-verifiable:gtpo)"
        },
    )
    eval_split: str = field(default="test", metadata={"help": "held-out split for the final evaluation"})
    eval_prompts: int | None = field(
        default=None, metadata={"help": "held-out prompts to evaluate (default: all)", "min": 1}
    )
    eval_seed: int | None = field(
        default=None,
        metadata={
            "help": "sampling seed of every held-out evaluation (default: each run's own seed); one fixed seed "
            "gives every policy the same random draws, so the seed spread is the training's, not the sampling's",
            "min": 0,
        },
    )
    eval_every: int | None = eval_every_field()
    window: int = field(
        default=5,
        metadata={"help": "trailing mean over this many logged points for curves and steps-to-baseline", "min": 1},
    )
    samples: int = field(
        default=3, metadata={"help": "sample responses per method shown as heatmaps in the report", "min": 0}
    )
    heatmap_rewarder: str = field(
        default="red", metadata={"help": "rewarder that colours the report's sample responses"}
    )
    trainer_options: list[str] = field(
        default_factory=list,
        metadata={
            "help": "key=value settings passed to every trainer config that has and uses the field, comma-separated"
        },
    )
    jobs: int = field(
        default=1,
        metadata={"help": "runs trained at once, each in its own process with one thread (2 suits 2 cores)", "min": 1},
    )
    reward_model: str | None = field(
        default=None,
        metadata={
            "help": "a reward model folder that every method trains with in place of the world's (read with its "
            "own tokenizer when the folder has one), e.g. one from `train reward-model --prefix-loss revision`; "
            "the held-out score is still the oracle's"
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        validate_ranges(self)


def _jsonable(config: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def _write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2) + "\n")


def train_run(
    method: Method, run_dir: Path, config: RLBenchConfig, world_root: Path, seed: int, options: dict[str, str], console
) -> dict[str, Any]:
    """Train one (method, seed) unless its done marker says it finished with the same config (a
    setting it does not record, at its default, counts as the same: a run of an older release)."""
    loading = ModelLoading.of(config)
    trainer_cfg = trainer_config(method, world_root, config.steps, seed, run_dir, options, False, loading)
    unrecorded = ("resume", "progress", *CHECKPOINT_FIELDS)  # settings that do not change what is trained
    wanted = {k: v for k, v in _jsonable(trainer_cfg).items() if k not in unrecorded}
    done = read_json_file(run_dir / DONE) if (run_dir / DONE).exists() else None
    if done is not None:
        before = {k: v for k, v in done["config"].items() if k not in unrecorded}
        at_default = fields_at_default(trainer_cfg)
        changed = [
            f"{k}: {before.get(k)!r} -> {wanted.get(k)!r}"
            for k in sorted(set(wanted) | set(before))
            if wanted.get(k) != before.get(k) and not (k not in before and k in at_default)
        ]
        if changed:
            raise UserInputError(
                f"{run_dir} finished with other settings ({'; '.join(changed)}); use another --out or delete that run folder"
            )
        console.print(f"  [dim]{method.name} seed {seed}: finished earlier, kept ({run_dir / DONE})[/]")
        return done
    checkpoint = latest_checkpoint(run_dir)
    resume = checkpoint is not None or (run_dir / "run.json").is_file()  # a run killed before its first checkpoint
    if resume:
        trainer_cfg = trainer_config(method, world_root, config.steps, seed, run_dir, options, True, loading)
        again = f"resuming from {checkpoint}" if checkpoint else "killed before its first checkpoint, starting again"
        console.print(f"  {method.name} seed {seed}: {again}")
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    TRAINERS.get(method.trainer).run(trainer_cfg, method.trainer)
    seconds = time.perf_counter() - start
    if not (run_dir / "final").is_dir():
        raise FileNotFoundError(f"trainer {method.trainer!r} finished without writing {run_dir / 'final'}")
    done = {
        "method": method.name,
        "trainer": method.trainer,
        "rewarder": method.rewarder,
        "seed": seed,
        "train_seconds": seconds,
        "resumed": resume,
        "config": wanted,
    }
    _write_json(run_dir / DONE, done)
    return done


def remaining_note(spent: list[float], left: int, jobs: int = 1) -> str:
    """`, about N s left`: the mean time of the runs done so far times the runs left, over
    the runs that go at once (empty before the first run is done)."""
    if not spent or left < 1:
        return ""
    return f", about {round(sum(spent) / len(spent) * left / jobs)} s left"


def _worker_setup() -> None:
    """One torch thread per worker, for the trainer's `configure_threads` too (it reads
    `OMP_NUM_THREADS`; two workers on 2 cores at two threads each ran 6x slower), no HF bars."""
    import torch
    from transformers.utils import logging as hf_logging

    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    hf_logging.disable_progress_bar()  # parallel runs' loading bars would interleave


def train_and_evaluate(
    method,
    run_dir: Path,
    config,
    world_root: Path,
    seed: int,
    options: dict[str, str],
    console=None,
    world=None,
    reference=None,
) -> dict[str, Any]:
    """Train one run (unless done) and evaluate its final policy; the world and the reference
    policy are opened here when not given (in a worker process)."""
    from rich.console import Console

    from tokenreward.jsonl import read_jsonl
    from tokenreward.models import load_causal_lm
    from tokenreward.world import open_world

    console, loading = console or Console(stderr=True), ModelLoading.of(config)
    world = world or open_world(world_root)
    reference = reference if reference is not None else load_causal_lm(world.policy_dir, loading=loading).eval()
    started = time.perf_counter()
    done = train_run(method, run_dir, config, world_root, seed, options, console)
    evaluation = evaluate_run(run_dir / "final", run_dir / EVAL, world, reference, config, seed)
    points = evaluate_along_training(run_dir, world, reference, config, seed)
    log = read_jsonl(run_dir / "log.jsonl") if (run_dir / "log.jsonl").exists() else []
    return {
        "seed": seed,
        "done": done,
        "eval": evaluation,
        "points": points,
        "log": log,
        "seconds": time.perf_counter() - started,
    }


def run_all(
    methods, config, world, world_root: Path, reference, options: dict[str, str], console
) -> dict[str, list[dict[str, Any]]]:
    """Every (method, seed) run, in `config.jobs` processes at a time; per method its runs in seed order."""
    out = Path(config.out)
    todo = [(m, s) for m in methods for s in range(config.seeds)]
    results: dict[tuple[str, int], dict[str, Any]] = {}
    spent: list[float] = []
    runs_dir = {(m.name, s): out / m.name / f"seed-{s}" for m, s in todo}
    # finished runs are only read back (no process needed); with one job every run goes here
    in_process = todo if config.jobs <= 1 else [(m, s) for m, s in todo if (runs_dir[m.name, s] / DONE).exists()]
    for k, (method, seed) in enumerate(in_process):
        console.rule(
            f"[bold]bench rl [{k + 1}/{len(todo)}]: {method.name}, seed {seed}, {config.steps} steps"
            f"{remaining_note(spent, len(todo) - k)}"
        )
        run = train_and_evaluate(
            method, runs_dir[method.name, seed], config, world_root, seed, options, console, world, reference
        )
        spent.append(run["seconds"])
        results[method.name, seed] = run
    pending = [(m, s) for m, s in todo if (m.name, s) not in results]
    if pending:
        spent, quiet = [], {**options, "progress": "false"}
        console.rule(
            f"[bold]bench rl: {len(pending)} runs of {config.steps} steps, {config.jobs} at a time (one process each)"
        )
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=config.jobs, mp_context=context, initializer=_worker_setup) as pool:
            futures = {
                pool.submit(train_and_evaluate, m, runs_dir[m.name, s], config, world_root, s, quiet): (m, s)
                for m, s in pending
            }
            for future in as_completed(futures):
                method, seed = futures[future]
                run = future.result()
                spent.append(run["seconds"])
                results[method.name, seed] = run
                console.print(
                    f"  [{len(results)}/{len(todo)}] {method.name} seed {seed}: {run['seconds']:.0f} s"
                    f"{remaining_note(spent, len(todo) - len(results), config.jobs)}"
                )
    return {m.name: [results[m.name, s] for s in range(config.seeds)] for m in methods}


@register_bench(
    "rl",
    RLBenchConfig,
    help="train RL methods on the world (same budget, several seeds) and compare held-out oracle scores",
)
def run(config: RLBenchConfig, name: str = "rl") -> Path:
    """Run (or resume) the benchmark; returns the path of `results.json`."""
    from rich.console import Console

    from tokenreward.models import load_causal_lm
    from tokenreward.viz.report import rl_report
    from tokenreward.world import open_world

    check_writable(config.out, "--out", folder=True)  # before any model is loaded
    console = Console(stderr=True)
    if not config.methods or len(set(config.methods)) != len(config.methods):
        raise UserInputError(f"bench rl: --methods must name distinct methods, got {config.methods}")
    methods = [resolve_method(m) for m in config.methods]
    options = parse_options(config.trainer_options)
    refuse_checkpoint_overrides(config, options, "bench rl")
    check_trainer_options(options, methods)

    options.update(checkpoint_options(config))
    if config.baseline not in config.methods:
        console.print(f"[yellow]baseline {config.baseline!r} is not among --methods: no steps-to-baseline figures[/]")
    world = open_world(config.world)
    options.update(reward_options(config, world, methods))
    options.update(reward_model_options(config, methods))
    console.print(f"reward model: {reward_model_description(config, world)}", markup=False, highlight=False)
    world_root = Path(world.root).resolve()
    out = Path(config.out)
    loading = ModelLoading.of(config)
    for method in methods:  # validate every trainer config before the first long run
        trainer_config(method, world_root, config.steps, 0, out / method.name / "seed-0", options, False, loading)

    reference = load_causal_lm(world.policy_dir, loading=loading).eval()
    sft_runs = []
    for seed in range(config.seeds) if config.eval_seed is None else [config.eval_seed]:
        console.rule(f"[bold]bench rl: SFT policy, evaluation seed {seed}")
        sft_runs.append(
            {
                "seed": seed,
                "eval": evaluate_run(
                    Path(world.policy_dir), out / "sft" / f"eval-seed-{seed}.json", world, reference, config, seed
                ),
            }
        )
    runs = run_all(methods, config, world, world_root, reference, options, console)

    results = aggregate(methods, runs, sft_runs, config)
    results["world"] = str(world_root)
    results["reward_model"] = reward_model_description(config, world)
    results["eval_prompts"] = sft_runs[0]["eval"]["sampled"]["n"]
    _write_json(out / "results.json", results)
    curves = {name: [r["log"] for r in method_runs] for name, method_runs in runs.items()}
    png = save_learning_curves(
        out / "curves.png",
        curves,
        metrics=(LOGGED_SCORE[config.reward], "kl"),
        window=config.window,
        title=f"{LOGGED_SCORE[config.reward]} and KL of the sampled training batches, "
        f"mean ± std over {config.seeds} seed(s)",
    )
    frontier_png = save_frontier(
        out / "frontier.png", results["frontier"], results["matched_kl"], results["sft"]["oracle_score"]["mean"]
    )
    samples = {"SFT policy": sft_runs[0]["eval"]["sampled"]["samples"][: config.samples]}
    samples.update(
        {name: method_runs[0]["eval"]["sampled"]["samples"][: config.samples] for name, method_runs in runs.items()}
    )
    scored = score_samples(world, samples, config.heatmap_rewarder, loading, options.get("reward_model"))
    _write_json(out / "samples.json", scored)
    write_atomic(out / "report.html", rl_report(results, png, scored, frontier_png=frontier_png))
    print_table(results, console)
    console.print(
        f"results:  {out / 'results.json'}\ncurves:   {png}\nfrontier: {frontier_png}\nreport:   {out / 'report.html'}"
    )
    return out / "results.json"
