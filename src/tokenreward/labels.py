"""Token labels from a minimal revision (TLCR, Eqs. 4-5): edit-op alignment of token ids.

A reviser edits the rejected response `y_r` into `y_m`. The two token-id sequences are
Levenshtein-aligned (unit costs for insert, delete, substitute) and

- a token of `y_r` that is deleted or substituted is negative (label 0),
- a token of `y_m` that is added or substituted is positive (label 1),
- every other token (matched unchanged) is neutral (soft label 0.5).

Ties. Several minimal edit scripts can exist (`[a, b] -> [b, c]` is "delete a, insert c" or
"substitute twice") and they label different tokens. The public TLCR code walks its DP table
back from the end and prefers delete > add (insert) > substitute/match among the optimal
moves; `rapidfuzz`'s own `editops` uses its bit-parallel backtrace, whose ties differ. We
keep the public code's rule: every distance comes from `rapidfuzz.distance.Levenshtein`
(C++, bit-parallel) and `edit_ops` takes, at each step of the walk back, the first optimal
move in that order. The walk makes at most `len(y_r) + len(y_m)` steps of at most three
library calls on prefixes, a few milliseconds for responses of hundreds of tokens.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

from rapidfuzz.distance import Levenshtein

from tokenreward.encoding import encode_pairs
from tokenreward.errors import UserInputError
from tokenreward.rewards import TextOrMessages

NEGATIVE, NEUTRAL, POSITIVE = 0.0, 0.5, 1.0


class EditOp(NamedTuple):
    """`tag` in {"delete", "insert", "replace"}; `source` / `target` are positions in the
    source and target sequences (for "insert", `source` is where the token goes in)."""

    tag: str
    source: int
    target: int


def edit_ops(source: Sequence[Any], target: Sequence[Any]) -> list[EditOp]:
    """A minimal edit script turning `source` into `target`, ties broken delete > insert > substitute
    while walking back from the end (see the module docstring). Matches are not listed."""
    source, target = list(source), list(target)

    @cache
    def distance(i: int, j: int) -> int:
        return Levenshtein.distance(source[:i], target[:j])

    ops: list[EditOp] = []
    i, j = len(source), len(target)
    while i > 0 or j > 0:
        here = distance(i, j)
        if i > 0 and distance(i - 1, j) + 1 == here:
            i -= 1
            ops.append(EditOp("delete", i, j))
        elif j > 0 and distance(i, j - 1) + 1 == here:
            j -= 1
            ops.append(EditOp("insert", i, j))
        else:
            i, j = i - 1, j - 1
            if source[i] != target[j]:
                ops.append(EditOp("replace", i, j))
    return ops[::-1]


def token_labels(rejected: Sequence[Any], revision: Sequence[Any]) -> tuple[list[float], list[float]]:
    """TLCR Eqs. 4-5: (labels of the rejected tokens, labels of the revision tokens)."""
    rejected_labels = [NEUTRAL] * len(rejected)
    revision_labels = [NEUTRAL] * len(revision)
    for op in edit_ops(rejected, revision):
        if op.tag in ("delete", "replace"):
            rejected_labels[op.source] = NEGATIVE
        if op.tag in ("insert", "replace"):
            revision_labels[op.target] = POSITIVE
    return rejected_labels, revision_labels


def label_pair(
    tokenizer,
    prompt: TextOrMessages,
    rejected: str,
    revision: str,
    reasoning: str | None = None,
    chat_template: bool = False,
) -> dict[str, Any]:
    """The `tokenreward label` output record for one revised pair.

    Both responses are tokenized after the prompt (as a discriminator or policy sees them,
    see `tokenreward.encoding`; `chat_template` as there), their response token ids aligned and labelled."""
    enc = encode_pairs(tokenizer, [prompt, prompt], [rejected, revision], chat_template=chat_template)
    ids = [enc.input_ids[k, enc.response_positions[k]].tolist() for k in range(2)]
    rejected_labels, revision_labels = token_labels(ids[0], ids[1])
    record: dict[str, Any] = {"prompt": prompt, "rejected": rejected, "revision": revision}
    for k, (name, labels) in enumerate((("rejected", rejected_labels), ("revision", revision_labels))):
        text = enc.responses[k]
        record[f"{name}_tokens"] = [text[s:e] for s, e in enc.offsets[k]]
        record[f"{name}_offsets"] = [[s, e] for s, e in enc.offsets[k]]
        record[f"{name}_labels"] = labels
    if reasoning:
        record["reasoning"] = reasoning
    return record


LABEL_FIELDS = (
    "prompt",
    "rejected",
    "revision",
    "rejected_offsets",
    "rejected_labels",
    "revision_offsets",
    "revision_labels",
)


def read_labels(path: str | Path) -> list[dict[str, Any]]:
    """The labelled records of a `tokenreward label` output (failed revisions left out)."""
    from tokenreward.io import row_location
    from tokenreward.jsonl import read_jsonl

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"labels file {path} does not exist (make it with `tokenreward label`)")
    records = []
    for k, record in enumerate(read_jsonl(path)):
        if "failed" in record:
            continue
        missing = [f for f in LABEL_FIELDS if f not in record]
        if missing:
            raise UserInputError(
                f"{row_location(path, k)}: missing {', '.join(missing)}; is it a `tokenreward label` output?"
            )
        records.append(record)
    if not records:
        raise UserInputError(f"{path} holds no labelled record")
    return records


def labels_from_world(world, tokenizer, split: str = "reward") -> list[dict[str, Any]]:
    """Label the world's pairs of `split` with their oracle revisions (`pair["revision"]`, the
    same text the `world` reviser returns), on `tokenizer`'s tokens."""
    return [label_pair(tokenizer, p["prompt"], p["rejected"], p["revision"]) for p in world.pairs(split)]


def split_by_prompt(records: Sequence[dict[str, Any]], fraction: float, seed: int) -> tuple[list, list]:
    """(train, held out): a seeded `fraction` of the distinct prompts, with all their records, is held out."""
    if not 0.0 <= fraction < 1.0:
        raise UserInputError(f"the held-out fraction must lie in [0, 1), got {fraction}")
    prompts = sorted({json.dumps(r["prompt"]) for r in records})
    random.Random(seed).shuffle(prompts)
    held = set(prompts[: round(fraction * len(prompts))])
    train = [r for r in records if json.dumps(r["prompt"]) not in held]
    return train, [r for r in records if json.dumps(r["prompt"]) in held]
