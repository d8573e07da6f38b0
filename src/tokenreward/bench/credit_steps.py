"""`bench credit` at step level: on the responses of the families that write steps (`multistep`),
how well each rewarder's score of a step tells the oracle's incorrect steps from its correct ones.

The steps are the oracle's (`tokenreward.world.oracle.step_truth`): every `Step k: a op b = c.`
and the answer line, with its characters `[start, end)` and whether it is `correct` (what the
true chain says at that step; a step that follows from an earlier error is not). A step's score
(`step_scores`):
- from a rewarder that scores steps (`prm`, which has `steps_of(text)`, the character spans of its
  own steps, and returns `TokenRewards.step_scores`): the score `s_k` of its step `k` that holds the
  oracle step's first character (the world's steps are its lines, so `k` is the line's number);
- from any other rewarder: the sum of its token rewards over its tokens that overlap the step's
  characters, `sum_{t : ts_t < end and start < te_t} r_t` (`uniform` thus scores a step by its
  length: `r_t` is the same on every token).
The metrics (lower score = incorrect step; `step_metrics`):
- `step_auroc`: the AUROC of telling incorrect steps from correct ones, pooled over all steps;
- `step_auroc_within`: the same inside each response with both kinds of step, averaged over them;
- `step_top1`: over responses with an incorrect step, the share whose lowest-scored step is
  incorrect (ties fractional);
- `steps`, `incorrect_steps`: how many steps were scored, and how many were incorrect.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tokenreward.bench.credit_kinds import record_prompts
from tokenreward.bench.credit_stats import auroc, auroc_within, top1
from tokenreward.errors import UserInputError
from tokenreward.rewards import TokenRewards
from tokenreward.world.answers import StepTruth
from tokenreward.world.families import family
from tokenreward.world.oracle import step_truth

Span = tuple[int, int]
StepsOf = Callable[[str], list[Span]]


def step_truths(world, split: str, records: Sequence[dict[str, Any]]) -> list[list[StepTruth]]:
    """Per response record of `split`, the oracle's steps of its response (none for families without steps)."""
    return [
        step_truth(prompt, record["response"]) if family(prompt["family"]).has_steps else []
        for prompt, record in zip(record_prompts(world, split, records), records)
    ]


def step_scores(result: TokenRewards, i: int, truths: Sequence[StepTruth], steps_of: StepsOf | None) -> list[float]:
    """The score of each oracle step of response `i` (module docstring): the rewarder's own step
    score when it scores steps (`steps_of` given), else the sum of its rewards on the step's tokens."""
    if steps_of is not None and result.step_scores is not None:
        own = steps_of(result.responses[i])
        scores = []
        for truth in truths:
            k = next((k for k, (s, e) in enumerate(own) if s <= truth.start < e), None)
            if k is None:
                raise UserInputError(f"{result.rewarder}: no step of its own holds character {truth.start}")
            scores.append(float(result.step_scores[i][k]))
        return scores
    rewards, offsets = result.token_rewards(i), result.offsets[i]
    return [sum(r for r, (ts, te) in zip(rewards, offsets) if ts < t.end and t.start < te) for t in truths]


def step_metrics(
    result: TokenRewards, truths: Sequence[Sequence[StepTruth]], steps_of: StepsOf | None = None
) -> dict[str, float | int]:
    """`step_auroc`, `step_auroc_within`, `step_top1`, `steps`, `incorrect_steps` of one rewarder's
    output over the responses with steps (module docstring); empty when no response has steps."""
    rows, flags = [], []
    for i, row in enumerate(truths):
        if row:
            rows.append(step_scores(result, i, row, steps_of))
            flags.append([not t.correct for t in row])
    if not rows:
        return {}
    pooled = [-s for row in rows for s in row]
    return {
        "step_auroc": auroc(pooled, [f for row in flags for f in row]),
        "step_auroc_within": auroc_within(rows, flags),
        "step_top1": top1(rows, flags),
        "steps": len(pooled),
        "incorrect_steps": sum(f for row in flags for f in row),
    }
