"""The world's oracle as a training curve: the grades of responses (`oracle_grades`; with the
verifiable accuracy, `oracle_metrics`, which PPO / ReMax / RLOO log for their own rollouts), and
the mean grade of responses sampled from the policy being trained (`sampled_oracle_score`,
logged as `oracle_score` by FIGA and the preference trainers)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def oracle_grades(records: Sequence[dict], responses: Sequence[str]) -> list[float]:
    """The oracle score of each response to its prompt record (`tokenreward.world.oracle.grade`)."""
    from tokenreward.world.oracle import grade

    return [grade(record, text).score for record, text in zip(records, responses)]


def all_verifiable(records: Sequence[dict]) -> bool:
    """Whether every record is of a verifiable family (`tokenreward.world.oracle.verifiable_families`)."""
    from tokenreward.world.oracle import verifiable_families

    families = set(verifiable_families())
    return all(record.get("family") in families for record in records)


def oracle_metrics(records: Sequence[dict], responses: Sequence[str], accuracy: bool) -> dict[str, list[float]]:
    """Per response: `oracle_score` (`oracle_grades`) and, with `accuracy` (every record of a
    verifiable family), `oracle_accuracy` (the verifiable oracle's 1/0, `tokenreward.world.oracle.correct`)."""
    from tokenreward.world.oracle import correct

    metrics = {"oracle_score": oracle_grades(records, responses)}
    if accuracy:
        metrics["oracle_accuracy"] = [correct(record, text) for record, text in zip(records, responses)]
    return metrics


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
