"""`tokenreward demo`: the first command to run.

1. Opens the full world from the cache, building it on first use (about 2 minutes on two
   cores; later runs reuse it).
2. Shows RED's per-token rewards on a few held-out responses in the terminal, next to the
   world's ground-truth credit for the same tokens.
3. Trains PPO-RED and PPO-sparse with the same budget over several seeds (`bench rl`),
   evaluates the policies they hold along training on held-out prompts, and prints their
   held-out oracle scores at matched KL to the SFT policy (PPO-sparse's final KL), mean ± std
   over the seeds, and whether the gap between them is outside that spread; the scores after
   the same number of steps follow with each method's KL beside them.
4. Writes the HTML report (three summary sentences, tables, score against KL, learning curves,
   sample responses as token heatmaps) and `results.json` with every stage's seconds.

Everything lands in `--out`; running the demo again reuses the world and the finished runs.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tokenreward.bench.results_file import Recording, command_line, rl_table, write_section
from tokenreward.config import add_config_arguments, config_from_args, validate_ranges
from tokenreward.errors import UserInputError

DEMO_METHODS = ["ppo-sparse", "ppo-red"]
#: seconds each stage took on an idle 2-core machine (`tokenreward demo` on a fresh cache, docs/world.md); the ETA
#: scales them by the speed seen so far
EXPECTED_SECONDS = {
    "data": 3,
    "tokenizer": 1,
    "policy": 63,
    "policy_pairs": 19,
    "reward_model": 40,
    "measure": 4,
    "heatmaps": 1,
    "rl": 95,
}
WORLD_STAGES = ("data", "tokenizer", "policy", "policy_pairs", "reward_model", "measure")


@dataclass
class DemoConfig(Recording):
    out: Path = field(
        default=Path("tokenreward-demo"),
        metadata={"help": "output folder (runs, results.json, curves.png, report.html)"},
    )
    world: Path | None = field(
        default=None, metadata={"help": "world folder (default: the full world in the cache, built on first use)"}
    )
    steps: int = field(default=80, metadata={"help": "PPO steps per run", "min": 1})
    seeds: int = field(default=3, metadata={"help": "seeds per method (the printed spread is over these)", "min": 1})
    learning_rate: float = field(default=2e-5, metadata={"help": "policy learning rate", "gt": 0.0})
    kl_coef: float = field(default=0.1, metadata={"help": "KL coefficient to the SFT policy", "min": 0.0})
    critic_init: Literal["policy", "reward_model"] = field(
        default="policy",
        metadata={
            "help": "the value model's start: the SFT policy with a fresh value head (verl's default), or the reward "
            "model (whose prefix scores then already hand GAE RED-like differences; the two methods end closer)"
        },
    )
    jobs: int = field(
        default=2, metadata={"help": "PPO runs trained at once, one process and one thread each", "min": 1}
    )
    heatmaps: int = field(default=3, metadata={"help": "held-out responses shown with RED's token rewards", "min": 0})
    eval_prompts: int | None = field(
        default=None, metadata={"help": "held-out prompts for the final evaluation (default: all)", "min": 1}
    )

    def __post_init__(self):
        validate_ranges(self)
        if Path(self.out).exists() and not Path(self.out).is_dir():
            raise UserInputError(f"--out {self.out}: is a file, not a folder")


class StageClock:
    """One progress line per stage: its number, the time so far and the expected time left,
    `EXPECTED_SECONDS` of the stages still to come scaled by how fast the finished ones went."""

    def __init__(self, stages: list[str], console):
        self.stages, self.console = stages, console
        self.started = time.perf_counter()
        self.seconds: dict[str, float] = {}
        self.current: tuple[str, float] | None = None

    def begin(self, stage: str, what: str) -> None:
        self.finish()
        now = time.perf_counter()
        done = sum(EXPECTED_SECONDS.get(s, 0) for s in self.seconds)
        pace = sum(self.seconds.values()) / done if done >= 5 else 1.0
        left = pace * sum(EXPECTED_SECONDS.get(s, 0) for s in self.stages[self.stages.index(stage) :])
        self.console.print(
            f"[bold cyan][{self.stages.index(stage) + 1}/{len(self.stages)}][/] {what}  "
            f"[dim]{now - self.started:.0f} s so far, about {_duration(left)} left[/]"
        )
        self.current = (stage, now)

    def finish(self) -> None:
        if self.current is not None:
            stage, began = self.current
            self.seconds[stage] = round(time.perf_counter() - began, 1)
            self.current = None

    def total(self) -> float:
        return round(time.perf_counter() - self.started, 1)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


WORLD_STAGE_WORDS = {
    "data": "world: prompts, responses and labelled pairs",
    "tokenizer": "world: tokenizer",
    "policy": "world: SFT policy (supervised fine-tuning)",
    "policy_pairs": "world: pairs of the policy's own samples",
    "reward_model": "world: reward model",
    "measure": "world: measuring the policy and the reward model",
}


def open_or_build_world(path: Path | None, clock: StageClock, console):
    """The world at `path`, else the cached full world, built there on first use."""
    from tokenreward.world import default_world_path, open_world
    from tokenreward.worldbuild.build import build_world

    if path is not None:
        return open_world(path), False
    full = default_world_path("full")
    try:
        return open_world(full), False
    except FileNotFoundError:
        console.print(f"building the full world in {full} (once; later runs reuse it)")
        return build_world(full, size="full", seed=0, on_stage=lambda s: clock.begin(s, WORLD_STAGE_WORDS[s])), True


def credit_record(record: dict[str, Any], credit_spans: list, oracle_score: float) -> dict[str, Any]:
    """The world's ground truth on the tokens of `record`: each token's credit is the sum of
    the credited spans it overlaps (`oracle.token_credit`); the sequence reward is the oracle score."""
    from tokenreward.world.oracle import token_credit

    rewards = [float(c) for c in token_credit(credit_spans, record["offsets"])]
    return {**record, "rewarder": "ground-truth credit", "sequence_reward": float(oracle_score), "rewards": rewards}


def show_heatmaps(world, count: int, console) -> None:
    """RED's token rewards on the first `count` held-out responses, with the oracle's credit."""
    from tokenreward.rewards import build_rewarder
    from tokenreward.viz.heatmap import terminal_heatmap

    records = world.responses("test")[:count]
    if not records:
        raise UserInputError(f"the world at {world.root} has no held-out (test) responses")
    red = build_rewarder("red", world.resources())
    scored = red.score([r["prompt"] for r in records], [r["response"] for r in records]).records()
    for k, (response, record) in enumerate(zip(records, scored), start=1):
        console.print(f"[bold]{k}.[/] [dim]{response['family']} · oracle score {response['oracle_score']:.2f}[/]")
        console.print(response["prompt"], style="dim", markup=False, highlight=False)
        console.print(terminal_heatmap(record))
        console.print(
            terminal_heatmap(credit_record(record, response.get("credit_spans", []), response["oracle_score"]))
        )
        console.print()


def record_timings(results_path: Path, clock: StageClock, world, built: bool) -> dict[str, Any]:
    """Add the demo's stage seconds and the world's measurements to `results.json`."""
    results = json.loads(results_path.read_text())
    world_seconds = world.config.get("stage_seconds", {})
    results["demo"] = {
        "stage_seconds": clock.seconds,
        "total_seconds": clock.total(),
        "world_built_now": built,
        "world_stage_seconds": world_seconds,
        "world_metrics": world.metrics,
    }
    tmp = results_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(results_path)
    return results


def run_demo(config: DemoConfig) -> Path:
    """Run the demo; returns the path of the HTML report."""
    from rich.console import Console
    from transformers.utils import logging as hf_logging

    from tokenreward.bench.rl import RLBenchConfig
    from tokenreward.bench.rl import run as bench_rl
    from tokenreward.io import check_writable

    console = Console(stderr=True)
    if config.record is not None:
        check_writable(config.record, "--record")
    hf_logging.disable_progress_bar()  # the stage lines and our own bars show the progress; HF's would print at every save
    clock = StageClock([*WORLD_STAGES, "heatmaps", "rl"], console)
    console.rule("[bold]tokenreward demo 1/3: the world")
    world, built = open_or_build_world(config.world, clock, console)
    clock.finish()
    console.print(f"world: {world.root}")
    console.print(f"reward model: {world.reward_model_description()}", markup=False, highlight=False)
    console.rule("[bold]2/3: RED's token rewards on held-out responses (green: credit, red: blame)")
    clock.begin("heatmaps", "RED's token rewards next to the ground-truth credit")
    show_heatmaps(world, config.heatmaps, console)
    runs = len(DEMO_METHODS) * config.seeds
    console.rule(f"[bold]3/3: PPO-RED vs PPO-sparse, {config.steps} steps, {config.seeds} seed(s) each")
    clock.begin("rl", f"{runs} PPO runs and their held-out evaluation")
    bench = RLBenchConfig(
        out=Path(config.out),
        methods=list(DEMO_METHODS),
        seeds=config.seeds,
        steps=config.steps,
        trainer_options=[
            f"learning_rate={config.learning_rate}",
            f"kl_coef={config.kl_coef}",
            f"critic_init={config.critic_init}",
        ],
        world=Path(world.root),
        eval_prompts=config.eval_prompts,
        eval_seed=0,  # the same random draws for every policy: the printed spread is the training's
        window=max(1, min(25, config.steps // 5)),
        jobs=config.jobs,
    )
    results_path = bench_rl(bench, "rl")
    clock.finish()
    results = record_timings(results_path, clock, world, built)
    seconds = "  ".join(
        f"{k} {v:.0f} s"
        for k, v in {**results["demo"]["world_stage_seconds"], **clock.seconds}.items()
        if built or k not in WORLD_STAGES
    )
    report = Path(config.out) / "report.html"
    if config.record is not None:
        table = f"{rl_table(results)}\n\nThe whole demo: {_duration(clock.total())} ({seconds})."
        write_section(config.record, command_line("tokenreward demo", config), world, table, clock.total())
    console.print(f"\n[bold]done in {_duration(clock.total())}[/] ({seconds}). Open the report: {report}")
    return report


def register(sub) -> None:
    parser = sub.add_parser(
        "demo",
        help="the first command to run: the full world, RED's token rewards, PPO-RED vs PPO-sparse over seeds, an HTML report",
        description=__doc__.split("\n\n")[0],
    )
    add_config_arguments(parser, DemoConfig)
    parser.set_defaults(func=lambda args: run_demo(config_from_args(DemoConfig, args)))
