"""Segment reward model (Yin et al. 2025): a scalar head trained with Bradley-Terry on ordinary
preference pairs, each response scored by the mean of its segment rewards.

`R(x, y) = (1/K) sum_k s(x, y_<=end_k)`, the segments cut where the reference model's
next-token entropy exceeds `--entropy-threshold` (`tokenreward.rewarders.segment`); loss
`-log sigma(R(x, y_w) - R(x, y_l))`, averaged over pairs. The reference (default: `--model`, the
SFT model the reward model starts from, as in the authors' training) is frozen. After training,
the location-aware normaliser is fitted on the segment rewards of the chosen and rejected
responses of `--normaliser-pairs` training pairs and written with the threshold to
`OUT/final/segment_rewards.json`, where the `segment` rewarder reads both. Resumable.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from tokenreward.encoding import encode_pairs, prompts_as_chat
from tokenreward.errors import UserInputError
from tokenreward.io import write_atomic
from tokenreward.jsonl import read_jsonl
from tokenreward.logprobs import unwrap
from tokenreward.lora import write_final
from tokenreward.models import context_length, load_causal_lm, load_tokenizer
from tokenreward.rewarders._location_normaliser import LocationNormaliser, fit_location_normaliser
from tokenreward.rewarders.segment import DEFAULT_THRESHOLD, SEGMENT_FILE, segments_of, sequence_score
from tokenreward.trainers import register_trainer
from tokenreward.trainers.harness import (
    cosine_optimization,
    derive_seed,
    make_run,
    permutation,
    with_adapters,
)
from tokenreward.trainers.loading import frozen_loading
from tokenreward.trainers.loop import run_steps
from tokenreward.trainers.reward_model import (
    RewardModelConfig,
    _check_pairs,
    _check_trainable,
    bradley_terry_loss,
    reward_model_from,
)
from tokenreward.trainers.run_folder import check_finite_parameters
from tokenreward.trainers.sft import step_order

#: the authors fitted their normalisers on the responses of 60,000 training pairs
DEFAULT_NORMALISER_PAIRS = 60000


@dataclass(kw_only=True)
class SegmentRewardModelConfig(RewardModelConfig):
    """`tokenreward train segment-reward-model`: Bradley-Terry on the mean of entropy-cut segment rewards."""

    frozen_models: ClassVar[tuple[str, ...]] = ("reference",)

    out: Path = field(
        default=Path("runs/segment-reward-model"),
        metadata={"help": "output folder (run.json, log.jsonl, checkpoints, final/ with segment_rewards.json)"},
    )
    reference: str | None = field(
        default=None,
        metadata={"help": "causal LM whose next-token entropy cuts the segments (default: --model); same tokenizer"},
    )
    entropy_threshold: float = field(
        default=DEFAULT_THRESHOLD,
        metadata={"help": "a segment ends after a token whose next-token entropy (nats) exceeds this", "min": 0.0},
    )
    normaliser_pairs: int = field(
        default=DEFAULT_NORMALISER_PAIRS,
        metadata={"help": "fit the location normaliser on this many training pairs' responses (0: none)", "min": 0},
    )


def segment_pair_scores(
    model, reference, tokenizer, pairs: Sequence[dict[str, Any]], threshold: float
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """`R(x, chosen)`, `R(x, rejected)` (with gradients) and every response's segment count."""
    prompts = [p["prompt"] for p in pairs]
    responses = [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs]
    enc = encode_pairs(tokenizer, prompts + prompts, responses, context_length(unwrap(model)))
    segments = segments_of(model, reference, enc, threshold)
    scores = torch.stack([sequence_score(values) for _, values in segments])
    return scores[: len(pairs)], scores[len(pairs) :], [len(ends) for ends, _ in segments]


@torch.no_grad()
def segment_rewards_of(
    model, reference, tokenizer, prompts: Sequence, responses: Sequence, threshold: float, batch_size: int = 16
) -> list[list[float]]:
    """The raw segment rewards `r_k` of every response (what the normaliser is fitted on)."""
    rewards = []
    for s in range(0, len(responses), batch_size):
        enc = encode_pairs(
            tokenizer, prompts[s : s + batch_size], responses[s : s + batch_size], context_length(unwrap(model))
        )
        rewards += [values.tolist() for _, values in segments_of(model, reference, enc, threshold)]
    return rewards


@torch.no_grad()
def segment_accuracy(model, reference, tokenizer, pairs, threshold: float, batch_size: int = 16) -> float:
    """Share of pairs whose chosen response the segment score `R` ranks above the rejected one."""
    _check_pairs(pairs)
    if not pairs:
        raise UserInputError("no pairs to measure accuracy on")
    right = 0
    for s in range(0, len(pairs), batch_size):
        chosen, rejected, _ = segment_pair_scores(model, reference, tokenizer, pairs[s : s + batch_size], threshold)
        right += int((chosen > rejected).sum())
    return right / len(pairs)


def fit_normaliser(model, reference, tokenizer, pairs, threshold: float, count: int, seed: int, batch_size: int = 16):
    """The location normaliser fitted on the chosen and rejected responses of `count` pairs drawn
    by a seeded shuffle (all pairs when fewer)."""
    chosen = [pairs[i] for i in permutation(len(pairs), seed, "normaliser")[:count]]
    prompts = [p["prompt"] for p in chosen] * 2
    responses = [p["chosen"] for p in chosen] + [p["rejected"] for p in chosen]
    return fit_location_normaliser(
        segment_rewards_of(model, reference, tokenizer, prompts, responses, threshold, batch_size)
    )


def train(config: SegmentRewardModelConfig, model, reference, tokenizer, pairs, accelerator=None, folder=None):
    """Train `model` (a scalar-head model) in place on `pairs` into the run folder; logs
    `{"step", "loss", "accuracy", "margin", "segments"}` (mean segments per response)."""
    _check_trainable(pairs, str(config.data or "the preference pairs"))
    if accelerator is None:
        accelerator, folder = make_run(config)
    reference = reference.to(accelerator.device).eval().requires_grad_(False)
    lengths = [len(str(p["prompt"])) + max(len(str(p["chosen"])), len(str(p["rejected"]))) for p in pairs]
    batches = step_order(
        len(pairs), config.batch_size, config.epochs, config.seed, lengths if config.group_by_length else None
    )
    training = cosine_optimization(
        accelerator, folder, config, with_adapters(model, config, "SEQ_CLS"), 0, len(batches)
    )

    def loss_fn(indices: list[int]):
        batch = [pairs[i] for i in indices]
        chosen, rejected, counts = segment_pair_scores(
            training.model, reference, tokenizer, batch, config.entropy_threshold
        )
        return bradley_terry_loss(chosen, rejected), {
            "accuracy": float((chosen > rejected).float().mean()),
            "margin": float((chosen - rejected).mean().detach()),
            "segments": sum(counts) / len(counts),
        }

    def train_step(step: int) -> dict[str, float]:
        return {k: v for k, v in training.step(step, batches[step], loss_fn).items() if k != "lr"}

    run_steps(training, len(batches), train_step, "segment reward model", ("loss", "segments"), tensorboard=False)
    return training.unwrapped.eval()


def save_final(folder, config: SegmentRewardModelConfig, model, tokenizer, normaliser: LocationNormaliser | None):
    """`OUT/final`: the model and tokenizer (as `RunFolder.finish` writes them) and `segment_rewards.json`."""
    import json

    check_finite_parameters(model, folder.out)
    settings = {
        "entropy_threshold": config.entropy_threshold,
        "normaliser": None if normaliser is None else normaliser.to_json(),
    }

    def save(tmp: Path) -> None:
        write_final(model, tokenizer, tmp, config.merge)
        write_atomic(tmp / SEGMENT_FILE, json.dumps(settings, indent=2) + "\n")

    return folder.save_final(save)


@register_trainer(
    "segment-reward-model",
    SegmentRewardModelConfig,
    help="segment reward model: Bradley-Terry on the mean of entropy-cut segment rewards, and its normaliser",
)
def run(config: SegmentRewardModelConfig, name: str = "segment-reward-model") -> Path:
    """Train, fit the normaliser, save to `OUT/final`; print held-out accuracy if `--eval-data`."""
    pairs = prompts_as_chat(read_jsonl(config.data, "--data"), config.chat_template)
    _check_trainable(pairs, str(config.data))
    held_out = None
    if config.eval_data is not None:  # read and checked before anything is trained
        held_out = prompts_as_chat(read_jsonl(config.eval_data, "--eval-data"), config.chat_template)
        _check_pairs(held_out, config.eval_data)
        if not held_out:
            raise UserInputError(f"--eval-data {config.eval_data}: no preference pairs")
    accelerator, folder = make_run(config)
    if folder.finished:
        return folder.out / "final"
    tokenizer = load_tokenizer(config.tokenizer or config.model)
    torch.manual_seed(derive_seed(config.seed, "head"))
    model = reward_model_from(config.model, tokenizer)
    reference = load_causal_lm(config.reference or config.model, loading=frozen_loading(config, accelerator))
    model = train(config, model, reference, tokenizer, pairs, accelerator, folder)
    normaliser = None
    if config.normaliser_pairs and accelerator.is_main_process:
        try:
            normaliser = fit_normaliser(
                model, reference, tokenizer, pairs, config.entropy_threshold, config.normaliser_pairs, config.seed
            )
        except ValueError as err:
            print(f"tokenreward: no location normaliser fitted: {err}", file=sys.stderr)
    final = save_final(folder, config, model, tokenizer, normaliser)
    folder.mark_done()
    if held_out is not None and accelerator.is_main_process:
        accuracy = segment_accuracy(model, reference, tokenizer, held_out, config.entropy_threshold)
        print(f"held-out pairwise accuracy: {accuracy:.3f}")
    return final
