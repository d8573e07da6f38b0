"""Held-out evaluation of a policy on the world: the oracle's grade of its responses.

`evaluate_policy` answers the world's prompts of one split (greedy, or sampled with per
response seeds), grades every response with `tokenreward.world.oracle.grade`, and reports
the mean oracle score (with `reward="verifiable"`: the verifiable oracle's 1/0, so the mean is
the accuracy), the share of responses with at least one defect, the mean length in
generated tokens (EOS included) and, given a reference model, the KL to it: per response
`sum_t log pi(y_t | .) - log ref(y_t | .)` over the generated tokens (the k1 estimate on the
evaluated responses; for greedy responses a measure of drift rather than an unbiased KL).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from tokenreward.errors import UserInputError
from tokenreward.generation import Generations, generate, make_batch, response_logprobs
from tokenreward.models import ModelLoading, PathOrModel, load_causal_lm, load_tokenizer

DEFAULT_MAX_NEW_TOKENS = 64


@torch.no_grad()
def response_log_ratios(
    policy, reference, generations: Generations, pad_token_id: int, batch_size: int = 32
) -> torch.Tensor:
    """`sum_t log pi(y_t|.) - log ref(y_t|.)` over each response's generated tokens."""
    device = next(policy.parameters()).device
    sums = []
    for start in range(0, len(generations), batch_size):
        part = Generations(generations.items[start : start + batch_size])
        batch = make_batch(part, pad_token_id, device)
        log_ratio = response_logprobs(policy, batch, 1.0) - response_logprobs(reference, batch, 1.0)
        sums.append(torch.where(batch.mask, log_ratio, torch.zeros_like(log_ratio)).sum(-1).cpu())
    return torch.cat(sums) if sums else torch.zeros(0)


def evaluate_policy(
    policy: PathOrModel,
    world,
    split: str = "test",
    reference: PathOrModel | None = None,
    n: int | None = None,
    greedy: bool = True,
    seed: int = 0,
    tokenizer: PathOrModel | None = None,
    max_new_tokens: int | None = None,
    batch_size: int = 32,
    loading: ModelLoading | None = None,
    families: Sequence[str] = (),
    reward: str = "score",
) -> dict[str, Any]:
    """Oracle score, defect rate, KL to `reference` (None without one), length and the samples
    (`prompt`, `response`, `oracle_score`, `defects`, `family`) on the first `n` prompts of
    `split` (of `families` only, when given). `oracle_score` is the oracle's reward in mode
    `reward` (`tokenreward.world.oracle.oracle_reward`: "score", the holistic grade, or
    "verifiable", 1/0). `world` is a `World` or its folder; the tokenizer and the response
    budget default to the world's (`config["max_new_tokens"]`, else 64). `loading` places
    models loaded from a folder (dtype, device, device map); a loaded policy stays where it is
    unless given."""
    if isinstance(world, (str, Path)):
        from tokenreward.world import open_world

        world = open_world(world)
    from tokenreward.world.oracle import grade, oracle_reward

    records = [r for r in world.prompts(split) if not families or r["family"] in families]
    if n is not None:
        if n < 1:
            raise UserInputError(f"n must be at least 1, got {n}")
        records = records[:n]
    if not records:
        chosen = f" of the families {', '.join(families)}" if families else ""
        raise UserInputError(f"the world has no prompts{chosen} in split {split!r}")
    policy = load_causal_lm(policy, loading=loading)
    tokenizer = load_tokenizer(tokenizer if tokenizer is not None else world.tokenizer_dir)
    budget = max_new_tokens or int(world.config.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS))
    was_training = policy.training
    policy.eval()
    try:
        generations = generate(
            policy,
            tokenizer,
            [r["prompt"] for r in records],
            budget,
            do_sample=not greedy,
            generator_seed=None if greedy else seed,
            batch_size=batch_size,
        )
        kl = None
        if reference is not None:
            ref = load_causal_lm(reference, loading=loading)
            ref_device = next(ref.parameters()).device
            ref.to(next(policy.parameters()).device).eval()
            kl = float(response_log_ratios(policy, ref, generations, tokenizer.pad_token_id, batch_size).mean())
            ref.to(ref_device)
    finally:
        policy.train(was_training)
    grades = [grade(r, g.text) for r, g in zip(records, generations)]
    scores = [
        gr.score if reward == "score" else oracle_reward(r, g.text, reward)
        for r, g, gr in zip(records, generations, grades)
    ]
    samples = [
        {
            "prompt": r["prompt"],
            "family": r.get("family"),
            "response": g.text,
            "oracle_score": score,
            "defects": gr.defects,
        }
        for r, g, gr, score in zip(records, generations, grades, scores)
    ]
    return {
        "oracle_score": sum(scores) / len(scores),
        "defect_rate": sum(gr.defects > 0 for gr in grades) / len(grades),
        "kl": kl,
        "length": sum(len(g.response_ids) for g in generations) / len(generations),
        "n": len(grades),
        "samples": samples,
    }
