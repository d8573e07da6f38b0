"""Checkpoints that resume exactly, and the per-step JSONL log.

A checkpoint is a folder `OUT/checkpoints/step-N/` holding each model (Hugging Face format; a
LoRA model as its adapter and trained heads only, `tokenreward.lora`),
each optimizer / scheduler state, the RNG states (python, numpy, torch, cuda) and the step,
written to a temporary folder and renamed, so a run killed while saving keeps its previous
checkpoint. The log is cut back to the restored step so re-run steps are not logged twice.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tokenreward.jsonl import read_jsonl, write_jsonl
from tokenreward.lora import is_adapted, load_trainable_state

CHECKPOINTS = "checkpoints"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


class JsonlLogger:
    """Appends one JSON object per step to `path`; optional TensorBoard mirror when installed."""

    def __init__(self, path: Path, resume_step: int = 0, tensorboard: bool = True, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = (
            [r for r in read_jsonl(self.path) if r.get("step", 0) <= resume_step]
            if resume_step and self.path.exists()
            else []
        )
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
        if is_adapted(model):
            load_trainable_state(model, path / name)
        elif (path / name).is_dir():
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
