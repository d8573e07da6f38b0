"""Pieces every trainer shares: seeding, JSONL logging, checkpoints that resume exactly,
progress bars, and the `accelerate` set-up.

A checkpoint is a folder `OUT/checkpoints/step-N/` holding each model (Hugging Face format),
each optimizer / scheduler state, the RNG states (python, numpy, torch, cuda) and the step,
written to a temporary folder and renamed, so a run killed while saving keeps its previous
checkpoint. `resume` restores the newest one; the log is cut back to that step so re-run
steps are not logged twice.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

CHECKPOINTS = "checkpoints"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def make_accelerator(seed: int, **kwargs: Any):
    """An `accelerate.Accelerator` (CPU, one GPU, or many under `accelerate launch`), seeded.

    Each process gets the same seed so that generation and data order agree across ranks
    unless a trainer offsets it by `accelerator.process_index` on purpose."""
    from accelerate import Accelerator

    accelerator = Accelerator(**kwargs)
    seed_everything(seed)
    return accelerator


class JsonlLogger:
    """Appends one JSON object per step to `path`; optional TensorBoard mirror when installed."""

    def __init__(self, path: Path, resume_step: int = 0, tensorboard: bool = True, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = [r for r in read_jsonl(self.path) if r.get("step", 0) <= resume_step] if resume_step and self.path.exists() else []
        write_jsonl(self.path, kept)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(self.path.parent / "tensorboard"))
            except ImportError:
                self.writer = None

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, record.get("step", 0))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_jsonl(path: Path | str) -> list[dict[str, Any]]:
    path = Path(path)
    with path.open() as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_jsonl(path: Path | str, records: list[dict[str, Any]]) -> None:
    """Write all records atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    os.replace(tmp, path)


def rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    out: Path,
    step: int,
    models: dict[str, Any],
    optimizers: dict[str, Any] | None = None,
    schedulers: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    keep: int = 2,
) -> Path:
    """Save models (HF `save_pretrained` or a plain state dict), optimizer / scheduler states,
    RNG states and `extra` to `out/checkpoints/step-{step}`; keep the newest `keep`."""
    root = Path(out) / CHECKPOINTS
    final = root / f"step-{step}"
    tmp = root / f".step-{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, model in models.items():
        if hasattr(model, "save_pretrained"):
            model.save_pretrained(tmp / name)
        else:
            torch.save(model.state_dict(), tmp / f"{name}.pt")
    state = {
        "step": step,
        "rng": rng_state(),
        "optimizers": {k: v.state_dict() for k, v in (optimizers or {}).items()},
        "schedulers": {k: v.state_dict() for k, v in (schedulers or {}).items()},
        "extra": extra or {},
    }
    torch.save(state, tmp / "state.pt")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in sorted(root.glob("step-*"), key=lambda p: int(p.name.split("-")[1]))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(out: Path) -> Path | None:
    steps = sorted((Path(out) / CHECKPOINTS).glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    return steps[-1] if steps else None


def load_checkpoint(
    out: Path,
    models: dict[str, Any],
    optimizers: dict[str, Any] | None = None,
    schedulers: dict[str, Any] | None = None,
) -> tuple[int, dict[str, Any]]:
    """Restore the newest checkpoint in `out` into the given objects; returns (step, extra).

    Raises FileNotFoundError naming `out` when there is none (e.g. `--resume` on a fresh dir).
    """
    path = latest_checkpoint(out)
    if path is None:
        raise FileNotFoundError(f"--resume: no checkpoint under {Path(out) / CHECKPOINTS}")
    for name, model in models.items():
        if (path / name).is_dir():
            from safetensors.torch import load_file

            files = sorted((path / name).glob("*.safetensors"))
            weights: dict[str, torch.Tensor] = {}
            for file in files:
                weights.update(load_file(str(file)))
            if weights:
                model.load_state_dict(weights, strict=False)
            else:
                model.load_state_dict(torch.load(path / name / "pytorch_model.bin", map_location="cpu"), strict=False)
        else:
            model.load_state_dict(torch.load(path / f"{name}.pt", map_location="cpu"))
    state = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
    for key, optimizer in (optimizers or {}).items():
        optimizer.load_state_dict(state["optimizers"][key])
    for key, scheduler in (schedulers or {}).items():
        scheduler.load_state_dict(state["schedulers"][key])
    set_rng_state(state["rng"])
    return int(state["step"]), state["extra"]


class CosineTraining:
    """One model under AdamW (no weight decay) and a cosine learning-rate schedule with linear
    warm-up, checkpointed in `out` under the name `model`.

    With `resume`, the newest checkpoint is restored before `accelerator.prepare`; `start` is
    then its step (else 0). The prepared model is left in train mode."""

    def __init__(self, accelerator, model, out: Path, lr: float, warmup_steps: int, total_steps: int, resume: bool):
        from transformers import get_scheduler

        self.accelerator = accelerator
        self.out = Path(out)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
        self.scheduler = get_scheduler("cosine", optimizer, num_warmup_steps=warmup_steps, num_training_steps=total_steps)
        self.start = 0
        if resume and latest_checkpoint(self.out) is not None:
            self.start, _ = load_checkpoint(self.out, {"model": model}, {"optimizer": optimizer}, {"scheduler": self.scheduler})
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        self.model.train()

    def step(self, loss: torch.Tensor) -> None:
        """Backpropagate `loss`, step the optimizer and the schedule, clear the gradients."""
        self.accelerator.backward(loss)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad()

    def save(self, step: int) -> None:
        """Checkpoint the model, optimizer and schedule as of `step`."""
        save_checkpoint(self.out, step, {"model": self.accelerator.unwrap_model(self.model)}, {"optimizer": self.optimizer}, {"scheduler": self.scheduler})


@contextmanager
def progress_bar(total: int, description: str, start: int = 0, enabled: bool = True) -> Iterator[Any]:
    """A rich progress bar; yields `advance(n=1, **fields)` that also shows the latest metrics."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[metrics]}"),
    ]
    with Progress(*columns, disable=not enabled, transient=False) as bar:
        task = bar.add_task(description, total=total, completed=start, metrics="")

        def advance(n: int = 1, **metrics: Any) -> None:
            shown = "  ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
            bar.update(task, advance=n, metrics=shown)

        yield advance
