"""`tokenreward train figa`: FIGA's fine-grained weighted imitation on (rejected, revision) pairs.

The policy learns from each pair's revision `y*` (with its EOS) and the rejected response
`y^`, token weights from their Levenshtein alignment (`tokenreward.losses.figa`). Pairs come
from `--labels` (a `tokenreward label` output on the policy's tokenizer) or, by default, the
world's pairs of `--split` with their oracle revisions, so FIGA sees the same revisions as
the TLCR discriminator. Every `eval_every` steps responses to the first `eval_prompts` of the
world's `prompt_split` prompts are sampled and graded by the oracle (`oracle_score` in
`OUT/log.jsonl`, comparable with the PPO log, which grades its training samples); the same
prompts and sampling seeds every time, so the curve moves with the policy, not the draw. Without a
world (`--labels` and `--policy` given, no `--world`) there is no oracle evaluation. Writes
`OUT/final`; checkpoints resume exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tokenreward.encoding import prompts_as_chat
from tokenreward.errors import UserInputError
from tokenreward.gguf import resolve_model_source
from tokenreward.labels import NEGATIVE, POSITIVE, labels_from_world, read_labels
from tokenreward.lora import refuse_lora_dropout, trainable_parameters
from tokenreward.losses.figa import figa_loss
from tokenreward.models import context_length, load_causal_lm, padded_token_logprobs
from tokenreward.trainers import register_trainer
from tokenreward.trainers.discriminator import batch_tensors, examples_of
from tokenreward.trainers.harness import Optimization, RunConfig, batch_indices, derive_seed, make_run, with_adapters
from tokenreward.trainers.loading import trained_loading
from tokenreward.trainers.loop import run_steps
from tokenreward.trainers.oracle_curve import sampled_oracle_score
from tokenreward.trainers.vocabulary import check_shared_vocabulary, policy_tokenizer


@dataclass(kw_only=True)
class FigaConfig(RunConfig):
    """FIGA (docs/methods.md): weights +alpha on added/substituted revision tokens and the EOS,
    -beta on deleted/substituted rejected tokens while their CE is in [ce_low, ce_high]."""

    out: Path = field(metadata={"help": "run folder: log.jsonl, checkpoints/, final/ (the trained policy)"})
    world: Path | None = field(
        default=None,
        metadata={"help": "world folder (default: the built world; none needed with --labels and --policy)"},
    )
    labels: Path | None = field(
        default=None,
        metadata={
            "help": "labels JSONL from `tokenreward label` on the policy's tokenizer (default: the world's pairs with their oracle revisions)"
        },
    )
    split: str = field(default="reward", metadata={"help": "without --labels: the world's pair split"})
    policy: Path | None = field(
        default=None, metadata={"help": "initial policy folder (default: the world's SFT policy)"}
    )
    steps: int = field(default=100, metadata={"help": "optimizer steps", "min": 1})
    batch_size: int = field(default=8, metadata={"help": "pairs per step (over all processes)", "min": 1})
    learning_rate: float = field(
        default=1e-5, metadata={"help": "AdamW learning rate (constant)", "gt": 0.0, "aliases": ["--lr"]}
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm", "gt": 0.0})
    alpha: float = field(default=1.0, metadata={"help": "weight of added / substituted revision tokens", "min": 0.0})
    beta: float = field(default=0.5, metadata={"help": "penalty on deleted / substituted rejected tokens", "min": 0.0})
    ce_low: float = field(
        default=0.6,
        metadata={"help": "penalise a rejected token only when its CE is at least this (< --ce-high)", "min": 0.0},
    )
    ce_high: float = field(default=1.0, metadata={"help": "... and at most this", "gt": 0.0})
    prompt_split: str = field(
        default="rl", metadata={"help": "world split whose prompts the oracle evaluation samples"}
    )
    eval_every: int = field(
        default=10, metadata={"help": "log the oracle score of sampled responses every N steps", "min": 1}
    )
    eval_prompts: int = field(default=16, metadata={"help": "prompts sampled per evaluation", "min": 0})
    max_new_tokens: int = field(default=64, metadata={"help": "longest sampled response in tokens", "min": 1})
    save_every: int = field(
        default=50,
        metadata={"help": "checkpoint every N steps and after the last", "min": 1, "aliases": ["--checkpoint-every"]},
    )

    def __post_init__(self):
        super().__post_init__()
        refuse_lora_dropout(self, "figa")
        if self.ce_low >= self.ce_high:
            raise UserInputError(f"--ce-low must be below --ce-high, got {self.ce_low} >= {self.ce_high}")


def add_eos(batch: dict[str, torch.Tensor], eos_token_id: int, pad_token_id: int) -> dict[str, torch.Tensor]:
    """Append the EOS after each right-padded row; it is a labelled (positive) token."""
    lengths = batch["attention_mask"].sum(-1)
    rows = torch.arange(len(lengths))
    pad_column = torch.zeros(len(lengths), 1, dtype=torch.long)
    out = {
        "input_ids": torch.cat([batch["input_ids"], pad_column + pad_token_id], dim=1),
        "attention_mask": torch.cat([batch["attention_mask"], pad_column], dim=1),
        "targets": torch.cat([batch["targets"], pad_column.float()], dim=1),
        "mask": torch.cat([batch["mask"], pad_column.bool()], dim=1),
    }
    out["input_ids"][rows, lengths] = eos_token_id
    out["attention_mask"][rows, lengths] = 1
    out["targets"][rows, lengths] = POSITIVE
    out["mask"][rows, lengths] = True
    return out


def token_ce(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """`CE[b, p] = -log pi(input[b, p] | input[b, :p])` for p >= 1; 0 at p = 0."""
    return -padded_token_logprobs(model, batch["input_ids"], batch["attention_mask"])


def pair_batches(tokenizer, records: list[dict[str, Any]], source: str, max_length: int | None) -> tuple[dict, dict]:
    """(revision batch with EOS, rejected batch) for a list of labelled pairs."""
    examples = examples_of(records, source)
    revision = batch_tensors(tokenizer, examples[0::2], max_length and max_length - 1)
    rejected = batch_tensors(tokenizer, examples[1::2], max_length)
    return add_eos(revision, tokenizer.eos_token_id, tokenizer.pad_token_id), rejected


def world_and_policy(config: FigaConfig) -> tuple[Any, Path]:
    """The world (None when own pairs and policy are given without `--world`: then there is no
    oracle evaluation) and the policy folder to start from."""
    world = None
    if config.world is not None or config.labels is None or config.policy is None:
        from tokenreward.world import open_world

        world = open_world(config.world)
    policy_dir = Path(resolve_model_source(config.policy or world.policy_dir))
    if not policy_dir.is_dir():
        raise FileNotFoundError(f"--policy: no model folder {policy_dir}")
    return world, policy_dir


def labelled_pairs(config: FigaConfig, tokenizer, world) -> tuple[list[dict[str, Any]], str]:
    """The labelled (rejected, revision) pairs of `--labels`, else of the world's `--split`, and their source."""
    if config.labels is not None:
        records, source = read_labels(config.labels), str(config.labels)
    else:
        records, source = labels_from_world(world, tokenizer, config.split), f"world pairs ({config.split})"
    return prompts_as_chat(records, config.chat_template), source


def figa_loss_fn(config: FigaConfig, policy, max_length: int, tokenizer, records: list[dict[str, Any]], source: str):
    """The loss of a micro-batch of pairs (`figa_loss`), its token counts as metrics and loss units."""
    device = next(policy.parameters()).device

    def loss_fn(indices: list[int]):
        revision, rejected = (
            {key: v.to(device) for key, v in b.items()}
            for b in pair_batches(tokenizer, [records[i] for i in indices], source, max_length)
        )
        loss, stats = figa_loss(
            token_ce(policy, revision),
            revision["mask"] & (revision["targets"] == POSITIVE),
            token_ce(policy, rejected),
            rejected["mask"] & (rejected["targets"] == NEGATIVE),
            config.alpha,
            config.beta,
            config.ce_low,
            config.ce_high,
        )
        stats = {k: float(v) for k, v in stats.items()}
        return loss, {**stats, "units": stats["positive_tokens"] + stats["penalised_tokens"]}

    return loss_fn


@register_trainer("figa", FigaConfig, help="FIGA: fine-grained weighted imitation of (rejected, revision) pairs")
def run(config: FigaConfig, name: str = "figa") -> Path:
    accelerator, folder = make_run(config, extendable=True)  # a constant learning rate
    if folder.finished:
        return folder.out
    world, policy_dir = world_and_policy(config)
    tokenizer = policy_tokenizer(policy_dir, world)
    records, source = labelled_pairs(config, tokenizer, world)
    eval_records = world.prompts(config.prompt_split)[: config.eval_prompts] if world is not None else []
    policy = load_causal_lm(str(policy_dir), loading=trained_loading(accelerator))
    check_shared_vocabulary(tokenizer, ("--policy", policy), {})
    policy = with_adapters(policy, config, "CAUSAL_LM")
    optimizer = torch.optim.AdamW(trainable_parameters(policy), lr=config.learning_rate, weight_decay=0.0)
    constant = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    training = Optimization(accelerator, folder, config, policy, optimizer, constant, "policy")
    training.model.eval()  # no dropout: the CE gate and the loss see the same deterministic model
    max_length = context_length(training.unwrapped)
    loss_fn = figa_loss_fn(config, training.model, max_length, tokenizer, records, source)

    def train_step(step: int) -> dict[str, float]:
        batch = batch_indices(step, len(records), config.batch_size, config.seed)
        metrics = training.step(step, batch, loss_fn, units=None, summed=("positive_tokens", "penalised_tokens"))
        metrics.pop("lr")
        return metrics

    def oracle_score(step: int) -> dict[str, float]:
        seed = derive_seed(config.seed, "evaluation")  # the same draws at every evaluation
        score = sampled_oracle_score(
            training.unwrapped, tokenizer, eval_records, config.max_new_tokens, seed, config.chat_template
        )
        return {"oracle_score": score}

    evaluate = oracle_score if eval_records else None
    run_steps(
        training,
        config.steps,
        train_step,
        name,
        ("loss", "oracle_score"),
        evaluate=evaluate,
        eval_every=config.eval_every,
    )
    folder.finish(training.unwrapped, tokenizer)
    return folder.out
