"""Preference datasets in TRL's format, checked, tokenized for a policy, with token rewards
computed once per dataset.

Rows are `{"prompt", "chosen", "rejected"}`, each a string (plain) or a list of
`{"role", "content"}` messages (conversational; chosen / rejected are then the assistant
turn(s)); conversational rows without a `prompt` have it taken as the messages chosen and
rejected share ("implicit prompt"). Every problem is named: a missing column is an error; rows
with an empty response, chosen identical to rejected, or too long for the model are counted
by reason, dropped, and reported (`PreferenceData.report()`, which the trainer prints and
writes to `OUT/data.json`); with `strict` they are an error instead.

Tokenization follows `tokenreward.encoding` (prompt and response tokenized together, offsets
into the response) and, for plain prompts, appends the tokenizer's EOS so the policy learns
to stop (as TRL does). The loss covers every position from the first response token to the
last (template end-of-turn tokens and EOS included); token rewards live on the response
tokens and are 0 on those trailing positions.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tokenreward.encoding import encode_pairs, response_text
from tokenreward.errors import UserInputError
from tokenreward.io import atomic_write, read_jsonl, row_location
from tokenreward.progress import progress_bar
from tokenreward.rewards import REWARDERS, Offsets, Rewarder, TextOrMessages, TokenRewards, build_rewarder

COLUMNS = ("prompt", "chosen", "rejected")


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a `.jsonl` file or a `.json` file holding a list (or `{"train": [...]}`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"preference data {path} does not exist")
    if path.suffix == ".jsonl":
        rows = read_jsonl(path)
    elif path.suffix == ".json":
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise UserInputError(f"preference data {path}: not valid JSON ({err})") from None
        if isinstance(rows, dict) and isinstance(rows.get("train"), list):
            rows = rows["train"]
    else:
        raise UserInputError(f"preference data {path}: expected a .jsonl or .json file")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise UserInputError(f"preference data {path}: expected one JSON object per row")
    if not rows:
        raise UserInputError(f"preference data {path} has no rows")
    return rows


def split_row(row: dict[str, Any], index: int, source: str) -> tuple[TextOrMessages, TextOrMessages, TextOrMessages]:
    """(prompt, chosen, rejected) of one row; an error naming the missing column."""
    missing = [c for c in ("chosen", "rejected") if c not in row]
    if missing:
        raise UserInputError(
            f"{row_location(source, index)}: no {' or '.join(repr(c) for c in missing)} column; TRL's preference format "
            f"needs {', '.join(repr(c) for c in COLUMNS)}; the row has {sorted(row)}"
        )
    chosen, rejected = row["chosen"], row["rejected"]
    if "prompt" in row:
        return row["prompt"], chosen, rejected
    if isinstance(chosen, list) and isinstance(rejected, list):
        shared = 0
        while shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]:
            shared += 1
        if shared:
            return chosen[:shared], chosen[shared:], rejected[shared:]
    raise UserInputError(
        f"{row_location(source, index)}: no 'prompt' column (and its chosen / rejected are not conversations sharing "
        f"their first messages); the row has {sorted(row)}"
    )


@dataclass
class EncodedResponse:
    """One prompt+response, tokenized: `input_ids[completion_start:]` is what the loss covers;
    `token_positions` / `offsets` are the response tokens and their spans in `text`."""

    input_ids: list[int]
    completion_start: int
    token_positions: list[int]
    offsets: Offsets
    text: str

    @property
    def completion_length(self) -> int:
        return len(self.input_ids) - self.completion_start

    def on_completion(self, token_values: Sequence[float]) -> torch.Tensor:
        """Per-response-token values placed on the completion positions (0 elsewhere)."""
        out = torch.zeros(self.completion_length)
        out[torch.tensor(self.token_positions) - self.completion_start] = torch.as_tensor(
            token_values, dtype=torch.float32
        )
        return out


@dataclass
class PreferenceData:
    source: str
    prompts: list[TextOrMessages]
    chosen: list[EncodedResponse]
    rejected: list[EncodedResponse]
    rows: list[int]
    total_rows: int
    dropped: dict[str, list[int]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rows)

    def report(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "rows": self.total_rows,
            "kept": len(self.rows),
            "dropped": {reason: len(rows) for reason, rows in self.dropped.items()},
            "dropped_rows": {reason: rows[:50] for reason, rows in self.dropped.items()},
        }

    def fingerprint(self) -> str:
        """A hash of the tokenized pairs: caches keyed by it are invalid once the data changes."""
        digest = hashlib.sha256()
        for side in (self.chosen, self.rejected):
            for enc in side:
                digest.update(json.dumps([enc.input_ids, enc.completion_start]).encode())
        return digest.hexdigest()[:16]


def encode_response(tokenizer, prompt: TextOrMessages, response: TextOrMessages) -> EncodedResponse:
    enc = encode_pairs(tokenizer, [prompt], [response])
    ids = enc.input_ids[0, : int(enc.attention_mask[0].sum())].tolist()
    if isinstance(prompt, str) and tokenizer.eos_token_id is not None and ids[-1] != tokenizer.eos_token_id:
        ids.append(tokenizer.eos_token_id)
    positions = enc.response_positions[0]
    return EncodedResponse(ids, positions[0], positions, enc.offsets[0], enc.responses[0])


def prepare_preference_data(
    rows: Sequence[dict[str, Any]],
    tokenizer,
    source: str,
    max_length: int | None = None,
    strict: bool = False,
) -> PreferenceData:
    """Check and tokenize preference rows (see the module docstring for the rules)."""
    if tokenizer.pad_token_id is None:
        raise UserInputError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '') or type(tokenizer).__name__} has no pad token; set one "
            "(e.g. tokenizer.pad_token = tokenizer.eos_token) and save it with the policy"
        )
    problems: dict[str, list[int]] = defaultdict(list)
    kept = PreferenceData(source, [], [], [], [], len(rows))
    for i, row in enumerate(rows):
        prompt, chosen, rejected = split_row(row, i, source)
        try:
            texts = response_text(chosen, i), response_text(rejected, i)
        except ValueError:
            texts = ("", "")
        if not (texts[0].strip() and texts[1].strip()):
            problems["empty response"].append(i)
            continue
        if texts[0] == texts[1]:
            problems["chosen identical to rejected"].append(i)
            continue
        try:
            pair = encode_response(tokenizer, prompt, chosen), encode_response(tokenizer, prompt, rejected)
        except ValueError as err:
            if "no tokens" not in str(err):
                raise UserInputError(f"{row_location(source, i)}: {err}") from err
            problems["response has no tokens"].append(i)
            continue
        if min(p.completion_start for p in pair) == 0:
            problems["empty prompt (no token before the response)"].append(i)
            continue
        if max_length is not None and max(len(p.input_ids) for p in pair) > max_length:
            problems[f"longer than the model's context ({max_length} tokens)"].append(i)
            continue
        kept.prompts.append(prompt)
        kept.chosen.append(pair[0])
        kept.rejected.append(pair[1])
        kept.rows.append(i)
    kept.dropped = dict(problems)
    if problems and strict:
        summary = "; ".join(
            f"{len(r)} with {reason} (rows {', '.join(map(str, r[:5]))}{', ...' if len(r) > 5 else ''})"
            for reason, r in problems.items()
        )
        raise UserInputError(
            f"{source}: {sum(map(len, problems.values()))} of {len(rows)} rows are unusable: {summary}. "
            "Fix them, or leave out --strict to drop them (they are counted in OUT/data.json)"
        )
    if not kept.rows:
        raise UserInputError(f"{source}: no usable rows ({len(rows)} read, all dropped: {kept.report()['dropped']})")
    return kept


def path_fingerprint(resource: Any) -> str:
    """Identity of a model folder (file names, sizes, modification times) or of a hub id."""
    path = Path(str(resource))
    if not path.exists():
        return str(resource)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return json.dumps([str(path.resolve())] + [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files])


def token_rewards_fingerprint(name: str, resources: dict[str, Any], data: PreferenceData) -> str:
    """Hash of what a rewarder's scores depend on: its name, its resources and the pairs' text."""
    digest = hashlib.sha256(name.encode())
    for key in sorted(resources):
        digest.update(f"{key}={path_fingerprint(resources[key])}".encode())
    for prompt, chosen, rejected in zip(data.prompts, data.chosen, data.rejected):
        digest.update(json.dumps([prompt, chosen.text, rejected.text]).encode())
    return digest.hexdigest()[:16]


def unscored_record(name: str, text: str, reason: str) -> dict[str, Any]:
    """A response the rewarder could not score: reward 0 on all of it, with the reason."""
    return {
        "rewarder": name,
        "sequence_reward": 0.0,
        "tokens": [text],
        "offsets": [[0, len(text)]],
        "rewards": [0.0],
        "unscored": reason,
    }


def score_or_skip(
    rewarder: Rewarder, name: str, prompts: list[TextOrMessages], texts: list[str]
) -> list[dict[str, Any]]:
    """Records of a chunk; if the chunk fails, each response alone, a failing one unscored."""
    try:
        return rewarder.score(prompts, texts).records()
    except ValueError:
        records = []
        for prompt, text in zip(prompts, texts):
            try:
                records.extend(rewarder.score([prompt], [text]).records())
            except ValueError as err:
                records.append(unscored_record(name, text, str(err)))
        return records


def pair_token_rewards(
    name: str,
    resources: dict[str, Any],
    data: PreferenceData,
    cache_path: Path | None = None,
    progress: bool = True,
    chunk: int = 64,
    rewarder: Rewarder | None = None,
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[dict[str, Any]]]:
    """Token rewards of rewarder `name` for every chosen and rejected response, on the
    completion positions of the policy's tokenization (projected by character offsets with the
    rewarder's `combine`), and the responses it could not score (`{"row", "side", "reason"}`,
    e.g. a revision prompt longer than the model's context), which get reward 0.

    The rewarder's own output (`TokenRewards.record` per response) is computed in one pass and
    written to `cache_path` as JSONL (`{"chosen": record, "rejected": record}` per pair); a later
    call with the same path reads it and loads no model. A `rewarder` already built is used
    instead of building `name` from `resources`."""
    if cache_path is not None and cache_path.is_file():
        with cache_path.open() as handle:
            pairs = [json.loads(line) for line in handle if line.strip()]
        if len(pairs) != len(data):
            raise UserInputError(
                f"token-reward cache {cache_path} has {len(pairs)} pairs for {len(data)}; delete it to recompute"
            )
        chosen = [p["chosen"] for p in pairs]
        rejected = [p["rejected"] for p in pairs]
    else:
        rewarder = rewarder or build_rewarder(name, resources)
        chosen, rejected = [None] * len(data), [None] * len(data)
        with progress_bar(2 * len(data), f"token rewards ({name})", enabled=progress) as advance:
            for records, side in ((chosen, data.chosen), (rejected, data.rejected)):
                order = sorted(range(len(data)), key=lambda i: len(side[i].input_ids))  # little padding
                for start in range(0, len(data), chunk):
                    indices = order[start : start + chunk]
                    scored = score_or_skip(
                        rewarder, name, [data.prompts[i] for i in indices], [side[i].text for i in indices]
                    )
                    for i, record in zip(indices, scored):
                        records[i] = record
                    advance(len(indices))
        if cache_path is not None:  # a temporary file of its own per writer: data-parallel ranks write it at once
            with atomic_write(cache_path) as handle:
                for c, r in zip(chosen, rejected):
                    handle.write(json.dumps({"chosen": c, "rejected": r}) + "\n")
    combine = rewarder.combine if rewarder is not None else REWARDERS.get(name).combine

    def project(records: list[dict], encoded: list[EncodedResponse]) -> list[torch.Tensor]:
        """The cached records as `TokenRewards`, projected onto the policy's response tokens."""
        cached = TokenRewards.from_lists(
            name, [enc.text for enc in encoded], [r["offsets"] for r in records], [r["rewards"] for r in records],
            [r["sequence_reward"] for r in records],
        )  # fmt: skip
        on_policy = cached.project([enc.offsets for enc in encoded], combine)
        return [enc.on_completion(on_policy.token_rewards(i)) for i, enc in enumerate(encoded)]

    unscored = [
        {"row": data.rows[i], "side": side, "reason": rec["unscored"]}
        for side, records in (("chosen", chosen), ("rejected", rejected))
        for i, rec in enumerate(records)
        if "unscored" in rec
    ]
    return project(chosen, data.chosen), project(rejected, data.rejected), unscored
