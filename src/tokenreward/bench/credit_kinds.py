"""`bench credit` per defect kind: where inside a response each rewarder puts the blame for
each kind of defect the world's oracle finds (`repeat`, `hostile`, `wrong_number`, ...).

The response records keep the credit spans but not their kinds, so the kinds come from the
oracle's grade of each response (`tokenreward.world.oracle.grade`, the same spans): every issue
with spans of negative credit is a defect of its kind (sequence terms such as `verbose` and
`no_answer` have no tokens and are left out).

`auroc_within_by_kind`, for a kind K: inside each response with a token of a K defect and a
clean token (a token overlapping no span of negative credit), the AUROC of telling the K tokens
from the clean ones by their reward (lower reward = defect); tokens of other defects only are
left out. The mean over those responses, and their number. `uniform` scores exactly 0.5.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from tokenreward.bench.credit import auroc
from tokenreward.world.oracle import defect_tokens, grade

KindSpan = tuple[str, int, int]  # (kind, start, end) of one span of negative credit


def defect_kinds(world, split: str, records: Sequence[dict[str, Any]]) -> list[list[KindSpan]]:
    """Per response record of `split`, the (kind, start, end) of its defects' spans of negative credit."""
    prompts = {p["id"]: p for p in world.prompts(split)}
    kinds = []
    for record in records:
        prompt = prompts.get(record.get("prompt_id"))
        if prompt is None:
            raise ValueError(
                f"the world's {split!r} responses name prompt {record.get('prompt_id')!r}, which its {split!r} prompts lack"
            )
        issues = grade(prompt, record["response"]).issues
        kinds.append([(i.kind, s, e) for i in issues for s, e, credit in i.spans if credit < 0])
    return kinds


def auroc_within_by_kind(
    rewards: Sequence[Sequence[float]],
    offsets: Sequence[Sequence[tuple[int, int]]],
    kinds: Sequence[Sequence[KindSpan]],
    credit_spans: Sequence[list],
) -> dict[str, dict[str, float]]:
    """`{kind: {"auroc": mean within-response AUROC, "responses": how many}}` (module docstring)."""
    per_kind: dict[str, list[float]] = {}
    for row, token_spans, defects, spans in zip(rewards, offsets, kinds, credit_spans):
        clean = [not flag for flag in defect_tokens(spans, token_spans)]
        for kind in sorted({k for k, _, _ in defects}):
            hit = [any(k == kind and s < te and ts < e for k, s, e in defects) for ts, te in token_spans]
            kept = [i for i, (h, c) in enumerate(zip(hit, clean)) if h or c]
            if any(hit) and any(clean):
                value = auroc([-row[i] for i in kept], [hit[i] for i in kept])
                per_kind.setdefault(kind, []).append(value)
    return {
        kind: {"auroc": float(np.mean(values)) if values else math.nan, "responses": len(values)}
        for kind, values in sorted(per_kind.items())
    }
