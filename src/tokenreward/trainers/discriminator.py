"""`tokenreward train discriminator`: TLCR's token-level preference discriminator (Section 4.2).

A causal LM backbone with a linear head on every position (`AutoModelForTokenClassification`,
`num_labels=1`, saved in Hugging Face format); `D(y_t | x, y_<t) = sigma(z_t)` is read at
token `t`'s own position. Trained with the soft-label BCE of Eq. 6
(`tokenreward.losses.discriminator.soft_label_bce`) over the response tokens of both the
revision `y_m` and the rejected response `y_r`. Defaults from the paper's Appendix B: Adam
(beta 0.9, 0.95), weight decay 0.1, batch 16, cosine schedule without warm-up, 2 epochs; the
learning rate is 1e-3 (the paper's 1e-5 is for a 7B model: on the world's small models it
reaches 0.796 token accuracy where 1e-3 reaches 0.908). A seeded fraction of the prompts is
held out; `OUT/eval.json` holds the held-out token accuracies (`discriminator_metrics`).

Labels come from `--labels` (a `tokenreward label` output made with the discriminator's
tokenizer) or, without it, from the world's pairs of `--split` and their oracle revisions.
`--install` replaces `WORLD/discriminator` by the trained discriminator (a copy renamed into
place: a kill leaves the old one or the new one), where `World.resources()`
offers it to the `tlcr` rewarders (and so to `bench credit`, `bench rl`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tokenreward.encoding import encode_pairs, prompts_as_chat
from tokenreward.errors import UserInputError
from tokenreward.io import replace_folder
from tokenreward.labels import labels_from_world, read_labels, split_by_prompt
from tokenreward.lora import trainable_parameters
from tokenreward.losses.discriminator import discriminator_metrics, soft_label_bce
from tokenreward.models import context_length, load_tokenizer
from tokenreward.rewarders.tlcr import load_discriminator
from tokenreward.trainers import register_trainer
from tokenreward.trainers.harness import Optimization, RunConfig, batch_indices, derive_seed, make_run, with_adapters
from tokenreward.trainers.loop import run_steps


@dataclass(kw_only=True)
class DiscriminatorConfig(RunConfig):
    out: Path = field(
        metadata={"help": "output folder: run.json, final/ (HF model + tokenizer), eval.json, log.jsonl, checkpoints/"}
    )
    labels: Path | None = field(
        default=None,
        metadata={
            "help": "labels JSONL from `tokenreward label` (default: the world's pairs with their oracle revisions)"
        },
    )
    world: Path | None = field(default=None, metadata={"help": "world folder (default: the built world)"})
    split: str = field(default="reward", metadata={"help": "without --labels: the world's pair split to label"})
    backbone: str | None = field(
        default=None,
        metadata={
            "help": "causal LM folder or hub id to start from (default: the world's SFT policy)",
            "aliases": ["--policy"],
        },
    )
    tokenizer: str | None = field(default=None, metadata={"help": "tokenizer (default: the backbone's)"})
    epochs: int = field(default=2, metadata={"help": "passes over the training labels (paper: 2)", "min": 1})
    learning_rate: float = field(
        default=1e-3,
        metadata={
            "help": "peak learning rate, cosine decay without warm-up (paper: 1e-5, for a 7B model)",
            "gt": 0.0,
            "aliases": ["--lr"],
        },
    )
    batch_size: int = field(
        default=16, metadata={"help": "responses per step, over all processes (paper: 16)", "min": 1}
    )
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW weight decay (paper: 0.1)", "min": 0.0})
    eval_fraction: float = field(
        default=0.1, metadata={"help": "fraction of prompts held out for the token accuracy", "min": 0.0, "lt": 1.0}
    )
    log_every: int = field(default=10, metadata={"help": "log the training loss every N steps", "min": 1})
    save_every: int = field(
        default=200,
        metadata={"help": "checkpoint every N steps and after the last", "min": 1, "aliases": ["--checkpoint-every"]},
    )
    install: bool = field(
        default=False, metadata={"help": "also replace WORLD/discriminator by the trained discriminator"}
    )


def batch_tensors(tokenizer, examples: list[dict[str, Any]], max_length: int | None) -> dict[str, torch.Tensor]:
    """Inputs, soft-label targets and the mask of labelled (response) positions.

    An example is `{"prompt", "response", "offsets", "labels", "where"}`; the tokenizer
    must split the response as the labels did."""
    enc = encode_pairs(tokenizer, [e["prompt"] for e in examples], [e["response"] for e in examples], max_length)
    targets = torch.zeros(enc.input_ids.shape)
    mask = torch.zeros(enc.input_ids.shape, dtype=torch.bool)
    for i, example in enumerate(examples):
        if [list(o) for o in enc.offsets[i]] != [list(o) for o in example["offsets"]]:
            raise UserInputError(
                f"{example['where']}: this tokenizer splits the response into other tokens than the labels; "
                "relabel with `tokenreward label --tokenizer` set to the discriminator's tokenizer"
            )
        targets[i, enc.response_positions[i]] = torch.tensor(example["labels"], dtype=torch.float32)
        mask[i, enc.response_positions[i]] = True
    return {"input_ids": enc.input_ids, "attention_mask": enc.attention_mask, "targets": targets, "mask": mask}


def examples_of(records: list[dict[str, Any]], source: str) -> list[dict[str, Any]]:
    """Two examples per labelled pair: the revision `y_m` and the rejected response `y_r`."""
    return [
        {
            "prompt": r["prompt"],
            "response": r[side],
            "offsets": r[f"{side}_offsets"],
            "labels": r[f"{side}_labels"],
            "where": f"{source}, record {k} ({side})",
        }
        for k, r in enumerate(records)
        for side in ("revision", "rejected")
    ]


def token_logits(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[..., 0]


@torch.no_grad()
def evaluate(model, tokenizer, examples: list[dict[str, Any]], batch_size: int, device) -> dict[str, float]:
    """Held-out BCE and `discriminator_metrics` over every labelled token of `examples`."""
    model.eval()
    probs, labels, losses, count = [], [], 0.0, 0
    for start in range(0, len(examples), batch_size):
        batch = {
            k: v.to(device)
            for k, v in batch_tensors(tokenizer, examples[start : start + batch_size], context_length(model)).items()
        }
        logits = token_logits(model, batch)
        n = int(batch["mask"].sum())
        losses += float(soft_label_bce(logits, batch["targets"], batch["mask"])) * n
        count += n
        probs.append(torch.sigmoid(logits[batch["mask"]].float()).cpu())
        labels.append(batch["targets"][batch["mask"]].cpu())
    model.train()
    metrics = discriminator_metrics(torch.cat(probs), torch.cat(labels))
    return {"bce": losses / max(count, 1), **metrics}


def install_in_world(final: Path, world_root: Path) -> Path:
    """Replace `WORLD/discriminator` by a copy of `final`, atomically (`io.replace_folder`)."""
    return replace_folder(final, Path(world_root) / "discriminator")


def training_examples(config: DiscriminatorConfig, tokenizer, world) -> tuple[list, list, str, dict[str, int]]:
    """(training examples, held-out examples, their source, pair counts): the labels of
    `--labels` or of the world's pairs, split by prompt (`--eval-fraction`)."""
    if config.labels is not None:
        records, source = read_labels(config.labels), str(config.labels)
    else:
        records, source = labels_from_world(world, tokenizer, config.split), f"world pairs ({config.split})"
    train_records, eval_records = split_by_prompt(records, config.eval_fraction, config.seed)
    train, held_out = (
        examples_of(prompts_as_chat(part, config.chat_template), source) for part in (train_records, eval_records)
    )
    if not train:
        raise UserInputError(f"{source}: no labelled pairs left for training")
    return train, held_out, source, {"train_pairs": len(train_records), "held_out_pairs": len(eval_records)}


def paper_optimization(accelerator, folder, config: DiscriminatorConfig, model, total: int) -> Optimization:
    """Adam (beta 0.9, 0.95) with weight decay and a cosine decay to 0 over `total` steps, no warm-up."""
    optimizer = torch.optim.AdamW(
        trainable_parameters(model), lr=config.learning_rate, betas=(0.9, 0.95), weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total))
    )
    return Optimization(accelerator, folder, config, model, optimizer, scheduler, "discriminator")


@register_trainer(
    "discriminator", DiscriminatorConfig, help="TLCR token discriminator: LM backbone + linear head, soft-label BCE"
)
def run(config: DiscriminatorConfig, name: str = "discriminator") -> Path:
    accelerator, folder = make_run(config)
    if folder.finished:
        return folder.out / "final"
    world = None
    if config.labels is None or config.backbone is None or config.install:
        from tokenreward.world import open_world

        world = open_world(config.world)
    backbone = config.backbone or world.policy_dir
    tokenizer = load_tokenizer(config.tokenizer or backbone)
    train, held_out, source, pair_counts = training_examples(config, tokenizer, world)
    torch.manual_seed(derive_seed(config.seed, "head"))  # the linear head's initialisation
    model = with_adapters(load_discriminator(backbone).float(), config, "TOKEN_CLS")  # trained weights stay float32
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total = config.epochs * steps_per_epoch
    training = paper_optimization(accelerator, folder, config, model, total)
    max_length = context_length(model)

    def loss_fn(indices: list[int]):
        batch = {
            key: v.to(accelerator.device)
            for key, v in batch_tensors(tokenizer, [train[i] for i in indices], max_length).items()
        }
        return soft_label_bce(token_logits(training.model, batch), batch["targets"], batch["mask"]), {}

    def labelled_tokens(indices: list[int]) -> float:
        return float(sum(len(train[i]["labels"]) for i in indices))

    def train_step(step: int) -> dict[str, float]:
        batch = batch_indices(step, len(train), config.batch_size, config.seed)
        return {"epoch": step // steps_per_epoch, **training.step(step, batch, loss_fn, labelled_tokens)}

    def held_out_evaluation() -> dict[str, float]:
        metrics = dict(pair_counts)
        if held_out:
            metrics.update(evaluate(training.unwrapped, tokenizer, held_out, config.batch_size, accelerator.device))
        (folder.out / "eval.json").write_text(json.dumps(metrics, indent=2) + "\n")
        return {"step": total, **{f"eval_{k}": v for k, v in metrics.items()}}

    run_steps(training, total, train_step, name, log_every=config.log_every, closing=held_out_evaluation)
    final = folder.finish(training.unwrapped, tokenizer)
    if config.install and accelerator.is_main_process:
        print(f"discriminator installed in {install_in_world(final, world.root)}")
    return final
