"""A world whose reward model starts from a pretrained causal LM (`world build --reward-backbone`).

The reward model is the backbone with a new scalar head, read with the backbone's OWN tokenizer
(so rewarders such as RED score the backbone's tokens and their rewards are carried onto the
policy's tokens by character offsets, as for a real reward model), trained with the
Bradley-Terry loss through LoRA adapters on every linear layer of every block (`tokenreward.lora`,
the head trained in full), with the `revision` prefix loss on the data pairs' minimal revisions
(`tokenreward.losses.prefix_losses`; with it the held-out accuracy rose, docs/world.md), and
saved merged: a plain sequence-classification folder with the backbone's
tokenizer. The policy stays the world's small GPT-2.

A pretrained backbone costs far more per pair than the world's GPT-2, so it trains on a seeded
subsample of the reward pairs (`subsample_pairs`); `RECIPE` is the recipe, recorded in
`world.json` (`reward_backbone`) with the backbone's name and parameter count.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tokenreward.errors import UserInputError
from tokenreward.jsonl import read_jsonl
from tokenreward.world import STANDARD_FOLDERS
from tokenreward.world.sizes import WorldSize

SUBSAMPLE_RULE = (
    "the first `data_pairs` of data/pairs.reward.jsonl shuffled by random.Random(seed) and the first "
    "`policy_pairs` of data/policy_pairs.reward.jsonl shuffled by random.Random(seed + 1) (all of a file "
    "when it has fewer), joined and shuffled by random.Random(seed)"
)


@dataclass(frozen=True)
class BackboneRecipe:
    """How the backbone reward model trains (one recipe for every world size)."""

    data_pairs: int  # data pairs drawn from data/pairs.reward.jsonl
    policy_pairs: int  # pairs of the policy's own samples drawn from data/policy_pairs.reward.jsonl
    epochs: int
    batch_size: int
    lr: float  # AdamW, cosine decay, adapters and head alike
    lora_r: int
    lora_alpha: float
    lora_target_modules: str = "all-linear"
    prefix_loss: str = "revision"  # `train reward-model --prefix-loss`: the data pairs carry their revision
    prefix_weight: float = 1.0


RECIPE = BackboneRecipe(data_pairs=800, policy_pairs=400, epochs=1, batch_size=8, lr=5e-4, lora_r=16, lora_alpha=32.0)


def backbone_name(path: str | Path) -> str:
    """The backbone's name in the world's identity: its file or folder name, without `.gguf`."""
    name = Path(path).expanduser().resolve().name
    return name[: -len(".gguf")] if name.lower().endswith(".gguf") else name


def backbone_tokenizer(folder: str | Path):
    """The backbone's own tokenizer, with its EOS token as the pad token when it has none (so
    batches pad and the head finds the last real token)."""
    from tokenreward.models import load_tokenizer

    tokenizer = load_tokenizer(folder)
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise UserInputError(f"--reward-backbone {folder}: its tokenizer has neither a pad nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def check_backbone(path: str | Path) -> Path:
    """The Hugging Face folder of the backbone at `path` (a GGUF file is converted once,
    `tokenreward.gguf`), checked to hold a tokenizer and a causal LM that takes a score head;
    else a one-line error naming `--reward-backbone`."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING

    from tokenreward.gguf import resolve_model_source

    if not Path(path).expanduser().exists():
        raise FileNotFoundError(f"--reward-backbone {path}: no such file or folder")
    try:
        folder = Path(resolve_model_source(Path(path).expanduser()))
        config = AutoConfig.from_pretrained(str(folder))
        backbone_tokenizer(folder)
    except (OSError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserInputError(f"--reward-backbone {path}: cannot load it as a causal LM ({reason})") from None
    if type(config) not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING:
        raise UserInputError(
            f"--reward-backbone {path}: transformers has no sequence-classification model for its type "
            f"{config.model_type!r}"
        )
    return folder


def subsample_pairs(root: Path, seed: int, recipe: BackboneRecipe) -> tuple[list[dict], dict[str, Any]]:
    """The reward pairs the backbone trains on (`SUBSAMPLE_RULE`) and the record of the draw."""
    data = read_jsonl(root / "data" / "pairs.reward.jsonl")
    policy = read_jsonl(root / "data" / "policy_pairs.reward.jsonl")
    drawn_data, drawn_policy = list(data), list(policy)
    random.Random(seed).shuffle(drawn_data)
    random.Random(seed + 1).shuffle(drawn_policy)
    pairs = drawn_data[: recipe.data_pairs] + drawn_policy[: recipe.policy_pairs]
    random.Random(seed).shuffle(pairs)
    record = {
        "rule": SUBSAMPLE_RULE,
        "seed": seed,
        "data_pairs": min(recipe.data_pairs, len(data)),
        "data_pairs_available": len(data),
        "policy_pairs": min(recipe.policy_pairs, len(policy)),
        "policy_pairs_available": len(policy),
    }
    return pairs, record


def train_backbone_reward_model(
    root: Path,
    size: WorldSize,
    seed: int,
    progress: bool,
    backbone: str | Path,
    out: Path,
    prefix_loss: str | None = None,
    prefix_weight: float | None = None,
):
    """`RECIPE` on the backbone into the run folder `out` (resumed from its checkpoints): LoRA
    Bradley-Terry training on the subsampled pairs, with the recipe's prefix loss unless
    `prefix_loss` / `prefix_weight` (as `train_reward_model`'s) say otherwise. Returns `(model with its adapters, tokenizer, pairs, draw record,
    the backbone's parameter count)`."""
    from tokenreward.trainers.checkpoints import seed_everything
    from tokenreward.trainers.reward_model import reward_model_from, train_reward_model

    recipe = RECIPE
    folder = check_backbone(backbone)
    tokenizer = backbone_tokenizer(folder)
    seed_everything(seed)
    model = reward_model_from(folder, tokenizer)
    backbone_parameters = model.base_model.num_parameters()
    pairs, drawn = subsample_pairs(root, seed, recipe)
    model = train_reward_model(
        model,
        tokenizer,
        pairs,
        out,
        epochs=recipe.epochs,
        batch_size=recipe.batch_size,
        lr=recipe.lr,
        save_every=20,
        seed=seed,
        resume=True,
        progress=progress,
        group_by_length=True,
        max_grad_norm=size.max_grad_norm,
        lora_r=recipe.lora_r,
        lora_alpha=recipe.lora_alpha,
        lora_target_modules=recipe.lora_target_modules,
        prefix_loss=recipe.prefix_loss if prefix_loss is None else prefix_loss,
        prefix_weight=recipe.prefix_weight if prefix_weight is None else prefix_weight,
    )
    return model, tokenizer, pairs, drawn, backbone_parameters


def build_backbone_reward_model(
    root: Path, size: WorldSize, seed: int, progress: bool, backbone: str | Path, save: Callable[..., None]
) -> dict[str, Any]:
    """The `reward_model` stage of a backbone world: `train_backbone_reward_model` (checkpoints
    under `work/reward-model`), merged and handed to `save(model, tokenizer, folder)` with its
    tokenizer."""
    model, tokenizer, pairs, drawn, backbone_parameters = train_backbone_reward_model(
        root, size, seed, progress, backbone, root / "work" / "reward-model"
    )
    model = model.merge_and_unload()
    save(model, tokenizer, root / STANDARD_FOLDERS["reward_model"])
    return {
        "reward_model_parameters": sum(p.numel() for p in model.parameters()),
        "reward_model_pairs": len(pairs),
        "reward_backbone": {
            "name": backbone_name(backbone),
            "parameters": backbone_parameters,
            "model_type": model.config.model_type,
            "vocab_size": len(tokenizer),
            "pairs": drawn,
            "training": {**asdict(RECIPE), "max_grad_norm": size.max_grad_norm, "group_by_length": True},
        },
    }
