"""The step loop every trainer runs (`run_steps`): one step after another from the restored
step, the log line of each, the progress bar, and the one checkpoint rule (`is_due`): a
checkpoint after step `s` when `s % --save-every == 0` or `s` is the last step, so a finished
run holds its last step's state and a constant-rate run can go on exactly to more steps.

A trainer supplies its step (`train_step(step) -> metrics`: an optimizer step on its batch,
or PPO's rollout and update) and, optionally, an evaluation logged with the step
(`evaluate(step)`, main process, every `eval_every` steps and at the last) and a last record
logged after the steps (`closing()`, main process). The run ends with `RunFolder.finish`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from tokenreward.progress import progress_bar
from tokenreward.trainers.checkpoints import JsonlLogger

Record = dict[str, Any]


class Training(Protocol):
    """What the loop steps (`tokenreward.trainers.harness.Optimization`, `PPOTrainer`): its run's
    `config`, `accelerator` and `folder`, `start` (the restored step, 0 for a fresh run) and
    `checkpoint(step)`."""

    config: Any
    accelerator: Any
    folder: Any
    start: int

    def checkpoint(self, step: int) -> None: ...


def is_due(step: int, every: int, total: int) -> bool:
    """After step `step` (counted from 1) of `total`: every `every` steps, and after the last."""
    return step % every == 0 or step == total


def run_steps(
    training: Training,
    total: int,
    train_step: Callable[[int], Record],
    name: str,
    shown: Sequence[str] = ("loss",),
    log_every: int = 1,
    evaluate: Callable[[int], Record] | None = None,
    eval_every: int = 1,
    closing: Callable[[], Record] | None = None,
    tensorboard: bool = True,
) -> None:
    """Steps `training.start .. total - 1`: `{"step": s, **train_step(step), **evaluate(step)}` is
    logged to `OUT/log.jsonl` every `log_every` steps and at the last (`s = step + 1`; the log is
    cut back to the restored step first); a checkpoint when `is_due(s, --save-every, total)`;
    the bar shows the `shown` figures. `closing()` is logged once the steps are done."""
    config, main = training.config, training.accelerator.is_main_process
    logger = JsonlLogger(
        training.folder.out / "log.jsonl", resume_step=training.start, enabled=main, tensorboard=tensorboard
    )
    try:
        with progress_bar(total, name, start=training.start, enabled=config.progress and main) as advance:
            for step in range(training.start, total):
                record = {"step": step + 1, **train_step(step)}
                if evaluate is not None and main and is_due(step + 1, eval_every, total):
                    record.update(evaluate(step))
                if is_due(step + 1, log_every, total):
                    logger.log(record)
                if is_due(step + 1, config.save_every, total):
                    training.checkpoint(step + 1)
                advance(**{k: record[k] for k in shown if k in record})
        if closing is not None and main:
            logger.log(closing())
    finally:
        logger.close()
