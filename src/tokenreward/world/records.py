"""The world's data records: prompt splits, graded responses, simulated labellers' preference
pairs (with the oracle's minimal revision of the rejected response), and the SFT examples."""

from __future__ import annotations

import math
import random
from typing import Any

from tokenreward.rewarders.prm import split_steps
from tokenreward.world import generate as gen
from tokenreward.world.families import family
from tokenreward.world.oracle import grade, revise, step_truth

#: Bradley-Terry temperature of the simulated labellers: P(a > b) = sigma((s_a - s_b) / T)
LABEL_TEMPERATURE = 1.0
#: share of good responses in the SFT data (the rest carry planted defects)
SFT_GOOD_SHARE = 0.6
#: the text between the steps of the world's stepwise records: a line break, the default of the
#: `prm` rewarder and of `tokenreward train prm`
STEP_SEPARATOR = "\n"


def split_prompts(prompts: list[dict], test_share: float, rng: random.Random) -> dict[str, list[dict]]:
    """Held-out test share, then the rest 20 / 40 / 40 into SFT / reward / RL (as in TLCR)."""
    shuffled = prompts[:]
    rng.shuffle(shuffled)
    n_test = round(len(shuffled) * test_share)
    test, rest = shuffled[:n_test], shuffled[n_test:]
    a, b = round(len(rest) * 0.2), round(len(rest) * 0.6)
    return {"sft": rest[:a], "reward": rest[a:b], "rl": rest[b:], "test": test}


def response_record(prompt: dict, response: gen.Response) -> dict[str, Any]:
    g = grade(prompt, response.text)
    return {
        "prompt_id": prompt["id"],
        "family": prompt["family"],
        "prompt": prompt["prompt"],
        "response": response.text,
        "kinds": response.kinds,
        "oracle_score": g.score,
        "credit_spans": g.credit_spans,
        "defects": g.defects,
    }


def label_pair(
    rng: random.Random, prompt: dict, first: dict, second: dict, with_revision: bool = True
) -> dict[str, Any]:
    """A simulated labeller's choice, `P(first wins) = sigma((s_1 - s_2) / LABEL_TEMPERATURE)`,
    and (`with_revision`) the oracle's minimal revision of the rejected response."""
    margin = (first["oracle_score"] - second["oracle_score"]) / LABEL_TEMPERATURE
    first_wins = rng.random() < 1.0 / (1.0 + math.exp(-margin))
    chosen, rejected = (first, second) if first_wins else (second, first)
    pair = {
        "prompt_id": prompt["id"],
        "family": prompt["family"],
        "prompt": prompt["prompt"],
        "chosen": chosen["response"],
        "rejected": rejected["response"],
        "chosen_score": chosen["oracle_score"],
        "rejected_score": rejected["oracle_score"],
        "chosen_credit_spans": chosen["credit_spans"],
        "rejected_credit_spans": rejected["credit_spans"],
    }
    if with_revision:
        revision = revise(prompt, rejected["response"])
        revised = grade(prompt, revision)
        pair.update(revision=revision, revision_score=revised.score, revision_credit_spans=revised.credit_spans)
    return pair


def stepwise_records(prompts: list[dict], responses: list[dict]) -> list[dict[str, Any]]:
    """TRL's stepwise records (`tokenreward train prm`'s data) of the `responses` whose family
    writes steps (`multistep`): the response cut at `STEP_SEPARATOR` into its non-blank lines
    (`completions`, as the `prm` rewarder cuts it), each line labelled `true` when every step of
    the oracle's `step_truth` it holds is correct (on the true chain; a step that carries an
    earlier error is not) and `false` otherwise; a line without a step is `true`. Responses in
    which the oracle finds no step are left out; `prompt_id` names the prompt record."""
    by_id = {p["id"]: p for p in prompts}
    records = []
    for response in responses:
        prompt = by_id[response["prompt_id"]]
        if not family(prompt["family"]).has_steps:
            continue
        text, truths = response["response"], step_truth(prompt, response["response"])
        if not truths:
            continue
        lines = split_steps(text, STEP_SEPARATOR)
        labels = [all(t.correct for t in truths if t.start < end and start < t.end) for start, end in lines]
        completions = [text[start:end] for start, end in lines]
        records.append(
            {"prompt_id": prompt["id"], "prompt": prompt["prompt"], "completions": completions, "labels": labels}
        )
    return records


def sft_examples(rng: random.Random, prompts: list[dict], per_prompt: int) -> list[dict[str, str]]:
    """SFT records: `per_prompt` replies per prompt (good with probability `SFT_GOOD_SHARE`),
    and three revision instructions: better(defective) -> its oracle revision,
    better(good) -> the same reply, worse(good) -> the reply with planted defects."""
    records = []
    for prompt in prompts:
        family = prompt["family"]
        for _ in range(per_prompt):
            kinds = [] if rng.random() < SFT_GOOD_SHARE else _defective_kinds(rng, family)
            records.append({"prompt": prompt["prompt"], "completion": gen.respond(rng, prompt, kinds).text})
        template = rng.randrange(12)
        good = gen.respond(rng, prompt, [], template).text
        bad = gen.respond(rng, prompt, _defective_kinds(rng, family), template).text
        records.append(
            {
                "prompt": gen.REVISION_BETTER.format(prompt=prompt["prompt"], response=bad),
                "completion": revise(prompt, bad),
            }
        )
        records.append(
            {"prompt": gen.REVISION_BETTER.format(prompt=prompt["prompt"], response=good), "completion": good}
        )
        records.append(
            {"prompt": gen.REVISION_WORSE.format(prompt=prompt["prompt"], response=good), "completion": bad}
        )
    rng.shuffle(records)
    return records


def _defective_kinds(rng: random.Random, family: str) -> list[str]:
    while True:
        kinds = gen.sample_kinds(rng, family)
        if kinds:
            return kinds
