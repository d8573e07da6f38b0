"""How trainers load models: the loading flags every trainer has, and where its models go.

- Frozen models (a reference policy, a reward model, a rewarder's models, a guide policy) are
  loaded as `tokenreward.models.ModelLoading` says: `--dtype`, `--device-map auto` (sharded over
  every visible GPU; one process only), `--max-batch-tokens` (the rewarder's scoring batches),
  on the process's device.
- Trained models (policy, critic, reward model, discriminator) keep float32 weights, whatever
  the checkpoint holds: the optimizer's small updates would be lost in bf16 / fp16 weights;
  `--bf16` autocasts their compute.
- `--device`: `auto` is accelerate's device for the process (cuda when available, one GPU per
  process under `accelerate launch`); `cpu` runs on the CPU; `cuda` / `cuda:N` a GPU of a single
  process. A device other than the one accelerate gives the process is refused.
- A trainer that loads no frozen model (`frozen_models` empty) refuses the flags that would only
  apply to one (`--dtype bfloat16` would otherwise read as training in bf16 weights).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal

import torch

from tokenreward.errors import UserInputError
from tokenreward.models import ModelLoading, resolve_device


@dataclass(kw_only=True)
class LoadingFlags:
    """`--dtype`, `--device`, `--device-map`, `--max-batch-tokens` of every trainer (the fields of
    `ModelLoading`, so `ModelLoading.of(config)` reads them)."""

    dtype: Literal["auto", "bfloat16", "float16", "float32"] = field(
        default="auto",
        metadata={
            "help": "weights dtype of the frozen models (reference, reward and rewarder models, guide policy); "
            "auto: as saved. Trained models keep float32 weights (--bf16: bf16 compute)"
        },
    )
    device: str = field(
        default="auto",
        metadata={
            "help": "auto: accelerate's device for this process (cuda when available); cpu; cuda or cuda:N "
            "(a single process; under accelerate launch each process takes its own GPU)"
        },
    )
    device_map: Literal["auto"] | None = field(
        default=None,
        metadata={"help": "auto: shard each frozen model over every visible GPU (a single process only)"},
    )
    max_batch_tokens: int | None = field(
        default=None,
        metadata={"help": "frozen models score in length-sorted batches of at most this many padded tokens", "min": 1},
    )
    #: the models the trainer loads frozen (none: the flags that apply to frozen models are refused)
    frozen_models: ClassVar[tuple[str, ...]] = ()


def check_loading(config: Any) -> None:
    """A bad `--dtype` / `--device` / `--device-map` (or `--device cuda` without CUDA), and, for a
    trainer without frozen models, a flag that would apply to none."""
    ModelLoading.of(config)
    if config.frozen_models:
        return
    if config.dtype in ("bfloat16", "float16"):
        raise UserInputError(
            f"--dtype {config.dtype}: this trainer loads no frozen model and the model it trains keeps float32 "
            "weights; for bf16 compute pass --bf16"
        )
    for flag, value in (("--device-map", config.device_map), ("--max-batch-tokens", config.max_batch_tokens)):
        if value is not None:
            raise UserInputError(f"{flag} {value}: this trainer loads no frozen model for it to apply to")


def frozen_loading(config: Any, accelerator) -> ModelLoading:
    """How a trainer loads its frozen models: the run's dtype, device map and token budget, on the process's device."""
    return replace(ModelLoading.of(config), device=str(accelerator.device))


def trained_loading(accelerator) -> ModelLoading:
    """How a trainer loads the model it trains: float32 weights on the process's device."""
    return ModelLoading(dtype="float32", device=str(accelerator.device))


def run_device(config: Any, accelerator_class) -> Any:
    """The run's accelerator on `--device` (see the module docstring); a device accelerate does
    not give this process, or a device map over several processes, is an error."""
    requested = None if config.device == "auto" else resolve_device(config.device)
    single = int(os.environ.get("WORLD_SIZE", "1")) == 1
    if requested is not None and requested.type == "cuda" and requested.index is not None and single:
        torch.cuda.set_device(requested)
    cpu = not torch.cuda.is_available() or (requested is not None and requested.type == "cpu")
    accelerator = accelerator_class(cpu=cpu)  # several CPU processes: gloo
    device = accelerator.device
    index = device.index if device.index is not None or device.type != "cuda" else torch.cuda.current_device()
    if requested is not None and (
        requested.type != device.type or (requested.index is not None and requested.index != index)
    ):
        raise UserInputError(
            f"--device {config.device}: this process runs on {device} (accelerate gives each process its own "
            "device); leave --device auto"
        )
    if config.device_map is not None and accelerator.num_processes > 1:
        raise UserInputError(
            f"--device-map {config.device_map} shards each frozen model over every GPU, which each of the "
            f"{accelerator.num_processes} processes would do; run one process"
        )
    return accelerator
