"""`bench credit` per defect kind: where inside a response each rewarder puts the blame for
each kind of defect the world's oracle finds (`repeat`, `hostile`, `wrong_number`, ...).

The response records keep the credit spans but not their kinds, so the kinds come from the
oracle's grade of each response (`tokenreward.world.oracle.grade`, the same spans): every issue
with spans of negative credit is a defect of its kind (sequence terms such as `verbose` and
`no_answer` have no tokens and are left out).

`bench.credit.auroc_within_by_kind`, for a kind K: inside each response with a token of a K defect and a
clean token (a token overlapping no span of negative credit), the AUROC of telling the K tokens
from the clean ones by their reward (lower reward = defect); tokens of other defects only are
left out. The mean over those responses, and their number. `uniform` scores exactly 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tokenreward.errors import UserInputError
from tokenreward.world.oracle import defect_tokens, grade

KindSpan = tuple[str, int, int]  # (kind, start, end) of one span of negative credit


def record_prompts(world, split: str, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The prompt record of each response record of `split` (by its `prompt_id`)."""
    prompts = {p["id"]: p for p in world.prompts(split)}
    found = []
    for record in records:
        prompt = prompts.get(record.get("prompt_id"))
        if prompt is None:
            raise UserInputError(
                f"the world's {split!r} responses name prompt {record.get('prompt_id')!r}, which its {split!r} prompts lack"
            )
        found.append(prompt)
    return found


def defect_kinds(world, split: str, records: Sequence[dict[str, Any]]) -> list[list[KindSpan]]:
    """Per response record of `split`, the (kind, start, end) of its defects' spans of negative credit."""
    kinds = []
    for prompt, record in zip(record_prompts(world, split, records), records):
        issues = grade(prompt, record["response"]).issues
        kinds.append([(i.kind, s, e) for i in issues for s, e, credit in i.spans if credit < 0])
    return kinds


def kind_labels(
    token_spans: Sequence[tuple[int, int]], defects: Sequence[KindSpan], credit_spans: list
) -> tuple[dict[str, list[bool]], list[bool]]:
    """For one response: per defect kind in it, which tokens overlap a span of that kind; and
    which tokens are clean (overlap no span of negative credit)."""
    clean = [not flag for flag in defect_tokens(credit_spans, token_spans)]
    hits = {
        kind: [any(k == kind and s < te and ts < e for k, s, e in defects) for ts, te in token_spans]
        for kind in sorted({k for k, _, _ in defects})
    }
    return hits, clean
