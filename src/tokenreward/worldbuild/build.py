"""Build a world: data, tokenizer, SFT policy, reward model, measurements, README.md.

Stages run in order and each is recorded in `build-state.json` when it finishes; the two
training stages checkpoint as they go (under `work/`), so a killed build continues where it
stopped. `world.json` (config + measurements + the size and SHA-256 of every file) is
written last: its presence marks a complete world. A lock file guards the folder against a
second build; building into a finished world checks its size, seed and files first.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path
from typing import Any

from tokenreward.errors import UserInputError
from tokenreward.io import FolderLock, atomic_write, read_json_file
from tokenreward.jsonl import read_jsonl, write_jsonl
from tokenreward.progress import progress_bar
from tokenreward.trainers.checkpoints import seed_everything
from tokenreward.world import BUILD_STATE, MANIFEST, SPLITS, STANDARD_FOLDERS, World, default_world_path
from tokenreward.world import generate as gen
from tokenreward.world.families import DEFAULT_FAMILIES, check_families, family
from tokenreward.world.integrity import backbone_phrase, check_finished, file_digests
from tokenreward.world.readme import render_readme
from tokenreward.world.records import (
    LABEL_TEMPERATURE,
    SFT_GOOD_SHARE,
    label_pair,
    response_record,
    sft_examples,
    split_prompts,
    stepwise_records,
)
from tokenreward.world.sizes import SIZES, WorldSize
from tokenreward.worldbuild.backbone import backbone_name, build_backbone_reward_model, check_backbone
from tokenreward.worldbuild.measure import measure, sample_responses, world_tokenizer

CONTEXT = 256


STAGES = ("data", "tokenizer", "policy", "policy_pairs", "reward_model", "measure")


def _state(root: Path) -> dict[str, Any]:
    path = root / BUILD_STATE
    return read_json_file(path, f"delete {root} and build it again") if path.is_file() else {}


def _save_state(root: Path, state: dict[str, Any]) -> None:
    tmp = root / (BUILD_STATE + ".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(root / BUILD_STATE)


# ---------------------------------------------------------------- data


def build_data(root: Path, size: WorldSize, seed: int, progress: bool) -> dict[str, Any]:
    rng = random.Random(seed)
    prompts = gen.make_prompts(rng, size.per_family, size.families)
    splits = split_prompts(prompts, size.test_share, rng)
    data = root / "data"
    stats: dict[str, Any] = {"prompts": {s: len(p) for s, p in splits.items()}}
    agree = total = 0
    with progress_bar(len(prompts), "world data", enabled=progress) as advance:
        for split in SPLITS:
            responses, pairs = [], []
            per_prompt = size.reward_pairs_per_prompt if split == "reward" else size.pairs_per_prompt
            for prompt in splits[split]:
                for _ in range(per_prompt):
                    first, second = (
                        response_record(prompt, gen.respond(rng, prompt, gen.sample_kinds(rng, prompt["family"])))
                        for _ in range(2)
                    )
                    responses += [first, second]
                    pair = label_pair(rng, prompt, first, second)
                    pairs.append(pair)
                    if pair["chosen_score"] != pair["rejected_score"]:
                        total += 1
                        agree += pair["chosen_score"] > pair["rejected_score"]
                advance()
            write_jsonl(data / f"prompts.{split}.jsonl", splits[split])
            write_jsonl(data / f"responses.{split}.jsonl", responses)
            write_jsonl(data / f"pairs.{split}.jsonl", pairs)
            if any(family(name).has_steps for name in size.families):
                write_jsonl(data / f"steps.{split}.jsonl", stepwise_records(splits[split], responses))
    write_jsonl(data / "sft.jsonl", sft_examples(rng, splits["sft"], size.sft_responses))
    stats["label_oracle_agreement"] = agree / max(total, 1)
    stats["label_pairs_untied"] = total
    return stats


# ---------------------------------------------------------------- models


def world_corpus(root: Path) -> list[str]:
    texts = [r["prompt"] + r["completion"] for r in read_jsonl(root / "data" / "sft.jsonl")]
    for split in SPLITS:
        texts += [r["prompt"] + r["response"] for r in read_jsonl(root / "data" / f"responses.{split}.jsonl")]
    return texts


def build_tokenizer(root: Path, size: WorldSize, seed: int, progress: bool) -> dict[str, Any]:
    from tokenreward.bpe import train_tokenizer

    tokenizer = train_tokenizer(world_corpus(root), vocab_size=size.vocab_size)
    tokenizer.model_max_length = CONTEXT
    tokenizer.save_pretrained(root / STANDARD_FOLDERS["tokenizer"])
    return {"vocab_size": len(tokenizer)}


def policy_config(size: WorldSize, tokenizer):
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=CONTEXT,
        n_embd=size.n_embd,
        n_layer=size.n_layer,
        n_head=size.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        activation_function="gelu_pytorch_tanh",  # GPT-2's tanh GELU as one fused kernel (same values, faster)
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_policy(root: Path, size: WorldSize, seed: int, progress: bool) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM

    from tokenreward.trainers.sft import train_sft

    tokenizer = world_tokenizer(root)
    seed_everything(seed)
    model = AutoModelForCausalLM.from_config(policy_config(size, tokenizer))
    work = root / "work" / "policy"
    model = train_sft(
        model,
        tokenizer,
        read_jsonl(root / "data" / "sft.jsonl"),
        work,
        epochs=size.sft_epochs,
        batch_size=size.batch_size,
        lr=size.sft_lr,
        warmup_steps=20,
        max_length=CONTEXT,
        save_every=100,
        seed=seed,
        resume=True,
        progress=progress,
        max_grad_norm=size.max_grad_norm,
    )
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    _save_model(model, tokenizer, root / STANDARD_FOLDERS["policy"])
    final_loss = read_jsonl(work / "log.jsonl")[-1]["loss"]
    return {"policy_parameters": sum(p.numel() for p in model.parameters()), "sft_final_loss": final_loss}


def build_policy_pairs(root: Path, size: WorldSize, seed: int, progress: bool) -> dict[str, Any]:
    """Pairs of the SFT policy's own samples (temperature 1) on the reward prompts
    (`policy_pairs_per_prompt` each) and the test prompts (`pairs_per_prompt` each, for
    measuring), graded by the oracle and labelled by the same simulated labellers as the data pairs.

    InstructGPT's comparisons were of its SFT model's outputs: a reward model trained only on
    the templated responses barely ranks what the policy actually writes (Pearson r 0.06 with
    the oracle on SFT samples, docs/world.md), which is what RL asks it to judge. Pairs with a
    blank response (nothing a reward model can read) are left out and counted. Written to
    `data/policy_pairs.{reward,test}.jsonl`, TRL's `prompt`/`chosen`/`rejected` plus oracle
    scores and credit spans (no revision)."""
    from tokenreward.models import load_causal_lm

    tokenizer = world_tokenizer(root)
    policy = load_causal_lm(root / STANDARD_FOLDERS["policy"]).eval()
    rng = random.Random(seed + 1)
    stats: dict[str, Any] = {}
    for split, per_prompt in (("reward", size.policy_pairs_per_prompt), ("test", size.pairs_per_prompt)):
        prompts = [p for p in read_jsonl(root / "data" / f"prompts.{split}.jsonl") for _ in range(2 * per_prompt)]
        texts = sample_responses(
            policy,
            tokenizer,
            [p["prompt"] for p in prompts],
            greedy=False,
            seed=seed,
            progress=progress,
            label=f"policy samples ({split})",
        )
        pairs, blank = [], 0
        for i in range(0, len(prompts), 2):
            if not (texts[i].strip() and texts[i + 1].strip()):
                blank += 1
                continue
            prompt = prompts[i]
            first, second = (response_record(prompt, gen.Response(text, ["policy"], [])) for text in texts[i : i + 2])
            pairs.append(label_pair(rng, prompt, first, second, with_revision=False))
        write_jsonl(root / "data" / f"policy_pairs.{split}.jsonl", pairs)
        stats[f"policy_pairs_{split}"] = len(pairs)
        stats[f"policy_pairs_{split}_blank_left_out"] = blank
    return stats


def train_world_reward_model(
    root: Path,
    size: WorldSize,
    seed: int,
    progress: bool,
    out: Path,
    prefix_loss: str = "none",
    prefix_weight: float = 1.0,
):
    """The world's reward-model recipe into the run folder `out` (resumed from its checkpoints):
    the SFT policy with a scalar head, on the data pairs and the policy's sample pairs shuffled by
    `seed`, `size`'s epochs, batch and learning rate, batches grouped by length, the gradient clip;
    `prefix_loss` / `prefix_weight` as `train_reward_model`'s. Returns `(model, tokenizer, pairs)`."""
    from tokenreward.trainers.reward_model import reward_model_from, train_reward_model

    tokenizer = world_tokenizer(root)
    seed_everything(seed)
    model = reward_model_from(root / STANDARD_FOLDERS["policy"], tokenizer)
    pairs = read_jsonl(root / "data" / "pairs.reward.jsonl") + read_jsonl(root / "data" / "policy_pairs.reward.jsonl")
    random.Random(seed).shuffle(pairs)
    model = train_reward_model(
        model,
        tokenizer,
        pairs,
        out,
        epochs=size.rm_epochs,
        batch_size=size.batch_size,
        lr=size.rm_lr,
        save_every=100,
        seed=seed,
        resume=True,
        progress=progress,
        group_by_length=True,
        max_grad_norm=size.max_grad_norm,
        prefix_loss=prefix_loss,
        prefix_weight=prefix_weight,
    )
    return model, tokenizer, pairs


def build_reward_model(root: Path, size: WorldSize, seed: int, progress: bool) -> dict[str, Any]:
    model, tokenizer, pairs = train_world_reward_model(root, size, seed, progress, root / "work" / "reward-model")
    _save_model(model, tokenizer, root / STANDARD_FOLDERS["reward_model"])
    return {"reward_model_parameters": sum(p.numel() for p in model.parameters()), "reward_model_pairs": len(pairs)}


def _save_model(model, tokenizer, folder: Path) -> None:
    """Save to a temporary folder and rename, so a half-written model is never taken as done."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.replace(folder)


STAGE_FUNCTIONS: dict[str, Callable[[Path, WorldSize, int, bool], dict[str, Any]]] = {
    "data": build_data,
    "tokenizer": build_tokenizer,
    "policy": build_policy,
    "policy_pairs": build_policy_pairs,
    "reward_model": build_reward_model,
    "measure": measure,
}


def build_world(
    out: str | Path | None = None,
    size: str = "small",
    seed: int = 0,
    progress: bool = True,
    on_stage: Callable[[str], None] | None = None,
    families: tuple[str, ...] | list[str] = DEFAULT_FAMILIES,
    reward_backbone: str | Path | None = None,
) -> World:
    """Build (or finish building) the world of `size` ("small" or "full") under `out`
    (default: the cache directory) and return it. Deterministic under `seed`. `on_stage(name)`
    is called as each stage that still has to run begins. `families` (registered names of
    `tokenreward.world.families`, in the order their prompts are drawn) are the world's tasks.
    `reward_backbone` (a causal LM folder or GGUF file) makes the reward model that backbone,
    LoRA-trained with its own tokenizer (`tokenreward.worldbuild.backbone`); its name is part of
    the world's identity and of the default folder (`world-SIZE-NAME`).

    The folder is locked for the build (a second build into it is refused, naming the
    first); a finished world is checked against `size`, `seed`, `families`, the backbone and
    its recorded files."""
    if size not in SIZES:
        raise UserInputError(f"unknown world size {size!r}; choose one of {', '.join(SIZES)}")
    world_size = replace(SIZES[size], families=check_families(families))
    backbone = None if reward_backbone is None else backbone_name(reward_backbone)
    if reward_backbone is not None:
        check_backbone(reward_backbone)
    root = Path(out) if out is not None else default_world_path(size, backbone)
    with FolderLock(root, "tokenreward world build"):
        if (root / MANIFEST).is_file():
            check_finished(root, size, seed, world_size.families, backbone)
            return World(root)
        return _build(root, size, world_size, seed, progress, on_stage, reward_backbone)


def _build(
    root: Path,
    size: str,
    world_size: WorldSize,
    seed: int,
    progress: bool,
    on_stage: Callable[[str], None] | None = None,
    reward_backbone: str | Path | None = None,
) -> World:
    state = _state(root)
    families = list(world_size.families)
    backbone = None if reward_backbone is None else backbone_name(reward_backbone)
    identity = (state.get("size"), state.get("seed"), state.get("families", list(DEFAULT_FAMILIES)))
    if state and identity != (size, seed, families):
        raise UserInputError(
            f"{root} holds a partial world of size {state.get('size')!r} and seed {state.get('seed')!r} (families "
            f"{', '.join(state.get('families', DEFAULT_FAMILIES))}); finish that one, or delete the folder to build "
            f"size {size!r} seed {seed} (families {', '.join(families)})"
        )
    if state and state.get("reward_backbone") != backbone:
        raise UserInputError(
            f"{root} holds a partial world with {backbone_phrase(state.get('reward_backbone'))}, not "
            f"{backbone_phrase(backbone)}; finish that one, or delete the folder to build this one"
        )
    state = state or {"size": size, "seed": seed, "families": families, "done": [], "metrics": {}}
    if backbone is not None:
        state["reward_backbone"] = backbone
    _save_state(root, state)
    stages = dict(STAGE_FUNCTIONS)
    if reward_backbone is not None:
        stages["reward_model"] = partial(build_backbone_reward_model, backbone=reward_backbone, save=_save_model)
    for stage in STAGES:
        if stage in state["done"]:
            continue
        if on_stage is not None:
            on_stage(stage)
        started = time.perf_counter()
        state["metrics"].update(stages[stage](root, world_size, seed, progress))
        state.setdefault("seconds", {})[stage] = round(time.perf_counter() - started, 1)
        state["done"].append(stage)
        _save_state(root, state)
    manifest = {
        "size": size,
        "seed": seed,
        "sizes": asdict(world_size),
        "label_temperature": LABEL_TEMPERATURE,
        "sft_good_share": SFT_GOOD_SHARE,
        "metrics": state["metrics"],
        "stage_seconds": state.get("seconds", {}),
    }
    if backbone is not None:
        manifest["reward_backbone"] = backbone
    (root / "README.md").write_text(render_readme(manifest))
    shutil.rmtree(root / "work", ignore_errors=True)
    manifest["files"] = file_digests(root)
    with atomic_write(root / MANIFEST) as handle:
        handle.write(json.dumps(manifest, indent=1))
    return World(root)
