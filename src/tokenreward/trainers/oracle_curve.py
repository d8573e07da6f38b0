"""The world's oracle as a training curve: the grades of responses (`oracle_grades`), and the
mean grade of responses sampled from the policy being trained (`sampled_oracle_score`, logged
as `oracle_score` by FIGA and the preference trainers; PPO grades its own rollouts)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def oracle_grades(records: Sequence[dict], responses: Sequence[str]) -> list[float]:
    """The oracle score of each response to its prompt record (`tokenreward.world.oracle.grade`)."""
    from tokenreward.world.oracle import grade

    return [grade(record, text).score for record, text in zip(records, responses)]


@torch.no_grad()
def sampled_oracle_score(
    policy, tokenizer, records: Sequence[dict], max_new_tokens: int, seed: int, chat_template: bool
) -> float:
    """Mean oracle score of one response per prompt record sampled at temperature 1 with the
    generator seed `seed` (a fixed seed: the curve moves with the policy, not the draw)."""
    from tokenreward.generation import generate

    generations = generate(
        policy,
        tokenizer,
        [r["prompt"] for r in records],
        max_new_tokens,
        do_sample=True,
        generator_seed=seed,
        chat_template=chat_template,
    )
    return sum(oracle_grades(records, [g.text for g in generations])) / len(records)
