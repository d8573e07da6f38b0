"""The world's measurements: the SFT policy's own samples (batched decoding, seeded per
prompt), their oracle grade, and the reward model's pairwise accuracy on held-out pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tokenreward.generation import encode_prompt
from tokenreward.jsonl import read_jsonl
from tokenreward.progress import progress_bar
from tokenreward.world import SPLITS, STANDARD_FOLDERS
from tokenreward.world.oracle import grade
from tokenreward.world.sizes import WorldSize
from tokenreward.worldbuild.sampling import sample_ids

MAX_NEW_TOKENS = 64
#: prompts decoded together when the world's policy samples (rows leave the batch as they finish)
SAMPLE_BATCH = 256


def world_tokenizer(root: Path):
    from tokenreward.models import load_tokenizer

    return load_tokenizer(root / STANDARD_FOLDERS["tokenizer"])


def sample_responses(
    policy,
    tokenizer,
    prompts: list[str],
    greedy: bool,
    seed: int,
    batch_size: int = SAMPLE_BATCH,
    progress: bool = False,
    label: str = "policy samples",
) -> list[str]:
    """The policy's continuations of `prompts` (up to `MAX_NEW_TOKENS`), decoded in batches
    that drop finished rows (`tokenreward.world.sampling`); sampled responses are seeded per
    prompt by `(seed, index)`, so they do not depend on `batch_size`."""
    texts: list[str] = []
    with progress_bar(len(prompts), label, enabled=progress) as advance:
        for s in range(0, len(prompts), batch_size):
            rows = [encode_prompt(tokenizer, p, index=s + k) for k, p in enumerate(prompts[s : s + batch_size])]
            seeds = [(seed, i) for i in range(s, s + len(rows))]
            ids = sample_ids(
                policy, rows, tokenizer.eos_token_id, tokenizer.pad_token_id, MAX_NEW_TOKENS, greedy, seeds
            )
            texts += tokenizer.batch_decode(ids, skip_special_tokens=True)
            advance(len(rows))
    return texts


def policy_quality(policy, tokenizer, prompts: list[dict], greedy: bool, seed: int) -> dict[str, float]:
    """Mean oracle score and defect rate (share of responses with at least one issue)."""
    texts = sample_responses(policy, tokenizer, [p["prompt"] for p in prompts], greedy, seed)
    grades = [grade(p, t) for p, t in zip(prompts, texts)]
    return {
        "oracle_score": sum(g.score for g in grades) / len(grades),
        "defect_rate": sum(g.defects > 0 for g in grades) / len(grades),
    }


@torch.no_grad()
def held_out_accuracies(
    model, tokenizer, pairs: list[dict], label: str, progress: bool = False, batch_size: int = 32
) -> tuple[float, float]:
    """`pairwise_accuracy` against the labels and against the oracle (ties skipped) from ONE
    scoring of `pairs` (a pretrained backbone's reward model is slow to score: a progress bar
    named `label`)."""
    from tokenreward.trainers.reward_model import prefers_chosen

    with progress_bar(len(pairs), label, enabled=progress) as advance:
        above = prefers_chosen(model, tokenizer, pairs, batch_size, advance)
    untied = [(p, a) for p, a in zip(pairs, above) if p["chosen_score"] != p["rejected_score"]]
    oracle = sum(a == (p["chosen_score"] > p["rejected_score"]) for p, a in untied)
    return sum(above) / len(pairs), oracle / len(untied)


def measure(root: Path, size: WorldSize, seed: int, progress: bool) -> dict[str, Any]:
    from tokenreward.models import load_causal_lm, load_reward_model, load_tokenizer

    tokenizer = world_tokenizer(root)
    rm = load_reward_model(root / STANDARD_FOLDERS["reward_model"])
    rm_tokenizer = load_tokenizer(root / STANDARD_FOLDERS["reward_model"])  # a backbone's own, else the world's
    held_out = read_jsonl(root / "data" / "pairs.test.jsonl")
    held_out_policy = read_jsonl(root / "data" / "policy_pairs.test.jsonl")
    policy = load_causal_lm(root / STANDARD_FOLDERS["policy"]).eval()
    prompts = read_jsonl(root / "data" / "prompts.test.jsonl")[: size.eval_prompts]
    data_responses = [r for split in SPLITS for r in read_jsonl(root / "data" / f"responses.{split}.jsonl")]
    against_labels, against_oracle = held_out_accuracies(
        rm, rm_tokenizer, held_out, "reward model: held-out pairs", progress
    )
    _, policy_against_oracle = held_out_accuracies(
        rm, rm_tokenizer, held_out_policy, "reward model: held-out policy pairs", progress
    )
    return {
        "reward_model_accuracy_labels": against_labels,
        "reward_model_accuracy_oracle": against_oracle,
        "reward_model_accuracy_oracle_policy_samples": policy_against_oracle,
        "sft_policy_greedy": policy_quality(policy, tokenizer, prompts, greedy=True, seed=seed),
        "sft_policy_sampled": policy_quality(policy, tokenizer, prompts, greedy=False, seed=seed),
        "data_responses": {
            "oracle_score": sum(r["oracle_score"] for r in data_responses) / len(data_responses),
            "defect_rate": sum(r["defects"] > 0 for r in data_responses) / len(data_responses),
        },
    }
