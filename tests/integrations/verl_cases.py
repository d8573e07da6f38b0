"""Shared cases for the verl tests: tiny models, a verl DataProto, verl's own composed config, and
the expected rows computed from tokenreward's rewarder directly. Imported only after
`pytest.importorskip("verl")`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import torch
import verl
from hydra import compose, initialize_config_dir
from tensordict import TensorDict
from verl import DataProto
from verl.experimental.reward_loop.reward_loop import RewardLoopWorker
from verl.trainer.ppo.reward import resolve_reward_manager_cls

import tokenreward.integrations.verl  # noqa: F401  (registers, as the plugin does)
from tokenreward.align import offsets_from_ids
from tokenreward.testing import tiny_causal_lm, tiny_reward_model, train_tokenizer

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = ["What is 17 + 25?", "The capital of France is", "Say hello.", "Name the first primes."]
RESPONSES = [
    " The answer is 42.",
    " Paris, a naïve guess.",
    " Hello world!",
    " 2, 3, 5, 7, 11.",
    " You are stupid.",
    " Lima.",
    " Thank you for asking",
]
# (prompt, response, ends with EOS, uid): rows of one prompt are scattered; "p3" has one sample
ROWS = [
    (0, 0, True, "p0"),
    (1, 1, True, "p1"),
    (0, 4, False, "p0"),
    (2, 2, True, "p2"),
    (1, 5, True, "p1"),
    (0, 6, False, "p0"),
    (3, 3, True, "p3"),
    (2, 4, True, "p2"),
]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Policy tokenizer, a reward model with the same tokenizer, and one whose tokenizer differs."""
    root = tmp_path_factory.mktemp("verl_models")
    policy = train_tokenizer(vocab_size=300)
    policy.save_pretrained(root / "policy")
    tiny_causal_lm("llama", policy).save_pretrained(root / "policy")  # verl's validate_config reads its config
    other = train_tokenizer(corpus=[p + r for p in PROMPTS for r in RESPONSES], vocab_size=280)
    paths = {"policy": str(root / "policy")}
    for name, tok, seed in (("same", policy, 0), ("different", other, 1)):
        model = tiny_reward_model("llama", tok, seed=seed)
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
        paths[name] = str(root / name)
    return policy, paths


def batch_of_rows(tok, prompt_side: str = "left", cases=(PROMPTS, RESPONSES, ROWS)) -> DataProto:
    """Prompts padded on `prompt_side` (verl's v0 trainer pads them left, its v1 trainer right),
    right-padded responses of mixed lengths, uids in shuffled order; `cases` are the prompts,
    responses and (prompt, response, EOS, uid) rows."""
    texts, replies, rows = cases
    prompts = [tok(texts[p])["input_ids"] for p, _, _, _ in rows]
    responses = [tok(replies[r])["input_ids"] + ([tok.eos_token_id] if eos else []) for _, r, eos, _ in rows]
    width_p, width_r = max(map(len, prompts)), max(map(len, responses)) + 2
    pad = tok.pad_token_id

    def padded(row, fill):
        gap = [fill] * (width_p - len(row))
        return gap + row if prompt_side == "left" else row + gap

    prompt_ids = torch.tensor([padded(p, pad) for p in prompts])
    response_ids = torch.tensor([r + [pad] * (width_r - len(r)) for r in responses])
    prompt_mask = torch.tensor([padded([1] * len(p), 0) for p in prompts])
    response_mask = torch.tensor([[1] * len(r) + [0] * (width_r - len(r)) for r in responses])
    batch = TensorDict(
        {
            "prompts": prompt_ids,
            "responses": response_ids,
            "input_ids": torch.cat([prompt_ids, response_ids], 1),
            "attention_mask": torch.cat([prompt_mask, response_mask], 1),
            "response_mask": response_mask,
        },
        batch_size=len(rows),
    )
    return DataProto(batch=batch, non_tensor_batch={"uid": np.array([u for *_, u in rows], dtype=object)})


def compose_verl(overrides: list[str]):
    """verl's own trainer config (`ppo_trainer.yaml`) with `overrides`, as main_ppo composes it."""
    with initialize_config_dir(config_dir=str(Path(verl.__file__).parent / "trainer" / "config"), version_base=None):
        return compose("ppo_trainer", overrides=overrides)


def verl_config(paths, rm: str, *extra: str):
    """verl's own trainer config with the overrides docs/verl.md gives for the colocated reward path."""
    overrides = [
        f"actor_rollout_ref.model.path={paths['policy']}",
        "reward.reward_manager.name=tokenreward",
        "reward.reward_model.enable=True",
        f"reward.reward_model.model_path={paths[rm]}",
        "reward.custom_reward_function.path=pkg://tokenreward.integrations.verl.manager",
        "reward.custom_reward_function.name=compute_score",
        *extra,
    ]
    return compose_verl(overrides)


def local(rewarder: str, *options: str) -> list[str]:
    """Overrides for an in-process rewarder on CPU (`reward_model` defaults to verl's model_path)."""
    return [f"+reward.tokenreward.rewarder={rewarder}", "+reward.tokenreward.device=cpu", *options]


def worker_rm_scores(config, data):
    """What verl's RewardLoopManager.compute_rm_score does, minus Ray: one worker, its outputs, the
    manager class's assemble_rm_scores."""
    worker = RewardLoopWorker(config)
    outputs = asyncio.run(worker.compute_score_batch(data))
    scores = [o["reward_score"] for o in outputs]
    return resolve_reward_manager_cls(config).assemble_rm_scores(data, scores), outputs, worker


def row_parts(tok, data, i):
    prompt_length = data.batch["prompts"].shape[1]
    mask = data.batch["attention_mask"][i].bool()
    prompt = tok.decode(data.batch["prompts"][i][mask[:prompt_length]].tolist(), skip_special_tokens=True)
    response_ids = data.batch["responses"][i][: int(mask[prompt_length:].sum())].tolist()
    return prompt, response_ids


def expected_row(rewarder, tok, data, i) -> tuple[list[float], str, str]:
    """`rewarder.score` of that one response aligned to the policy tokens, the text-completing token's
    reward moved onto the EOS when the response has one."""
    prompt, response_ids = row_parts(tok, data, i)
    text, offsets = offsets_from_ids(tok, response_ids)
    row = rewarder.score([prompt], [text], align_to=[offsets]).token_rewards(0)
    if response_ids[-1] == tok.eos_token_id:
        completing = next(t for t, (_, end) in enumerate(offsets) if end == len(text))
        assert completing < len(row) - 1
        row[-1] += row[completing]
        row[completing] = 0.0
    return row, prompt, text


def hf_score(path, prompt, text) -> float:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(path), AutoModelForSequenceClassification.from_pretrained(path).eval()
    with torch.no_grad():
        return float(model(**tok(prompt + text, return_tensors="pt")).logits[0, 0])
