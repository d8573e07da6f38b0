"""LoRA for the model a trainer trains (PEFT's `LoraModel`).

With `--lora-r R > 0` the trained model's weights are frozen and each targeted linear map
`W` (default: every linear layer but the output head, PEFT's "all-linear") becomes
`W x + (alpha / R) * B A dropout(x)`, `A` `[R, in]` (Kaiming-uniform, seeded), `B` `[out, R]`
(zeros, so training starts from the model itself). A classification model (reward model,
critic, discriminator) also trains its new head in full (PEFT's `modules_to_save`).

- Reference policy: with adapters disabled (`adapters_disabled`, `BaseModelView`) the model is
  the base it started from, so a method that needs a reference and has no separate
  `--reference` reads it from the policy itself: no second copy in memory.
- Checkpoints hold what trains: `save_pretrained` of a PEFT model writes the adapter and the
  trained heads only; `load_trainable_state` restores them exactly.
- `final/`: the adapter and the tokenizer (`peft.PeftModel.from_pretrained(base, final)`, or
  `tokenreward.models.load_causal_lm(final)` / `load_reward_model(final)`, which merge it);
  with `--merge`, a plain merged Hugging Face model instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tokenreward.errors import UserInputError

ADAPTER_CONFIG = "adapter_config.json"
TASKS = ("CAUSAL_LM", "SEQ_CLS", "TOKEN_CLS")
CLASSIFICATION_HEADS = ("classifier", "score")  # PEFT's modules_to_save of SEQ_CLS / TOKEN_CLS


@dataclass(kw_only=True)
class LoraFlags:
    """`--lora-r`, `--lora-alpha`, `--lora-dropout`, `--lora-target-modules`, `--merge` of every trainer."""

    lora_r: int = field(default=0, metadata={"help": "LoRA rank of the trained model (0: full fine-tuning)", "min": 0})
    lora_alpha: float = field(
        default=16.0, metadata={"help": "LoRA scale numerator: the update is (alpha / r) B A x", "gt": 0.0}
    )
    lora_dropout: float = field(default=0.0, metadata={"help": "dropout on the LoRA input", "min": 0.0, "lt": 1.0})
    lora_target_modules: str = field(
        default="all-linear",
        metadata={"help": "modules LoRA adapts: all-linear (every linear layer but the output head) or NAME,NAME,..."},
    )
    merge: bool = field(
        default=False, metadata={"help": "with LoRA: write final/ as a plain merged model instead of the adapter"}
    )


def check_lora_flags(flags: Any) -> None:
    """One-line errors for LoRA settings out of range, or given while `--lora-r` is 0."""
    if flags.lora_r < 0:
        raise UserInputError(f"lora_r={flags.lora_r}: must be at least 0")
    if not flags.lora_alpha > 0:
        raise UserInputError(f"lora_alpha={flags.lora_alpha}: must be greater than 0")
    if not 0 <= flags.lora_dropout < 1:
        raise UserInputError(f"lora_dropout={flags.lora_dropout}: must be in [0, 1)")
    if not target_modules(flags):
        raise UserInputError(f"lora_target_modules={flags.lora_target_modules!r}: names no module")
    if flags.lora_r == 0:
        given = [
            f"{f.name}={getattr(flags, f.name)}"
            for f in fields(LoraFlags)
            if f.name != "lora_r" and getattr(flags, f.name) != f.default
        ]
        if given:
            raise UserInputError(
                f"{', '.join(given)}: LoRA options with lora_r=0 (full fine-tuning); pass lora_r=R > 0 or drop them"
            )


def refuse_lora_dropout(flags: Any, trainer: str) -> None:
    """For trainers whose models stay in eval mode (no dropout, so that rollouts, gates and losses
    see one deterministic model): `--lora-dropout` would do nothing, so it is an error."""
    if flags.lora_dropout > 0:
        raise UserInputError(
            f"lora_dropout={flags.lora_dropout}: {trainer} keeps its models in eval mode (no dropout)"
        )


def target_modules(flags: Any) -> str | list[str]:
    """PEFT's `target_modules`: "all-linear", or the comma-separated names."""
    text = flags.lora_target_modules.strip()
    return text if text == "all-linear" else [name.strip() for name in text.split(",") if name.strip()]


def targets_in(model: nn.Module, flags: Any, task: str) -> str | list[str]:
    """`target_modules(flags)`; for a token-classification model, "all-linear" spelled out as
    its linear layers but the head (PEFT's "all-linear" leaves out a sequence-classification
    head and the LM head, not a token-classification head, which trains in full instead)."""
    targets = target_modules(flags)
    if targets != "all-linear" or task != "TOKEN_CLS":
        return targets
    from transformers.pytorch_utils import Conv1D

    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, (nn.Linear, Conv1D)) and name.rsplit(".", 1)[-1] not in CLASSIFICATION_HEADS
    ]


def lora_enabled(flags: Any) -> bool:
    return getattr(flags, "lora_r", 0) > 0


def is_adapted(model: nn.Module) -> bool:
    """Whether `model` (or the model inside a data-parallel wrapper) is a PEFT model."""
    from peft import PeftModel

    return isinstance(getattr(model, "module", model), PeftModel)


def add_adapters(model: nn.Module, flags: Any, task: str, seed: int = 0) -> nn.Module:
    """`model` with LoRA adapters (a `PeftModel`), or `model` itself when `flags.lora_r` is 0.

    `task` is PEFT's task type: CAUSAL_LM (policy), SEQ_CLS (reward model, critic: the `score`
    head trains in full), TOKEN_CLS (discriminator: likewise its head). The adapters' `A`
    matrices are drawn from `seed` without touching the global RNG, so every process builds
    the same adapters and the run's other random streams do not move."""
    if not lora_enabled(flags):
        return model
    if task not in TASKS:
        raise UserInputError(f"LoRA task {task!r}: choose one of {', '.join(TASKS)}")
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        task_type=task,
        r=flags.lora_r,
        lora_alpha=flags.lora_alpha,
        lora_dropout=flags.lora_dropout,
        target_modules=targets_in(model, flags, task),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            return get_peft_model(model, config)
        except ValueError as err:
            raise UserInputError(f"lora_target_modules={flags.lora_target_modules}: {err}") from err


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters the optimizer updates (all of them without LoRA)."""
    return [p for p in model.parameters() if p.requires_grad]


@contextmanager
def adapters_disabled(model: nn.Module) -> Iterator[None]:
    """While active, `model` computes as its base model (adapters and trained heads off);
    a model without adapters is left as it is."""
    inner = getattr(model, "module", model)
    with inner.disable_adapter() if is_adapted(inner) else nullcontext():
        yield


class BaseModelView(nn.Module):
    """The base model of a PEFT model, read through the PEFT model itself with its adapters
    disabled: a frozen reference policy that costs no memory. The PEFT model is not registered
    as a submodule, so freezing or moving the view leaves the trained model alone."""

    def __init__(self, model: nn.Module):
        super().__init__()
        object.__setattr__(self, "adapted", model)

    def forward(self, *args, **kwargs):
        with torch.no_grad(), adapters_disabled(self.adapted):
            return self.adapted(*args, **kwargs)

    @property
    def config(self):
        return self.adapted.config

    def get_output_embeddings(self) -> nn.Module:
        return self.adapted.get_output_embeddings()

    def get_input_embeddings(self) -> nn.Module:
        return self.adapted.get_input_embeddings()

    def get_base_model(self) -> nn.Module:
        return self.adapted.get_base_model()


def reference_of(policy: nn.Module, flags: Any, reference: str | Path | None) -> BaseModelView | None:
    """The policy's base as its reference (`BaseModelView`) when LoRA is on and no separate
    reference folder is given; else None (the caller loads the reference)."""
    return BaseModelView(policy) if lora_enabled(flags) and reference is None else None


def load_trainable_state(model: nn.Module, folder: Path) -> None:
    """Restore a PEFT model's adapter and trained heads from its `save_pretrained` folder;
    a key that does not fit the model is an error naming the folder."""
    from peft import set_peft_model_state_dict
    from peft.utils import load_peft_weights

    result = set_peft_model_state_dict(model, load_peft_weights(str(folder), device="cpu"))
    if result.unexpected_keys:
        raise UserInputError(
            f"{folder}: adapter weights that this model lacks ({', '.join(result.unexpected_keys[:3])})"
        )


def write_final(model: nn.Module, tokenizer: Any, folder: Path, merge: bool) -> nn.Module:
    """Save `model` and `tokenizer` to `folder`: a PEFT model as its adapter (and trained
    heads), or with `merge` as a plain model with `W + (alpha / r) B A` folded into each
    adapted weight. Returns the model to use from here on (the merged one after `merge`)."""
    if merge and is_adapted(model):
        model = model.merge_and_unload()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model


def is_adapter_folder(source: Any) -> bool:
    """Whether `source` is a folder holding a PEFT adapter (`adapter_config.json`)."""
    return isinstance(source, (str, Path)) and (Path(source).expanduser() / ADAPTER_CONFIG).is_file()


def adapter_base(folder: str | Path) -> str:
    """The base model an adapter folder was trained on (`base_model_name_or_path`)."""
    import json

    config = json.loads((Path(folder).expanduser() / ADAPTER_CONFIG).read_text())
    base = config.get("base_model_name_or_path")
    if not base:
        raise UserInputError(f"{folder}/{ADAPTER_CONFIG} names no base model (base_model_name_or_path)")
    return str(base)


def merged_adapter(base: nn.Module, folder: str | Path) -> nn.Module:
    """`base` with the adapter of `folder` loaded and merged into its weights (a plain model),
    named after `folder`: an adapter trained on top of it names `folder` as its base, which
    tokenreward's loaders resolve in turn."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(base, str(folder)).merge_and_unload()
    model.name_or_path = model.config._name_or_path = str(folder)
    return model
