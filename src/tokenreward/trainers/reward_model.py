"""Bradley-Terry reward model: a scalar head on a causal transformer, trained on TRL
`prompt`/`chosen`/`rejected` pairs.

Loss: `-log sigma(R(x, y_w) - R(x, y_l))`, averaged over pairs (TRL's RewardTrainer loss).
The score is the head's output at the last real token of prompt+response, encoded exactly as
the rewarders encode it (`tokenreward.encoding.encode_pairs`), so RED/ABC read the model the
way it was trained. Resumable from checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from tokenreward.encoding import encode_pairs, prompts_as_chat
from tokenreward.errors import UserInputError
from tokenreward.io import row_location
from tokenreward.jsonl import read_jsonl
from tokenreward.losses.prefix_losses import PREFIX_LOSSES, PrefixScores
from tokenreward.models import context_length, load_tokenizer, prefix_scores, scalar_head_from_lm
from tokenreward.trainers import register_trainer
from tokenreward.trainers.harness import RunConfig, cosine_optimization, derive_seed, make_run, with_adapters
from tokenreward.trainers.loop import run_steps
from tokenreward.trainers.sft import step_order


@dataclass(kw_only=True)
class RewardModelConfig(RunConfig):
    """`tokenreward train reward-model`: Bradley-Terry reward model on preference pairs."""

    data: str = field(metadata={"help": "JSONL with prompt/chosen/rejected records (TRL format)"})
    model: str = field(
        metadata={
            "help": "causal LM or sequence-classification folder (or GGUF file) to start from (a scalar head is added)",
            "aliases": ["--policy"],
        }
    )
    out: Path = field(
        default=Path("runs/reward-model"),
        metadata={"help": "output folder (run.json, log.jsonl, checkpoints, final/)"},
    )
    tokenizer: str | None = field(default=None, metadata={"help": "tokenizer folder (default: the model's)"})
    eval_data: str | None = field(
        default=None, metadata={"help": "held-out pairs JSONL; pairwise accuracy is printed"}
    )
    epochs: int = field(default=1, metadata={"help": "passes over the pairs", "min": 1})
    group_by_length: bool = field(
        default=False, metadata={"help": "batch pairs of similar length together (less padding)"}
    )
    batch_size: int = field(default=16, metadata={"help": "pairs per step (over all processes)", "min": 1})
    learning_rate: float = field(
        default=1e-4, metadata={"help": "AdamW learning rate (cosine decay)", "gt": 0.0, "aliases": ["--lr"]}
    )
    save_every: int = field(
        default=200,
        metadata={"help": "checkpoint every N steps and after the last", "min": 1, "aliases": ["--checkpoint-every"]},
    )
    max_grad_norm: float = field(
        default=math.inf, metadata={"help": "gradient-norm clip (inf: none)", "gt": 0.0, "allow_inf": True}
    )
    prefix_loss: str = field(
        default="none",
        metadata={
            "help": "loss on the score at every response prefix, added to Bradley-Terry's (what RED reads): none, "
            "value (each prefix predicts the pair's outcome), truncated (Bradley-Terry on truncated pairs), "
            "revision (Bradley-Terry against the rejected response's minimal revision, the pairs' `revision` field)",
            "choices": PREFIX_LOSSES.names,
        },
    )
    prefix_weight: float = field(default=1.0, metadata={"help": "weight of --prefix-loss", "min": 0.0})


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """`mean(-log sigma(r_chosen - r_rejected))`."""
    return -F.logsigmoid(chosen.float() - rejected.float()).mean()


def reward_model_from(source, tokenizer):
    """A scalar-head sequence-classification model (float32 weights, to be trained) from a causal
    LM or reward model folder (or loaded causal LM), with `pad_token_id` set so the last real
    token can be found."""
    from transformers import AutoModelForSequenceClassification

    if isinstance(source, (str, Path)):
        model = scalar_head_from_lm(source)
    else:
        config = source.config
        config.num_labels = 1
        model = AutoModelForSequenceClassification.from_config(config)
        model.base_model.load_state_dict(source.base_model.state_dict())
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def _check_pairs(pairs: Sequence[dict[str, Any]], source: str = "the preference pairs") -> None:
    for i, pair in enumerate(pairs):
        missing = [k for k in ("prompt", "chosen", "rejected") if k not in pair]
        if missing:
            raise UserInputError(
                f"{row_location(source, i)}: lacks {', '.join(missing)} (TRL format: prompt/chosen/rejected)"
            )


def _check_trainable(pairs: Sequence[dict[str, Any]], source: str, prefix_loss: str = "none") -> None:
    """Well-formed pairs, at least one, and not every chosen equal to its rejected (a
    Bradley-Terry model learns nothing from equal responses); a known prefix loss, and for
    `revision` at least one pair with a revision."""
    if not pairs:
        raise UserInputError(f"{source}: no preference pairs to train on")
    _check_pairs(pairs, source)
    if all(pair["chosen"] == pair["rejected"] for pair in pairs):
        raise UserInputError(f"{source}: in every pair chosen equals rejected; there is no preference to learn")
    if prefix_loss not in PREFIX_LOSSES:
        raise UserInputError(
            f"--prefix-loss {prefix_loss!r} is not known; choose one of {', '.join(PREFIX_LOSSES.names())}"
        )
    if prefix_loss == "revision" and not any(_revision(pair) is not None for pair in pairs):
        raise UserInputError(
            f"{source}: --prefix-loss revision needs pairs with a `revision` (the rejected response minimally "
            "revised) that differs from `rejected`; none has one"
        )


def _revision(pair: dict[str, Any]) -> str | None:
    revision = pair.get("revision")
    return revision if isinstance(revision, str) and revision and revision != pair["rejected"] else None


def score_pairs(model, tokenizer, pairs: Sequence[dict[str, Any]], device) -> tuple[torch.Tensor, torch.Tensor]:
    """`R(x, chosen)` and `R(x, rejected)` for a batch of pairs (with gradients)."""
    prompts = [p["prompt"] for p in pairs]
    context = context_length(getattr(model, "module", model))  # a data-parallel wrapper holds the model
    enc = encode_pairs(
        tokenizer, prompts + prompts, [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs], context
    )
    scores = model(input_ids=enc.input_ids.to(device), attention_mask=enc.attention_mask.to(device)).logits.squeeze(-1)
    return scores[: len(pairs)], scores[len(pairs) :]


def score_prefixes(model, tokenizer, pairs: Sequence[dict[str, Any]], device) -> PrefixScores:
    """The prefix scores `s_1 .. s_T` of each pair's chosen, rejected and (where the pair has
    one) revision, from one forward pass (with gradients); `s_T` is the model's own score."""
    revised = [i for i, p in enumerate(pairs) if _revision(p) is not None]
    prompts = [p["prompt"] for p in pairs]
    responses = [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs] + [_revision(pairs[i]) for i in revised]
    inner = getattr(model, "module", model)  # a data-parallel wrapper holds the model
    enc = encode_pairs(
        tokenizer,
        prompts + prompts + [prompts[i] for i in revised],
        responses,
        context_length(inner),
        pad_token_id=inner.config.pad_token_id,
    )
    scores = prefix_scores(model, enc.input_ids.to(device), enc.attention_mask.to(device))
    rows = [scores[i, enc.token_ends(i)] for i in range(len(responses))]
    ids = [enc.input_ids[i, enc.response_positions[i]].tolist() for i in range(len(responses))]
    n = len(pairs)
    revision: list[torch.Tensor | None] = [None] * n
    revision_ids: list[list[int] | None] = [None] * n
    for j, i in enumerate(revised):
        revision[i], revision_ids[i] = rows[2 * n + j], ids[2 * n + j]
    return PrefixScores(rows[:n], rows[n : 2 * n], revision, ids[n : 2 * n], revision_ids)


@torch.no_grad()
def prefers_chosen(
    model, tokenizer, pairs: Sequence[dict[str, Any]], batch_size: int = 32, advance=None
) -> list[bool]:
    """Per pair, whether the model scores `chosen` above `rejected`, scored `batch_size` pairs at
    a time; `advance(n)` (a progress bar's) is called after each batch."""
    model.eval()
    device = next(model.parameters()).device
    above: list[bool] = []
    for s in range(0, len(pairs), batch_size):
        batch = pairs[s : s + batch_size]
        chosen, rejected = score_pairs(model, tokenizer, batch, device)
        above += (chosen > rejected).tolist()
        if advance is not None:
            advance(len(batch))
    return above


def pairwise_accuracy(
    model, tokenizer, pairs: Sequence[dict[str, Any]], batch_size: int = 32, against: str = "label"
) -> float:
    """Share of pairs where the model scores `chosen` above `rejected` (`against="label"`), or
    the response with the higher `chosen_score`/`rejected_score` above the other
    (`against="oracle"`, ties skipped)."""
    _check_pairs(pairs)
    if against == "oracle":
        pairs = [p for p in pairs if p["chosen_score"] != p["rejected_score"]]
    if not pairs:
        raise UserInputError("no pairs to measure accuracy on")
    above = prefers_chosen(model, tokenizer, pairs, batch_size)
    if against == "oracle":
        above = [a == (p["chosen_score"] > p["rejected_score"]) for a, p in zip(above, pairs)]
    return sum(above) / len(pairs)


def train_reward_model(
    model,
    tokenizer,
    pairs: Sequence[dict[str, Any]],
    out: str | Path,
    epochs: int = 1,
    batch_size: int = 16,
    lr: float = 1e-4,
    save_every: int = 200,
    seed: int = 0,
    resume: bool = False,
    progress: bool = True,
    gradient_accumulation: int = 1,
    group_by_length: bool = False,
    max_grad_norm: float = math.inf,
    prefix_loss: str = "none",
    prefix_weight: float = 1.0,
    lora_r: int = 0,
    lora_alpha: float = 16.0,
    lora_target_modules: str = "all-linear",
):
    """Train `model` (a scalar-head sequence-classification model) in place on `pairs` into the
    run folder `out`. Logs `{"step", "loss", "accuracy", "margin"}`; checkpoints resume exactly.
    `group_by_length` batches pairs of similar length together (less padding, as in SFT);
    `max_grad_norm` clips the gradient norm (default: no clip); `prefix_loss` / `prefix_weight`
    add a loss on the prefix scores (`tokenreward.losses.prefix_losses`). With `lora_r > 0` the
    model is trained through LoRA adapters (`tokenreward.lora`; the head in full) and returned as
    a PEFT model."""
    config = RewardModelConfig(
        data="",
        model="",
        out=Path(out),
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=lr,
        save_every=save_every,
        seed=seed,
        resume=resume,
        progress=progress,
        gradient_accumulation=gradient_accumulation,
        group_by_length=group_by_length,
        max_grad_norm=max_grad_norm,
        prefix_loss=prefix_loss,
        prefix_weight=prefix_weight,
        lora_r=lora_r,
        lora_alpha=lora_alpha,
        lora_target_modules=lora_target_modules,
    )
    return train(config, model, tokenizer, pairs)


def train(config: RewardModelConfig, model, tokenizer, pairs: Sequence[dict[str, Any]], accelerator=None, folder=None):
    _check_trainable(pairs, str(config.data or "the preference pairs"), config.prefix_loss)
    if accelerator is None:
        accelerator, folder = make_run(config)
    lengths = [len(str(p["prompt"])) + max(len(str(p["chosen"])), len(str(p["rejected"]))) for p in pairs]
    batches = step_order(
        len(pairs), config.batch_size, config.epochs, config.seed, lengths if config.group_by_length else None
    )
    model = with_adapters(model, config, "SEQ_CLS")
    training = cosine_optimization(accelerator, folder, config, model, 0, len(batches))

    prefix_loss = PREFIX_LOSSES.get(config.prefix_loss)

    def loss_fn(indices: list[int]):
        batch = [pairs[i] for i in indices]
        metrics = {}
        if config.prefix_loss == "none":
            chosen, rejected = score_pairs(training.model, tokenizer, batch, accelerator.device)
            loss = bradley_terry_loss(chosen, rejected)
        else:
            prefixes = score_prefixes(training.model, tokenizer, batch, accelerator.device)
            chosen, rejected = (
                torch.stack([row[-1] for row in rows]) for rows in (prefixes.chosen, prefixes.rejected)
            )
            extra = prefix_loss(prefixes)
            loss = bradley_terry_loss(chosen, rejected) + config.prefix_weight * extra
            metrics["prefix_loss"] = float(extra.detach())
        metrics["accuracy"] = float((chosen > rejected).float().mean())
        metrics["margin"] = float((chosen - rejected).mean().detach())
        return loss, metrics

    def train_step(step: int) -> dict[str, float]:
        metrics = training.step(step, batches[step], loss_fn)
        metrics.pop("lr")
        return metrics

    run_steps(training, len(batches), train_step, "reward model", ("loss", "accuracy"), tensorboard=False)
    return training.unwrapped.eval()


@register_trainer(
    "reward-model", RewardModelConfig, help="Bradley-Terry reward model with a scalar head on preference pairs"
)
def run(config: RewardModelConfig, name: str = "reward-model") -> Path:
    """Train, save model and tokenizer to `OUT/final`, print held-out accuracy if `--eval-data`."""
    for path in (config.data, config.eval_data):
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"pairs file {path} does not exist")
    accelerator, folder = make_run(config)
    if folder.finished:
        return folder.out / "final"
    tokenizer = load_tokenizer(config.tokenizer or config.model)
    torch.manual_seed(derive_seed(config.seed, "head"))  # the scalar head's initialisation
    model = reward_model_from(config.model, tokenizer)
    pairs = prompts_as_chat(read_jsonl(config.data, "--data"), config.chat_template)
    model = train(config, model, tokenizer, pairs, accelerator, folder)
    final = folder.finish(model, tokenizer)
    if config.eval_data and accelerator.is_main_process:
        accuracy = pairwise_accuracy(
            model, tokenizer, prompts_as_chat(read_jsonl(config.eval_data), config.chat_template)
        )
        print(f"held-out pairwise accuracy: {accuracy:.3f}")
    return final
