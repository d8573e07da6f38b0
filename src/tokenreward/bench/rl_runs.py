"""Running the (method, seed) runs of `bench rl`: one after another, or `jobs` at a time.

With `jobs > 1` every run trains and evaluates in its own worker process (spawned, one torch
thread each, no progress bar), which on a small CPU machine keeps every core busy on the
small models of the world where one process's threads would mostly wait. A run's result
does not depend on which process trained it, apart from the last bits of floating point
sums that a different thread count can change.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any


def remaining_note(spent: list[float], left: int, jobs: int = 1) -> str:
    """`, about N s left`: the mean time of the runs done so far times the runs left, over
    the runs that go at once (empty before the first run is done)."""
    if not spent or left < 1:
        return ""
    return f", about {round(sum(spent) / len(spent) * left / jobs)} s left"


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def train_and_evaluate(method, run_dir: Path, config, world_root: Path, seed: int, options: dict[str, str], console=None,
                       world=None, reference=None) -> dict[str, Any]:
    """Train one run (unless done) and evaluate its final policy; the world and the reference
    policy are opened here when not given (in a worker process)."""
    from rich.console import Console

    from tokenreward.bench.rl import EVAL, evaluate_run, train_run
    from tokenreward.models import load_causal_lm
    from tokenreward.jsonl import read_jsonl
    from tokenreward.world import open_world

    console = console or Console(stderr=True)
    world = world or open_world(world_root)
    reference = reference if reference is not None else load_causal_lm(world.policy_dir).eval()
    started = time.perf_counter()
    done = train_run(method, run_dir, config, world_root, seed, options, console)
    evaluation = evaluate_run(run_dir / "final", run_dir / EVAL, world, reference, config, seed)
    log = read_jsonl(run_dir / "log.jsonl") if (run_dir / "log.jsonl").exists() else []
    return {"seed": seed, "done": done, "eval": evaluation, "log": log, "seconds": time.perf_counter() - started}


def run_all(methods, config, world, world_root: Path, reference, options: dict[str, str], console) -> dict[str, list[dict[str, Any]]]:
    """Every (method, seed) run, in `config.jobs` processes at a time; per method its runs in seed order."""
    from tokenreward.bench.rl import DONE

    out = Path(config.out)
    todo = [(m, s) for m in methods for s in range(config.seeds)]
    results: dict[tuple[str, int], dict[str, Any]] = {}
    spent: list[float] = []
    runs_dir = {(m.name, s): out / m.name / f"seed-{s}" for m, s in todo}
    # finished runs are only read back (no process needed); with one job every run goes here
    in_process = todo if config.jobs <= 1 else [(m, s) for m, s in todo if (runs_dir[m.name, s] / DONE).exists()]
    for k, (method, seed) in enumerate(in_process):
        console.rule(f"[bold]bench rl [{k + 1}/{len(todo)}]: {method.name}, seed {seed}, {config.steps} steps"
                     f"{remaining_note(spent, len(todo) - k)}")
        run = train_and_evaluate(method, runs_dir[method.name, seed], config, world_root, seed, options, console, world, reference)
        spent.append(run["seconds"])
        results[method.name, seed] = run
    pending = [(m, s) for m, s in todo if (m.name, s) not in results]
    if pending:
        spent, quiet = [], {**options, "progress": "false"}
        console.rule(f"[bold]bench rl: {len(pending)} runs of {config.steps} steps, {config.jobs} at a time (one process each)")
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=config.jobs, mp_context=context, initializer=_one_thread) as pool:
            futures = {pool.submit(train_and_evaluate, m, runs_dir[m.name, s], config, world_root, s, quiet): (m, s)
                       for m, s in pending}
            for future in as_completed(futures):
                method, seed = futures[future]
                run = future.result()
                spent.append(run["seconds"])
                results[method.name, seed] = run
                console.print(f"  [{len(results)}/{len(todo)}] {method.name} seed {seed}: {run['seconds']:.0f} s"
                              f"{remaining_note(spent, len(todo) - len(results), config.jobs)}")
    return {m.name: [results[m.name, s] for s in range(config.seeds)] for m in methods}
