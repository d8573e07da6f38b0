"""`tokenreward demo`: the first command to run.

1. Opens the small world from the cache, building it on first use.
2. Shows RED's per-token rewards on a few held-out responses in the terminal, next to the
   world's ground-truth credit for the same tokens.
3. Trains PPO-RED and PPO-sparse for a few steps with the same budget (`bench rl`, one seed)
   and prints the held-out oracle scores.
4. Writes the HTML report (tables, learning curves, sample responses as token heatmaps).

Everything lands in `--out`; running the demo again reuses the world and the finished runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenreward.config import add_config_arguments, config_from_args

DEMO_METHODS = ["ppo-sparse", "ppo-red"]


@dataclass
class DemoConfig:
    out: Path = field(default=Path("tokenreward-demo"), metadata={"help": "output folder (runs, results.json, curves.png, report.html)"})
    world: Path | None = field(default=None, metadata={"help": "world folder (default: the small world in the cache, built on first use)"})
    steps: int = field(default=30, metadata={"help": "PPO steps per method"})
    learning_rate: float = field(
        default=1e-4,
        metadata={"help": "policy learning rate (ten times PPO's default, so that a few steps on the small world show an effect)"},
    )
    heatmaps: int = field(default=3, metadata={"help": "held-out responses shown with RED's token rewards"})
    eval_prompts: int | None = field(default=None, metadata={"help": "held-out prompts for the final evaluation (default: all)"})

    def __post_init__(self):
        checks = {"steps": self.steps >= 1, "learning_rate": 0 < self.learning_rate < float("inf"), "heatmaps": self.heatmaps >= 0,
                  "eval_prompts": self.eval_prompts is None or self.eval_prompts >= 1}
        rules = {"steps": ">= 1", "learning_rate": "> 0", "heatmaps": ">= 0", "eval_prompts": ">= 1"}
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"--{name.replace('_', '-')} must be {rules[name]}, got {getattr(self, name)}")
        if Path(self.out).exists() and not Path(self.out).is_dir():
            raise ValueError(f"--out {self.out}: is a file, not a folder")


def open_or_build_small_world(path: Path | None, console):
    """The world at `path`, else the cached small world, built there on first use."""
    from tokenreward.world import default_world_path, open_world
    from tokenreward.world.build import build_world

    if path is not None:
        return open_world(path)
    small = default_world_path("small")
    try:
        return open_world(small)
    except FileNotFoundError:
        console.print(f"building the small world in {small} (once; later runs reuse it)")
        return build_world(small, size="small", seed=0)


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
        raise ValueError(f"the world at {world.root} has no held-out (test) responses")
    red = build_rewarder("red", world.resources())
    scored = red.score([r["prompt"] for r in records], [r["response"] for r in records]).records()
    for k, (response, record) in enumerate(zip(records, scored), start=1):
        console.print(f"[bold]{k}.[/] [dim]{response['family']} · oracle score {response['oracle_score']:.2f}[/]")
        console.print(response["prompt"], style="dim", markup=False, highlight=False)
        console.print(terminal_heatmap(record))
        console.print(terminal_heatmap(credit_record(record, response.get("credit_spans", []), response["oracle_score"])))
        console.print()


def run_demo(config: DemoConfig) -> Path:
    """Run the demo; returns the path of the HTML report."""
    from rich.console import Console

    from tokenreward.bench.rl import RLBenchConfig
    from tokenreward.bench.rl import run as bench_rl

    console = Console(stderr=True)
    started = time.perf_counter()
    console.rule("[bold]tokenreward demo 1/3: the world")
    world = open_or_build_small_world(config.world, console)
    console.print(f"world: {world.root}")
    console.rule("[bold]2/3: RED's token rewards on held-out responses (green: credit, red: blame)")
    show_heatmaps(world, config.heatmaps, console)
    console.rule(f"[bold]3/3: PPO-RED vs PPO-sparse, {config.steps} steps each")
    bench = RLBenchConfig(
        out=Path(config.out),
        methods=list(DEMO_METHODS),
        seeds=1,
        steps=config.steps,
        trainer_options=[f"learning_rate={config.learning_rate}"],
        world=Path(world.root),
        eval_prompts=config.eval_prompts,
        window=max(1, min(5, config.steps // 5)),
    )
    bench_rl(bench, "rl")
    report = Path(config.out) / "report.html"
    console.print(f"\n[bold]done in {time.perf_counter() - started:.0f} s.[/] Open the report: {report}")
    return report


def register(sub) -> None:
    parser = sub.add_parser(
        "demo",
        help="the first command to run: the small world, RED's token rewards, PPO-RED vs PPO-sparse, an HTML report",
        description=__doc__.split("\n\n")[0],
    )
    add_config_arguments(parser, DemoConfig)
    parser.set_defaults(func=lambda args: run_demo(config_from_args(DemoConfig, args)))
