"""Alignment between tokenizations by character offsets.

`project_rewards` moves per-token rewards from one tokenization of a response (e.g. the
reward model's) onto another (e.g. the policy's). Source token `k` with end offset `e_k` is
credited to the first target token whose end offset is `>= e_k`, i.e. the target token that
contains the source token's last character. With `combine="sum"` each target token gets the
sum of its source tokens' rewards, so for RED it receives the difference of the prefix scores
at the last source boundary inside its end and the one before, and the total is unchanged.
With `combine="mean"` (for bounded rewards such as TLCR's) it gets their mean; a target token
that receives no source token gets 0.
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenreward.errors import UserInputError
from tokenreward.types import Offsets


def check_offsets(offsets: Offsets, text_length: int, what: str) -> None:
    """Offsets must lie inside the text with non-decreasing end offsets."""
    previous_end = 0
    for t, (start, end) in enumerate(offsets):
        if not (0 <= start <= end <= text_length):
            raise UserInputError(
                f"{what}: token {t} has offsets ({start}, {end}), not a span of the response of length {text_length}"
            )
        if end < previous_end:
            raise UserInputError(
                f"{what}: token {t} ends at {end}, before the previous token's end {previous_end}; cannot align"
            )
        previous_end = end


def project_rewards(
    source_offsets: Offsets,
    source_rewards: Sequence[float],
    target_offsets: Offsets,
    text_length: int,
    combine: str = "sum",
) -> list[float]:
    """Re-project rewards from source tokens onto target tokens (see module docstring)."""
    if combine not in ("sum", "mean"):
        raise UserInputError(f"combine must be 'sum' or 'mean', got {combine!r}")
    if len(source_offsets) != len(source_rewards):
        raise UserInputError(f"{len(source_rewards)} rewards for {len(source_offsets)} source tokens")
    check_offsets(source_offsets, text_length, "source tokenizer")
    check_offsets(target_offsets, text_length, "target tokenizer")
    if not target_offsets:
        raise UserInputError("target tokenization is empty; cannot align rewards to it")
    if target_offsets[-1][1] < (source_offsets[-1][1] if source_offsets else 0):
        raise UserInputError(
            f"target tokens end at character {target_offsets[-1][1]} but source tokens cover up to "
            f"{source_offsets[-1][1]}; the two tokenizations do not cover the same text"
        )
    totals = [0.0] * len(target_offsets)
    counts = [0] * len(target_offsets)
    j = 0
    for (_, end), reward in zip(source_offsets, source_rewards):
        while target_offsets[j][1] < end:
            j += 1
        totals[j] += float(reward)
        counts[j] += 1
    if combine == "mean":
        return [t / c if c else 0.0 for t, c in zip(totals, counts)]
    return totals


def offsets_from_ids(tokenizer, token_ids: Sequence[int]) -> tuple[str, Offsets]:
    """Decode generated token ids to text and give each token its character span.

    Token `k` ends where the decoded prefix `decode(ids[:k+1])` stops agreeing with the full
    text, so a character split over several byte-level tokens (whose partial decode is a
    replacement character) belongs to the token that completes it, and merged whitespace to
    the token that emits it. Special tokens are skipped in the text (they get an empty span).

    Linear time: the prefix is not decoded whole. Once `ids[:a]` has decoded to exactly
    `text[:n]` (an anchor), `decode(ids[:k+1])` is taken as `text[:n]` followed by what
    `ids[c:k+1]` decodes to beyond `ids[c:a]`, `c` the anchor before (a token of context, so
    that decoders which treat a sequence's first token specially, e.g. SentencePiece's
    leading space, see it in place). When that context does not decode as a prefix of the
    window, the whole prefix is decoded.
    """
    ids = list(token_ids)
    text = tokenizer.decode(ids, skip_special_tokens=True)
    offsets: Offsets = []
    previous = 0
    context, anchor, anchor_length, context_text = 0, 0, 0, ""
    for k in range(len(ids)):
        window = tokenizer.decode(ids[context : k + 1], skip_special_tokens=True)
        if not window.startswith(context_text):
            end = _common_prefix_length(tokenizer.decode(ids[: k + 1], skip_special_tokens=True), text)
            offsets.append((previous, max(end, previous)))
            previous = max(end, previous)
            continue
        tail = window[len(context_text) :]
        matched = _common_prefix_length(tail, text[anchor_length : anchor_length + len(tail)])
        end = max(anchor_length + matched, previous)
        offsets.append((previous, end))
        previous = end
        if tail and matched == len(tail) and not tail.endswith("\ufffd"):
            following = tokenizer.decode(ids[anchor : k + 1], skip_special_tokens=True)
            if following:
                context, context_text = anchor, following
            else:
                context_text = window
            anchor, anchor_length = k + 1, anchor_length + len(tail)
    return text, offsets


def _common_prefix_length(a: str, b: str) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    return next(i for i in range(n) if a[i] != b[i])


def terminal_layout(rewards: Sequence[float], offsets: Offsets, text_length: int) -> list[float]:
    """The policy-token layout: the reward on the token that completes the text (the first whose
    end reaches `text_length`) moves to the last token, so that when generation ended with an
    EOS (an empty span after the text) the sparse reward sits on the EOS, where PPO-RLHF, verl
    and TRL put a sequence score; the total is unchanged."""
    row = [float(v) for v in rewards]
    if len(row) != len(offsets):
        raise UserInputError(f"{len(row)} rewards for {len(offsets)} tokens")
    if not row:
        return row
    completing = next((t for t, (_, end) in enumerate(offsets) if end >= text_length), len(row) - 1)
    terminal = len(row) - 1
    if completing != terminal:
        row[terminal] += row[completing]
        row[completing] = 0.0
    return row
