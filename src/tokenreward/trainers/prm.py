"""`tokenreward train prm`: a token-classification process reward model on step-labelled data.

Data: TRL's stepwise format, one JSON record per line, `{"prompt": str or messages,
"completions": [step, ...], "labels": [bool per step]}`. The response is the steps joined with
`--step-separator`, read with the separator after every step, the last included (as TRL's PRM
trainer appends it), exactly as the `prm` rewarder reads a response
(`tokenreward.rewarders.prm.marked_response`): each step's label sits on the token holding the
last character of the separator that follows it, every other position is ignored. Model: a
causal LM backbone with a two-way linear head on every position
(`AutoModelForTokenClassification`, `num_labels=2`); loss: the cross-entropy of the labelled
positions, averaged over the steps of the batch. `P(good) = softmax(z)[1]` is the `prm`
rewarder's step score. AdamW with a cosine schedule; LoRA, resume and the run folder come from
the harness.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from tokenreward.encoding import encode_pairs, prompts_as_chat
from tokenreward.errors import UserInputError
from tokenreward.io import row_location
from tokenreward.jsonl import read_jsonl
from tokenreward.models import context_length, load_tokenizer
from tokenreward.rewarders.prm import covering_tokens, marked_response, split_steps, unescaped
from tokenreward.trainers import register_trainer
from tokenreward.trainers.harness import (
    RunConfig,
    cosine_optimization,
    derive_seed,
    make_run,
    with_adapters,
)
from tokenreward.trainers.loop import run_steps
from tokenreward.trainers.sft import step_order

IGNORED = -100


@dataclass(kw_only=True)
class PrmConfig(RunConfig):
    """`tokenreward train prm`: a process reward model with a two-way token head, on stepwise data."""

    data: str = field(
        metadata={"help": "stepwise JSONL: prompt, completions (a list of steps), labels (one per step)"}
    )
    model: str = field(
        metadata={"help": "causal LM folder (or GGUF file) to start from (a two-way token head is added)"}
    )
    out: Path = field(
        default=Path("runs/prm"), metadata={"help": "output folder (run.json, log.jsonl, checkpoints, final/)"}
    )
    tokenizer: str | None = field(default=None, metadata={"help": "tokenizer folder (default: the model's)"})
    step_separator: str = field(
        default="\n",
        metadata={"help": "text between steps, also read after the last step (backslash escapes such as \\n read)"},
    )
    epochs: int = field(default=1, metadata={"help": "passes over the records", "min": 1})
    batch_size: int = field(default=16, metadata={"help": "records per step (over all processes)", "min": 1})
    learning_rate: float = field(
        default=1e-4, metadata={"help": "AdamW learning rate (cosine decay)", "gt": 0.0, "aliases": ["--lr"]}
    )
    save_every: int = field(
        default=200, metadata={"help": "checkpoint every N steps", "min": 1, "aliases": ["--checkpoint-every"]}
    )

    def __post_init__(self):
        super().__post_init__()
        self.step_separator = unescaped(self.step_separator)
        if not self.step_separator:
            raise UserInputError("--step-separator must not be empty")


def check_record(record: Any, where: str, separator: str) -> None:
    """One stepwise record: a prompt, non-blank steps without the separator, one boolean label per step."""
    if not isinstance(record, dict):
        raise UserInputError(f"{where}: expected a JSON object with prompt, completions and labels")
    missing = [k for k in ("prompt", "completions", "labels") if k not in record]
    if missing:
        raise UserInputError(f"{where}: lacks {', '.join(missing)} (stepwise format: prompt, completions, labels)")
    steps, labels = record["completions"], record["labels"]
    if not isinstance(steps, list) or not steps or not all(isinstance(s, str) for s in steps):
        raise UserInputError(f"{where}: field completions must be a non-empty list of step strings")
    for k, step in enumerate(steps):
        if not step.strip():
            raise UserInputError(f"{where}: field completions, step {k} is blank")
        if separator in step:
            raise UserInputError(f"{where}: field completions, step {k} contains the step separator {separator!r}")
    if not isinstance(labels, list) or not all(isinstance(v, bool) for v in labels):
        raise UserInputError(f"{where}: field labels must be a list of true/false, one per step")
    if len(labels) != len(steps):
        raise UserInputError(f"{where}: field labels has {len(labels)} entries for {len(steps)} steps")


def read_stepwise(path: str | Path, separator: str, chat_template: bool = False) -> list[dict[str, Any]]:
    """The checked records of a stepwise JSONL file (errors name `FILE line N` and the field)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"--data {path}: no such file")
    records = read_jsonl(path, "--data")
    if not records:
        raise UserInputError(f"--data {path}: no records")
    for i, record in enumerate(records):
        check_record(record, row_location(path, i), separator)
    return prompts_as_chat(records, chat_template)


def batch_tensors(tokenizer, records: list[dict[str, Any]], separator: str, max_length: int | None):
    """Inputs and labels: each step's label (1 good, 0 bad) at its separator's last token, -100 elsewhere."""
    marked = []
    for record in records:
        response = separator.join(record["completions"])
        marked.append(marked_response(response, split_steps(response, separator), separator))
    enc = encode_pairs(tokenizer, [r["prompt"] for r in records], [m for m, _ in marked], max_length)
    labels = torch.full(enc.input_ids.shape, IGNORED, dtype=torch.long)
    for i, (record, (_, ends)) in enumerate(zip(records, marked)):
        positions = [enc.response_positions[i][t] for t in covering_tokens(enc.offsets[i], ends)]
        labels[i, positions] = torch.tensor([int(v) for v in record["labels"]])
    return enc.input_ids, enc.attention_mask, labels


def step_loss(model, tokenizer, records, separator: str, device) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean cross-entropy over the labelled steps, and the step accuracy."""
    input_ids, attention_mask, labels = batch_tensors(tokenizer, records, separator, context_length(model))
    logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits.float()
    labels = labels.to(device)
    loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORED)
    kept = labels != IGNORED
    return loss, {"accuracy": float((logits.argmax(-1)[kept] == labels[kept]).float().mean())}


def prm_from(source: str | Path, tokenizer):
    """`AutoModelForTokenClassification` (two labels, float32) from a causal LM folder; its head is new."""
    from transformers import AutoModelForTokenClassification
    from transformers.utils import logging as hf_logging

    from tokenreward.gguf import resolve_model_source

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the head is new by design
    try:
        model = AutoModelForTokenClassification.from_pretrained(
            str(resolve_model_source(source)), num_labels=2, dtype=torch.float32
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    model.config.id2label, model.config.label2id = {0: "bad", 1: "good"}, {"bad": 0, "good": 1}
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def train(config: PrmConfig, model, tokenizer, records: list[dict[str, Any]], accelerator=None, folder=None):
    """Train `model` in place on the checked `records` into the run folder; logs step, loss, accuracy."""
    if accelerator is None:
        accelerator, folder = make_run(config)
    batches = step_order(len(records), config.batch_size, config.epochs, config.seed, None)
    model = with_adapters(model, config, "TOKEN_CLS")
    training = cosine_optimization(accelerator, folder, config, model, 0, len(batches))

    def loss_fn(indices: list[int]):
        chosen = [records[i] for i in indices]
        return step_loss(training.model, tokenizer, chosen, config.step_separator, accelerator.device)

    def steps_of(indices: list[int]) -> float:
        return float(sum(len(records[i]["labels"]) for i in indices))

    def train_step(step: int) -> dict[str, float]:
        metrics = training.step(step, batches[step], loss_fn, steps_of)
        metrics.pop("lr")
        return metrics

    run_steps(training, len(batches), train_step, "prm", ("loss", "accuracy"), tensorboard=False)
    return training.unwrapped.eval()


@register_trainer("prm", PrmConfig, help="process reward model: a two-way token head trained on step-labelled data")
def run(config: PrmConfig, name: str = "prm") -> Path:
    """Train and save the model and tokenizer to `OUT/final` (read it with `--rewarder prm`)."""
    records = read_stepwise(config.data, config.step_separator, config.chat_template)
    accelerator, folder = make_run(config)
    if folder.finished:
        return folder.out / "final"
    tokenizer = load_tokenizer(config.tokenizer or config.model)
    torch.manual_seed(derive_seed(config.seed, "head"))  # the token head's initialisation
    model = train(config, prm_from(config.model, tokenizer), tokenizer, records, accelerator, folder)
    return folder.finish(model, tokenizer)
