"""Token heatmaps of a `TokenRewards.record(i)` dict: in the terminal (rich) and as HTML.

Colour: red for a negative reward, green for a positive one, intensity `|r| / scale` where
`scale` is the largest `|r|` of the record unless given. Tokens whose character spans overlap
(the bytes of one character split over several byte-level tokens) are drawn as one cell
coloured by their summed reward; the HTML hover text lists every token's own reward.
Characters that no token covers (whitespace some tokenizers leave out of their offsets) are
drawn uncoloured as spaces, since a record holds only its tokens.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.style import Style
from rich.text import Text

from tokenreward.errors import UserInputError

NEGATIVE = (214, 39, 40)
POSITIVE = (44, 160, 44)
WHITE = (255, 255, 255)
RECORD_KEYS = ("rewarder", "sequence_reward", "tokens", "offsets", "rewards")


@dataclass
class Cell:
    """One drawn piece: `gap` uncovered characters, then `text` coloured by `reward`."""

    gap: int
    text: str
    reward: float
    members: list[int]


def check_record(record: dict[str, Any]) -> None:
    missing = [k for k in RECORD_KEYS if k not in record]
    if missing:
        raise UserInputError(f"heatmap record lacks {', '.join(missing)} (expected the JSON of TokenRewards.record)")
    n = len(record["tokens"])
    if not (len(record["offsets"]) == len(record["rewards"]) == n):
        raise UserInputError(
            f"heatmap record has {n} tokens, {len(record['offsets'])} offsets and {len(record['rewards'])} rewards"
        )
    bad = [t for t, r in enumerate(record["rewards"]) if not math.isfinite(float(r))]
    if bad:
        raise UserInputError(f"heatmap record has a non-finite reward at token {bad[0]}")


def cells(record: dict[str, Any]) -> list[Cell]:
    """Tokens grouped into drawn cells (see the module docstring); an empty-span token joins
    the next cell (the last one if none follows)."""
    check_record(record)
    out: list[Cell] = []
    pending: list[int] = []
    end = 0
    for t, (token, (start, stop)) in enumerate(zip(record["tokens"], record["offsets"])):
        if stop <= start:
            pending.append(t)
            continue
        if out and start < end:
            out[-1].text += token[end - start :] if stop > end else ""
            out[-1].members.append(t)
        else:
            out.append(Cell(max(start - end, 0), token, 0.0, pending + [t]))
            pending = []
        end = max(end, stop)
    if pending:
        if out:
            out[-1].members += pending
        else:
            out.append(Cell(0, "", 0.0, pending))
    for cell in out:
        cell.reward = sum(float(record["rewards"][t]) for t in cell.members)
    return out


def colour(reward: float, scale: float) -> tuple[int, int, int]:
    """White blended towards red (negative) or green (positive) by `|reward| / scale`."""
    target = POSITIVE if reward > 0 else NEGATIVE
    weight = min(abs(reward) / scale, 1.0) if scale > 0 else 0.0
    return tuple(round(w + (c - w) * weight) for w, c in zip(WHITE, target))


def record_scale(record: dict[str, Any]) -> float:
    return max((abs(c.reward) for c in cells(record)), default=0.0)


def header(record: dict[str, Any], scale: float) -> str:
    total = sum(float(r) for r in record["rewards"])
    return (
        f"{record['rewarder']}: sequence reward {float(record['sequence_reward']):+.4f}, "
        f"token rewards sum {total:+.4f}, {len(record['tokens'])} tokens, colour scale +-{scale:.4g}"
    )


def terminal_heatmap(record: dict[str, Any], scale: float | None = None) -> Text:
    """A rich `Text`: a header line, then the response with each token's background coloured."""
    scale = record_scale(record) if scale is None else scale
    text = Text(header(record, scale) + "\n", style="bold")
    for cell in cells(record):
        text.append(" " * cell.gap)
        text.append(cell.text, style=Style(color="black", bgcolor="rgb({},{},{})".format(*colour(cell.reward, scale))))
    return text


def html_fragment(record: dict[str, Any], scale: float | None = None) -> str:
    """A self-contained `<div>`: the header, then the tokens as coloured spans whose hover
    text gives each token's reward and character span."""
    scale = record_scale(record) if scale is None else scale
    spans = []
    for cell in cells(record):
        details = "\n".join(
            f"{record['tokens'][t]!r} [{record['offsets'][t][0]}:{record['offsets'][t][1]}] reward {float(record['rewards'][t]):+.6f}"
            for t in cell.members
        )
        rgb = "rgb({},{},{})".format(*colour(cell.reward, scale))
        spans.append(
            " "
            * cell.gap
            + f'<span style="background:{rgb};border-radius:2px" title="{html.escape(details, quote=True)}" '
            f'data-reward="{cell.reward:.6g}">{html.escape(cell.text)}</span>'
        )
    return (
        '<div class="tokenreward-heatmap" style="font-family:monospace;margin:1em 0">'
        f'<div style="font-weight:bold;margin-bottom:.3em">{html.escape(header(record, scale))}</div>'
        f'<div style="white-space:pre-wrap;line-height:1.6;color:#000">{"".join(spans)}</div></div>'
    )


def html_page(records: Sequence[dict[str, Any]], title: str = "tokenreward heatmap") -> str:
    """A whole self-contained HTML page (no scripts, no external files) with one heatmap per record."""
    body = "\n".join(html_fragment(r) for r in records)
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f'<title>{html.escape(title)}</title></head>\n<body style="max-width:60em;margin:2em auto">'
        f'<h1 style="font-family:sans-serif">{html.escape(title)}</h1>\n'
        '<p style="font-family:sans-serif">Red: negative reward, green: positive; intensity: magnitude '
        "relative to the response's largest. Hover a token for its reward.</p>\n"
        f"{body}\n</body></html>\n"
    )
