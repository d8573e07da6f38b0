"""Supervised fine-tuning of a causal LM on TRL `prompt`/`completion` records.

Loss: the mean over completion tokens (and the EOS appended after a plain-text completion)
of `-log pi(y_t | x, y_<t)`; prompt tokens carry no loss. Conversational records (TRL
`messages`, or a message-list `prompt` with a `completion`) are rendered with the
tokenizer's chat template (see `tokenreward.encoding`). Resumable from checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tokenreward.encoding import encode_pairs, prompts_as_chat
from tokenreward.errors import UserInputError
from tokenreward.io import row_location
from tokenreward.jsonl import read_jsonl
from tokenreward.models import load_causal_lm, load_tokenizer
from tokenreward.trainers import register_trainer
from tokenreward.trainers.harness import RunConfig, cosine_optimization, make_run, permutation, with_adapters
from tokenreward.trainers.loading import trained_loading
from tokenreward.trainers.loop import run_steps

LENGTH_WINDOW = 16


@dataclass(kw_only=True)
class SFTConfig(RunConfig):
    """`tokenreward train sft`: fine-tune a causal LM on prompt/completion JSONL."""

    data: str = field(metadata={"help": "JSONL with prompt/completion (or messages) records"})
    policy: str = field(
        metadata={"help": "Hugging Face causal LM folder or hub id to start from", "aliases": ["--model"]}
    )
    out: Path = field(
        default=Path("runs/sft"), metadata={"help": "output folder (run.json, log.jsonl, checkpoints, final/)"}
    )
    tokenizer: str | None = field(default=None, metadata={"help": "tokenizer folder (default: the policy's)"})
    epochs: int = field(default=1, metadata={"help": "passes over the data", "min": 1})
    batch_size: int = field(default=16, metadata={"help": "sequences per step (over all processes)", "min": 1})
    learning_rate: float = field(
        default=1e-4, metadata={"help": "AdamW learning rate (cosine decay)", "gt": 0.0, "aliases": ["--lr"]}
    )
    warmup_steps: int = field(default=0, metadata={"help": "linear warm-up steps", "min": 0})
    max_length: int = field(default=256, metadata={"help": "longest prompt+completion in tokens", "min": 2})
    group_by_length: bool = field(
        default=True, metadata={"help": "batch examples of similar length together (less padding)"}
    )
    save_every: int = field(
        default=200,
        metadata={"help": "checkpoint every N steps and after the last", "min": 1, "aliases": ["--checkpoint-every"]},
    )
    max_grad_norm: float = field(
        default=math.inf, metadata={"help": "gradient-norm clip (inf: none)", "gt": 0.0, "allow_inf": True}
    )


def _split_record(record: dict[str, Any], index: int, source: str = "SFT data") -> tuple[Any, Any]:
    if "messages" in record:
        messages = record["messages"]
        if not messages or messages[-1].get("role") != "assistant":
            raise UserInputError(f"{row_location(source, index)}: `messages` must end with an assistant message")
        return messages[:-1], messages
    if "prompt" in record and "completion" in record:
        completion = record["completion"]
        return record["prompt"], completion if isinstance(completion, str) else record["prompt"] + completion
    raise UserInputError(
        f"{row_location(source, index)}: neither prompt/completion nor messages (keys: {sorted(record)})"
    )


def tokenize_sft(
    tokenizer, records: Sequence[dict[str, Any]], max_length: int, source: str = "SFT data"
) -> list[tuple[list[int], list[int]]]:
    """Per record `(input_ids, labels)`, labels `-100` on prompt tokens. A plain-text
    completion is followed by the EOS token, which is learned too."""
    examples = []
    for start in range(0, len(records), 256):
        chunk = records[start : start + 256]
        prompts, completions = zip(*(_split_record(r, start + i, source) for i, r in enumerate(chunk)))
        enc = encode_pairs(tokenizer, list(prompts), list(completions))
        for i, prompt in enumerate(prompts):
            length = enc.last_positions[i] + 1
            ids = enc.input_ids[i, :length].tolist()
            first = enc.response_positions[i][0]
            if isinstance(prompt, str):
                if tokenizer.eos_token_id is None:
                    raise UserInputError("the tokenizer has no EOS token; the policy could never learn to stop")
                ids.append(tokenizer.eos_token_id)
            if len(ids) > max_length:
                raise UserInputError(
                    f"{row_location(source, start + i)}: {len(ids)} tokens, longer than --max-length {max_length}"
                )
            examples.append((ids, [-100] * first + ids[first:]))
    return examples


def collate(examples: Sequence[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, (ids, lab) in enumerate(examples):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, : len(lab)] = torch.tensor(lab)
        mask[i, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def sft_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean of `-log p(label_t | <t)` over positions whose label is not -100."""
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.size(-1)).float(), labels[:, 1:].reshape(-1), ignore_index=-100
    )


def step_order(
    n: int, batch_size: int, epochs: int, seed: int, lengths: Sequence[int] | None = None
) -> list[list[int]]:
    """Batches of example indices for every step: a fresh seeded shuffle per epoch.

    With `lengths`, examples of similar length share a batch (less padding): each window of
    `LENGTH_WINDOW` batches of the shuffle is sorted by length, cut into batches, and the
    epoch's batches are shuffled again."""
    batches = []
    for epoch in range(epochs):
        order = permutation(n, seed, "order", epoch)
        if lengths is not None:
            window = batch_size * LENGTH_WINDOW
            order = [i for s in range(0, n, window) for i in sorted(order[s : s + window], key=lambda k: lengths[k])]
        epoch_batches = [order[s : s + batch_size] for s in range(0, n, batch_size)]
        if lengths is not None:
            epoch_batches = [epoch_batches[k] for k in permutation(len(epoch_batches), seed, "batches", epoch)]
        batches += epoch_batches
    return batches


def train_sft(
    model,
    tokenizer,
    records: Sequence[dict[str, Any]],
    out: str | Path,
    epochs: int = 1,
    batch_size: int = 16,
    lr: float = 1e-4,
    warmup_steps: int = 0,
    max_length: int = 256,
    group_by_length: bool = True,
    save_every: int = 200,
    seed: int = 0,
    resume: bool = False,
    progress: bool = True,
    max_grad_norm: float = math.inf,
):
    """Fine-tune `model` in place on `records` into the run folder `out`; returns the trained
    (unwrapped) model. Logs `{"step", "loss", "lr"}` to `out/log.jsonl`; a resumed run ends
    with the same weights as an uninterrupted one. `max_grad_norm` clips the gradient norm
    (default: no clip)."""
    config = SFTConfig(
        data="",
        policy="",
        out=Path(out),
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=lr,
        warmup_steps=warmup_steps,
        max_length=max_length,
        group_by_length=group_by_length,
        save_every=save_every,
        seed=seed,
        resume=resume,
        progress=progress,
        max_grad_norm=max_grad_norm,
    )
    return train(config, model, tokenizer, records)


def label_count(examples: Sequence[tuple[list[int], list[int]]]) -> Callable[[list[int]], float]:
    """Loss units of a micro-batch: its predicted (non -100, not first) label tokens."""
    return lambda indices: float(sum(sum(1 for t in examples[i][1][1:] if t != -100) for i in indices))


def train(config: SFTConfig, model, tokenizer, records: Sequence[dict[str, Any]], accelerator=None, folder=None):
    if not records:
        raise UserInputError(f"{config.data or 'the SFT data'}: no records to train on")
    if accelerator is None:
        accelerator, folder = make_run(config)
    examples = tokenize_sft(
        tokenizer, prompts_as_chat(records, config.chat_template), config.max_length, str(config.data or "SFT data")
    )
    lengths = [len(ids) for ids, _ in examples] if config.group_by_length else None
    batches = step_order(len(examples), config.batch_size, config.epochs, config.seed, lengths)
    model = with_adapters(model, config, "CAUSAL_LM")
    training = cosine_optimization(accelerator, folder, config, model, config.warmup_steps, len(batches))

    def loss_fn(indices: list[int]):
        batch = {
            k: v.to(accelerator.device)
            for k, v in collate([examples[i] for i in indices], tokenizer.pad_token_id).items()
        }
        logits = training.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return sft_loss(logits, batch["labels"]), {}

    units = label_count(examples)
    run_steps(
        training,
        len(batches),
        lambda step: training.step(step, batches[step], loss_fn, units),
        "sft",
        tensorboard=False,
    )
    return training.unwrapped.eval()


@register_trainer("sft", SFTConfig, help="supervised fine-tuning on prompt/completion JSONL")
def run(config: SFTConfig, name: str = "sft") -> Path:
    """Train, then save the model (with LoRA: its adapter) and tokenizer to `OUT/final`."""
    if not Path(config.data).is_file():
        raise FileNotFoundError(f"--data {config.data} does not exist")
    accelerator, folder = make_run(config)
    if folder.finished:
        return folder.out / "final"
    tokenizer = load_tokenizer(config.tokenizer or config.policy)
    model = load_causal_lm(config.policy, loading=trained_loading(accelerator))
    model = train(config, model, tokenizer, read_jsonl(config.data, "--data"), accelerator, folder)
    return folder.finish(model, tokenizer)
