"""The run harness every trainer uses: config base, run folder, seeds, data split, the
optimizer step, checkpoints and the final model.

- `RunConfig`: the settings every trainer has (one spelling each), validated in
  `__post_init__` against the ranges stated in each field's help (`min`, `gt`); among them the
  loading flags `--dtype`, `--device`, `--device-map`, `--max-batch-tokens`
  (`tokenreward.trainers.loading`: what they mean for frozen and trained models).
- `RunFolder` (`tokenreward.trainers.run_folder`): `OUT/run.json`, refuse / resume / start, the
  final model written atomically, `OUT/done`.
- LoRA (`--lora-r`, `tokenreward.lora`): `with_adapters` adds the adapters to the trained
  model, `RunFolder.finish` writes the adapter (or with `--merge` the merged model).
- Seeds: `derive_seed(seed, *purpose)` (numpy `SeedSequence`), one independent stream per use.
- Data: `shard(indices, accelerator)`, every process its slice of the step's batch;
  `Optimization.step` weighs each process's loss by its share of the step's loss units (pairs,
  tokens), so N processes give the same update as one.
- The optimizer step (`apply_gradients`): clip, stop on a non-finite norm, step; the loop
  (`tokenreward.trainers.loop.run_steps`) logs and checkpoints.
- Checkpoints (`OUT/checkpoints/step-N/`): written by the main process only, atomically,
  the newest `--keep-checkpoints` kept; restored on every process (each needs the weights),
  RNG states included.
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tokenreward.config import validate_ranges
from tokenreward.errors import NonFiniteError
from tokenreward.lora import LoraFlags, add_adapters, check_lora_flags, trainable_parameters
from tokenreward.models import enable_activation_checkpointing
from tokenreward.trainers.checkpoints import latest_checkpoint, load_checkpoint, save_checkpoint, seed_everything
from tokenreward.trainers.loading import LoadingFlags, check_loading, run_device
from tokenreward.trainers.run_folder import RunFolder, fields_at_default, settings_of
from tokenreward.trainers.run_inputs import input_digests


@dataclass(kw_only=True)
class RunConfig(LoraFlags, LoadingFlags):
    """Settings every trainer has. Subclasses may redeclare a field to change its default.
    The LoRA flags (`tokenreward.lora.LoraFlags`) apply to the model the trainer trains."""

    out: Path = field(metadata={"help": "run folder: run.json, log.jsonl, checkpoints/, final/"})
    seed: int = field(default=0, metadata={"help": "seed; every random use draws its own stream from it", "min": 0})
    resume: bool = field(
        default=False, metadata={"help": "continue the run in --out (from its newest checkpoint, else from the start)"}
    )
    save_every: int = field(
        default=50,
        metadata={"help": "checkpoint every N steps and after the last", "min": 1, "aliases": ["--checkpoint-every"]},
    )
    keep_checkpoints: int = field(
        default=2, metadata={"help": "keep the newest N checkpoints (older ones are deleted)", "min": 1}
    )
    progress: bool = field(default=True, metadata={"help": "show progress bars"})
    learning_rate: float = field(
        default=1e-5, metadata={"help": "AdamW learning rate", "gt": 0.0, "aliases": ["--lr"]}
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient-norm clip", "gt": 0.0})
    bf16: bool = field(default=False, metadata={"help": "bf16 autocast of the forward passes"})
    gradient_accumulation: int = field(
        default=1, metadata={"help": "micro-batches per optimizer step (same update, less memory)", "min": 1}
    )
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "recompute activations in the backward pass (less memory)"}
    )
    chat_template: bool = field(
        default=False,
        metadata={"help": "apply the policy tokenizer's chat template to plain-string prompts (as one user message)"},
    )

    def __post_init__(self):
        validate_ranges(self)
        check_loading(self)
        check_lora_flags(self)


def derive_seed(seed: int, *purpose: str | int) -> int:
    """A 32-bit seed for one use (`"order", epoch`), independent of every other use of `seed`."""
    keys = [seed] + [k if isinstance(k, int) else zlib.crc32(str(k).encode()) for k in purpose]
    return int(np.random.SeedSequence(keys).generate_state(1)[0])


def permutation(n: int, seed: int, *purpose: str | int) -> list[int]:
    return torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(seed, *purpose))).tolist()


def batch_indices(step: int, n: int, batch_size: int, seed: int) -> list[int]:
    """The examples of step `step`: epoch-wise permutations seeded by (seed, epoch), so any step's
    batch is known without replaying the ones before it (exact resume)."""
    per_epoch = math.ceil(n / batch_size)
    epoch, k = divmod(step, per_epoch)
    return permutation(n, seed, "order", epoch)[k * batch_size : (k + 1) * batch_size]


def shard(indices: Sequence[int], accelerator) -> list[int]:
    """This process's slice of a step's batch (round robin)."""
    return list(indices[accelerator.process_index :: accelerator.num_processes])


def configure_threads() -> int:
    """Torch CPU threads: `OMP_NUM_THREADS` when set, else the cores shared out among the
    processes of this machine (`LOCAL_WORLD_SIZE`), at least one."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        threads = int(os.environ["OMP_NUM_THREADS"])
    else:
        threads = (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    threads = max(1, threads)
    torch.set_num_threads(threads)
    return threads


def with_adapters(model, config: RunConfig, task: str):
    """`model` with LoRA adapters when `--lora-r` > 0 (`tokenreward.lora.add_adapters`, task
    CAUSAL_LM, SEQ_CLS or TOKEN_CLS), drawn from the run's seed; else `model` itself."""
    return add_adapters(model, config, task, derive_seed(config.seed, "lora", task))


def make_run(
    config: RunConfig,
    extra_settings: dict[str, Any] | None = None,
    may_change: Sequence[str] = (),
    extendable: bool = False,
):
    """(accelerator, run folder) of a trainer's run: threads set, every RNG seeded; settings in
    `may_change` may differ on resume; the run's length is its `steps` (else `epochs`), which
    an `extendable` run may change on resume (see `RunFolder`)."""
    from accelerate import Accelerator

    configure_threads()
    accelerator = run_device(config, Accelerator)  # --device checked against accelerate's
    seed_everything(derive_seed(config.seed, "global"))  # the same on every process: checkpoints hold the main one's
    settings = {**settings_of(config), **(extra_settings or {}), "inputs": input_digests(config)}
    folder = RunFolder(
        config.out,
        settings,
        config.resume,
        accelerator.is_main_process,
        may_change,
        fields_at_default(config),
        next((name for name in ("steps", "epochs") if hasattr(config, name)), None),
        extendable,
        config.merge,
    )
    accelerator.wait_for_everyone()
    return accelerator, folder


def micro_batches(accelerator, model, micros: Sequence[Any]):
    """Each micro-batch in turn, inside `no_sync` for all but the last, so the processes'
    gradients are all-reduced once, after the last backward pass."""
    for j, micro in enumerate(micros):
        with accelerator.no_sync(model) if j < len(micros) - 1 else nullcontext():
            yield micro


def autocast(bf16: bool, device: torch.device):
    """The forward passes' context: bf16 autocast on `device` with `--bf16`, else none."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


def check_finite_loss(loss: torch.Tensor, where: str) -> None:
    """Stop on a non-finite loss, naming where (`step 3`, `step 3, epoch 1, mini-batch 2`)."""
    if not torch.isfinite(loss.detach()):
        raise NonFiniteError(
            f"{where}: the loss is {float(loss.detach())}; stopping (lower --learning-rate or check the data)"
        )


def apply_gradients(accelerator, model, optimizer, max_grad_norm: float, where: str) -> None:
    """The optimizer step: clip the gradient norm to `max_grad_norm`, stop on a non-finite norm
    before anything changes, step and clear the gradients."""
    norm = accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
    if not torch.isfinite(torch.as_tensor(norm)):
        raise NonFiniteError(
            f"{where}: the gradient norm is {float(norm)}; stopping (lower --learning-rate or check the data)"
        )
    optimizer.step()
    optimizer.zero_grad()


LossFn = Callable[[list[int]], tuple[torch.Tensor, dict[str, float]]]


class Optimization:
    """One model under an optimizer and schedule, prepared for the processes, restored from
    the newest checkpoint of `folder` (`start` is its step), stepped by `step`."""

    def __init__(
        self, accelerator, folder: RunFolder, config: RunConfig, model, optimizer, scheduler, name: str = "model"
    ):
        self.accelerator, self.folder, self.config, self.name = accelerator, folder, config, name
        self.scheduler = scheduler
        folder.begin()
        if config.gradient_checkpointing:
            enable_activation_checkpointing(model)
        self.start = 0
        if latest_checkpoint(folder.out) is not None:
            self.start, _ = load_checkpoint(
                folder.out, {name: model}, {"optimizer": optimizer}, {"scheduler": scheduler}
            )
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        self.model.train()

    @property
    def unwrapped(self):
        return self.accelerator.unwrap_model(self.model)

    def step(
        self,
        step: int,
        indices: Sequence[int],
        loss_fn: LossFn,
        units: Callable[[list[int]], float] | None = len,
        summed: Sequence[str] = (),
    ) -> dict[str, float]:
        """One optimizer step on the batch `indices` (all processes' pairs / sequences).

        Each process takes its shard, cut into `gradient_accumulation` micro-batches;
        `loss_fn(micro)` returns the micro-batch's mean loss over its `units(micro)` loss units
        and metrics (with `units=None`, the metrics carry `"units"` themselves: every
        micro-batch is then run forward before the backward passes). Weighted by
        `units / total units` (times the process count, which the gradient all-reduce divides
        out), the summed gradients are those of the mean over the whole batch. Logged metrics are
        unit-weighted means over the batch, or totals for the names in `summed` (counts). Stops
        on a non-finite loss or gradient naming the step."""
        mine = shard(indices, self.accelerator)
        k = min(self.config.gradient_accumulation, max(1, len(mine)))
        micros = [mine[i::k] for i in range(k)] if mine else [[]]
        if units is None:
            forwards = [self._forward(step, micro, loss_fn) for micro in micros]
            weights = [values.pop("units", 0.0) for _, values in forwards]
        else:
            forwards, weights = None, [float(units(m)) if m else 0.0 for m in micros]
        total = self._sum(torch.tensor([sum(weights)], dtype=torch.float64))[0]
        metrics = []
        for j, micro in enumerate(micro_batches(self.accelerator, self.model, micros)):
            loss, values = forwards[j] if forwards is not None else self._forward(step, micro, loss_fn)
            self.accelerator.backward(loss * (weights[j] * self.accelerator.num_processes / max(float(total), 1e-12)))
            metrics.append((weights[j], {"loss": float(loss.detach()), **values}))
        lr = self.scheduler.get_last_lr()[0]
        apply_gradients(self.accelerator, self.model, self.optimizer, self.config.max_grad_norm, f"step {step + 1}")
        self.scheduler.step()
        return {**self._gathered(metrics, summed), "lr": lr}

    def _forward(self, step: int, micro: list[int], loss_fn: LossFn) -> tuple[torch.Tensor, dict[str, float]]:
        with autocast(self.config.bf16, self.accelerator.device):
            loss, values = loss_fn(micro) if micro else (self._zero_loss(), {"units": 0.0})
        check_finite_loss(loss, f"step {step + 1}")
        return loss, dict(values)

    def _sum(self, values: torch.Tensor) -> torch.Tensor:
        """Sum over the processes."""
        if self.accelerator.num_processes == 1:
            return values
        return self.accelerator.reduce(values.to(self.accelerator.device), "sum").cpu()

    def _zero_loss(self) -> torch.Tensor:
        return sum(p.sum() * 0.0 for p in self.model.parameters())

    def _gathered(self, metrics: list[tuple[float, dict[str, float]]], summed: Sequence[str]) -> dict[str, float]:
        """Unit-weighted means (totals for `summed`) of the micro-batch metrics over every process."""
        keys = sorted({k for _, values in metrics for k in values if k != "units"})
        rows = [[(1.0 if k in summed else w) * values.get(k, 0.0) for k in keys] + [w] for w, values in metrics]
        sums = self._sum(torch.tensor(rows, dtype=torch.float64).sum(0))
        return {
            k: float(sums[i]) if k in summed else float(sums[i] / sums[-1]) if float(sums[-1]) else 0.0
            for i, k in enumerate(keys)
        }

    def checkpoint(self, step: int) -> None:
        """Save the model, optimizer, schedule and RNG states as of `step` (main process only)."""
        if self.accelerator.is_main_process:
            save_checkpoint(
                self.folder.out,
                step,
                {self.name: self.unwrapped},
                {"optimizer": self.optimizer},
                {"scheduler": self.scheduler},
                keep=self.config.keep_checkpoints,
            )
        self.accelerator.wait_for_everyone()


def cosine_optimization(
    accelerator,
    folder: RunFolder,
    config: RunConfig,
    model,
    warmup_steps: int,
    total_steps: int,
    name: str = "model",
    weight_decay: float = 0.0,
) -> Optimization:
    """AdamW and a cosine learning-rate schedule with linear warm-up over `total_steps`."""
    from transformers import get_scheduler

    optimizer = torch.optim.AdamW(trainable_parameters(model), lr=config.learning_rate, weight_decay=weight_decay)
    scheduler = get_scheduler("cosine", optimizer, num_warmup_steps=warmup_steps, num_training_steps=total_steps)
    return Optimization(accelerator, folder, config, model, optimizer, scheduler, name)


def global_masked_moments(accelerator, values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of the masked entries of `values` over all processes."""
    stats = torch.stack([values[mask].sum(), (values[mask] ** 2).sum(), mask.sum().to(values.dtype)])
    total, squares, count = accelerator.reduce(stats, reduction="sum")
    mean = total / count.clamp_min(1)
    return mean, (squares / count.clamp_min(1) - mean**2).clamp_min(0.0)
