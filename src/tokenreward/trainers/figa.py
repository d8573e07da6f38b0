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

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tokenreward.labels import NEGATIVE, POSITIVE, labels_from_world, read_labels
from tokenreward.losses.figa import figa_loss
from tokenreward.models import context_length, load_causal_lm, load_tokenizer, token_logprobs
from tokenreward.trainers import register_trainer
from tokenreward.trainers.common import JsonlLogger, latest_checkpoint, load_checkpoint, make_accelerator, progress_bar, save_checkpoint
from tokenreward.trainers.discriminator import batch_tensors, examples_of


@dataclass
class FigaConfig:
    """FIGA (METHODS.md): weights +alpha on added/substituted revision tokens and the EOS,
    -beta on deleted/substituted rejected tokens while their CE is in [ce_low, ce_high]."""

    out: Path = field(metadata={"help": "run folder: log.jsonl, checkpoints/, final/ (the trained policy)"})
    world: Path | None = field(default=None, metadata={"help": "world folder (default: the built world; none needed with --labels and --policy)"})
    labels: Path | None = field(default=None, metadata={"help": "labels JSONL from `tokenreward label` on the policy's tokenizer (default: the world's pairs with their oracle revisions)"})
    split: str = field(default="reward", metadata={"help": "without --labels: the world's pair split"})
    policy: Path | None = field(default=None, metadata={"help": "initial policy folder (default: the world's SFT policy)"})
    steps: int = field(default=100, metadata={"help": "optimizer steps"})
    seed: int = field(default=0, metadata={"help": "seed of the data order and the evaluation samples"})
    resume: bool = field(default=False, metadata={"help": "continue the run in --out from its newest checkpoint"})
    batch_size: int = field(default=8, metadata={"help": "pairs per step"})
    learning_rate: float = field(default=1e-5, metadata={"help": "AdamW learning rate (constant)"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm"})
    alpha: float = field(default=1.0, metadata={"help": "weight of added / substituted revision tokens"})
    beta: float = field(default=0.5, metadata={"help": "penalty on deleted / substituted rejected tokens"})
    ce_low: float = field(default=0.6, metadata={"help": "penalise a rejected token only when its CE is at least this"})
    ce_high: float = field(default=1.0, metadata={"help": "... and at most this"})
    prompt_split: str = field(default="rl", metadata={"help": "world split whose prompts the oracle evaluation samples"})
    eval_every: int = field(default=10, metadata={"help": "log the oracle score of sampled responses every N steps"})
    eval_prompts: int = field(default=16, metadata={"help": "prompts sampled per evaluation"})
    max_new_tokens: int = field(default=64, metadata={"help": "longest sampled response in tokens"})
    save_every: int = field(default=50, metadata={"help": "checkpoint every N steps (and at the end)"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})


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
    return -token_logprobs(model, batch["input_ids"], batch["attention_mask"])


def pair_batches(tokenizer, records: list[dict[str, Any]], source: str, max_length: int | None) -> tuple[dict, dict]:
    """(revision batch with EOS, rejected batch) for a list of labelled pairs."""
    examples = examples_of(records, source)
    revision = batch_tensors(tokenizer, examples[0::2], max_length and max_length - 1)
    rejected = batch_tensors(tokenizer, examples[1::2], max_length)
    return add_eos(revision, tokenizer.eos_token_id, tokenizer.pad_token_id), rejected


@register_trainer("figa", FigaConfig, help="FIGA: fine-grained weighted imitation of (rejected, revision) pairs")
def run(config: FigaConfig, name: str = "figa") -> Path:
    out = Path(config.out)
    world = None
    if config.world is not None or config.labels is None or config.policy is None:
        from tokenreward.world import open_world

        world = open_world(config.world)  # own pairs and policy need no world (and get no oracle evaluation)
    policy_dir = Path(config.policy or world.policy_dir)
    if not policy_dir.is_dir():
        raise FileNotFoundError(f"--policy: no model folder {policy_dir}")
    has_tokenizer = (policy_dir / "tokenizer_config.json").exists()
    if not has_tokenizer and world is None:
        raise FileNotFoundError(f"--policy {policy_dir} holds no tokenizer (tokenizer_config.json)")
    tokenizer = load_tokenizer(str(policy_dir if has_tokenizer else world.tokenizer_dir))
    if tokenizer.eos_token_id is None or tokenizer.pad_token_id is None:
        raise ValueError("figa: the policy's tokenizer needs an EOS and a pad token")
    if config.labels is not None:
        records, source = read_labels(config.labels), str(config.labels)
    else:
        records, source = labels_from_world(world, tokenizer, config.split), f"world pairs ({config.split})"
    eval_records = world.prompts(config.prompt_split)[: config.eval_prompts] if world is not None else []
    if config.resume and latest_checkpoint(out) is None:
        raise FileNotFoundError(f"--resume: no checkpoint under {out}")
    if not config.resume and (out / "log.jsonl").exists():
        raise ValueError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")

    accelerator = make_accelerator(config.seed)
    policy = load_causal_lm(str(policy_dir))
    optimizer = torch.optim.AdamW(policy.parameters(), lr=config.learning_rate, weight_decay=0.0)
    start = 0
    if config.resume:
        start, _ = load_checkpoint(out, {"policy": policy}, {"optimizer": optimizer})
    policy, optimizer = accelerator.prepare(policy, optimizer)
    policy.eval()  # no dropout: the CE gate and the loss see the same deterministic model
    logger = JsonlLogger(out / "log.jsonl", resume_step=start, enabled=accelerator.is_main_process)
    max_length = context_length(accelerator.unwrap_model(policy))
    per_epoch = math.ceil(len(records) / config.batch_size)
    with progress_bar(config.steps, name, start=start, enabled=config.progress) as advance:
        for step in range(start, config.steps):
            epoch, k = divmod(step, per_epoch)
            order = torch.randperm(len(records), generator=torch.Generator().manual_seed(config.seed * 1000 + epoch))
            chosen = [records[int(i)] for i in order[k * config.batch_size : (k + 1) * config.batch_size]]
            revision, rejected = (
                {key: v.to(accelerator.device) for key, v in b.items()} for b in pair_batches(tokenizer, chosen, source, max_length)
            )
            loss, stats = figa_loss(
                token_ce(policy, revision),
                revision["mask"] & (revision["targets"] == POSITIVE),
                token_ce(policy, rejected),
                rejected["mask"] & (rejected["targets"] == NEGATIVE),
                config.alpha, config.beta, config.ce_low, config.ce_high,
            )
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            record = {"step": step + 1, "loss": loss.item(), **{k: float(v) for k, v in stats.items()}}
            if eval_records and ((step + 1) % config.eval_every == 0 or step + 1 == config.steps):
                record["oracle_score"] = sampled_oracle_score(accelerator.unwrap_model(policy), tokenizer, eval_records, config)
            logger.log(record)
            if (step + 1) % config.save_every == 0 or step + 1 == config.steps:
                save_checkpoint(out, step + 1, {"policy": accelerator.unwrap_model(policy)}, {"optimizer": optimizer})
            advance(**{k: record[k] for k in ("loss", "oracle_score") if k in record})
    logger.close()
    final = out / "final"
    accelerator.unwrap_model(policy).save_pretrained(final)
    tokenizer.save_pretrained(final)
    return out


@torch.no_grad()
def sampled_oracle_score(policy, tokenizer, prompt_records: list[dict], config: FigaConfig) -> float:
    """Mean oracle score of responses sampled at temperature 1 (seeded by `config.seed`)."""
    from tokenreward.generation import generate
    from tokenreward.world.oracle import grade

    generations = generate(
        policy, tokenizer, [r["prompt"] for r in prompt_records], config.max_new_tokens, do_sample=True,
        generator_seed=config.seed,
    )
    return sum(grade(r, g.text).score for r, g in zip(prompt_records, generations)) / len(prompt_records)
