"""`tokenreward train ppo_synthetic`: TLCR's control "is it just the extra data?" (Section 5).

A Bradley-Terry reward model is trained on (revision > rejected) pairs, the revisions that
also make the TLCR labels, then sequence-level PPO runs with the `sparse` rewarder on it
(`tokenreward.trainers.ppo`). The reward model starts from the world's SFT policy and follows
the world's own reward-model recipe (epochs, learning rate, batch size of its size) unless
`--rm-*` says otherwise, so the only difference from `ppo-sparse` is the data it learns from.
Pairs whose revision equals the rejected response (nothing to fix) are left out: they carry
no preference. The reward model is written to `OUT/synthetic-reward-model/final` with its
held-out pairwise accuracy in `eval.json` (on the world's test pairs, against the labels
and against the oracle), and reused when the run is resumed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tokenreward.errors import UserInputError
from tokenreward.labels import read_labels
from tokenreward.models import load_tokenizer
from tokenreward.trainers import register_trainer
from tokenreward.trainers.harness import derive_seed
from tokenreward.trainers.ppo import PPOConfig
from tokenreward.trainers.ppo import run as run_ppo
from tokenreward.trainers.run_folder import refuse_started

REWARD_MODEL = "synthetic-reward-model"


@dataclass(kw_only=True)
class PPOSyntheticConfig(PPOConfig):
    """PPO (sparse rewarder) on a reward model trained on (revision > rejected) pairs."""

    labels: Path | None = field(
        default=None,
        metadata={
            "help": "revisions from a `tokenreward label` output (default: the world's pairs and their oracle revisions)"
        },
    )
    split: str = field(default="reward", metadata={"help": "without --labels: the world's pair split"})
    rm_epochs: int | None = field(
        default=None, metadata={"help": "reward-model epochs (default: the world's recipe)", "min": 1}
    )
    rm_learning_rate: float | None = field(
        default=None, metadata={"help": "reward-model learning rate (default: the world's recipe)", "gt": 0.0}
    )
    rm_batch_size: int | None = field(
        default=None, metadata={"help": "reward-model pairs per step (default: the world's recipe)", "min": 1}
    )


def synthetic_pairs(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """TRL pairs with the revision as `chosen`; pairs with nothing revised are dropped."""
    return [
        {"prompt": r["prompt"], "chosen": r["revision"], "rejected": r["rejected"]}
        for r in records
        if r["revision"] != r["rejected"]
    ]


def world_recipe(world) -> dict[str, Any]:
    """Epochs, learning rate and batch size the world trained its own reward model with."""
    from tokenreward.world.sizes import SIZES

    size = world.config.get("size")
    if size not in SIZES:
        return {}
    recipe = SIZES[size]
    return {"epochs": recipe.rm_epochs, "lr": recipe.rm_lr, "batch_size": recipe.batch_size}


def train_synthetic_reward_model(config: PPOSyntheticConfig, world, folder: Path) -> Path:
    """Train (or resume, or reuse) the reward model in `folder`; returns `folder/final`."""
    from tokenreward.trainers.reward_model import pairwise_accuracy, reward_model_from, train_reward_model

    final = folder / "final"
    if final.is_dir():
        return final
    records = read_labels(config.labels) if config.labels is not None else world.pairs(config.split)
    pairs = synthetic_pairs(records)
    if not pairs:
        raise UserInputError("ppo_synthetic: no pair has a revision that differs from its rejected response")
    recipe = world_recipe(world)
    settings = {
        "epochs": config.rm_epochs or recipe.get("epochs"),
        "lr": config.rm_learning_rate or recipe.get("lr"),
        "batch_size": config.rm_batch_size or recipe.get("batch_size"),
    }
    missing = [k for k, v in settings.items() if v is None]
    if missing:
        flags = ", ".join("--rm-" + {"lr": "learning-rate"}.get(k, k).replace("_", "-") for k in missing)
        raise UserInputError(f"ppo_synthetic: the world has no known size, so no reward-model recipe; pass {flags}")
    tokenizer = load_tokenizer(str(world.tokenizer_dir))
    torch.manual_seed(derive_seed(config.seed, "head"))  # the scalar head's initialisation
    model = reward_model_from(world.policy_dir, tokenizer)
    model = train_reward_model(
        model,
        tokenizer,
        pairs,
        folder,
        save_every=100,
        seed=config.seed,
        resume=True,
        progress=config.progress,
        gradient_accumulation=config.gradient_accumulation,
        **settings,
    )
    from accelerate import PartialState

    state = PartialState()
    if state.is_main_process:  # one process measures and saves; the others wait for the folder
        held_out = world.pairs("test")
        metrics = {
            "train_pairs": len(pairs),
            "dropped_unrevised_pairs": len(records) - len(pairs),
            **settings,
            "test_accuracy_labels": pairwise_accuracy(model, tokenizer, held_out),
            "test_accuracy_oracle": pairwise_accuracy(model, tokenizer, held_out, against="oracle"),
        }
        tmp = folder / ".final.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (folder / "eval.json").write_text(json.dumps(metrics, indent=2) + "\n")
        os.replace(tmp, final)
    state.wait_for_everyone()
    return final


@register_trainer(
    "ppo_synthetic",
    PPOSyntheticConfig,
    help="PPO_synthetic: sparse PPO on a reward model trained on (revision > rejected) pairs",
)
def run(config: PPOSyntheticConfig, name: str = "ppo_synthetic") -> Path:
    from tokenreward.world import open_world

    own = Path(config.out) / REWARD_MODEL / "final"  # what its run records (`--resume` alone reads it back)
    if config.rewarder != "sparse" or config.reward_model not in (None, own):
        raise UserInputError(
            "ppo_synthetic trains its own reward model and uses the sparse rewarder; drop --rewarder / --reward-model"
        )
    refuse_started(Path(config.out), config.resume)
    world = open_world(config.world)
    reward_model = train_synthetic_reward_model(config, world, Path(config.out) / REWARD_MODEL)
    ppo_fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(PPOConfig)}
    return run_ppo(PPOConfig(**{**ppo_fields, "reward_model": reward_model}), "ppo")
