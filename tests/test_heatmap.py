"""Token heatmaps: colours by sign and magnitude, hover numbers, grouping, escaping."""

from __future__ import annotations

import re

import pytest
from rich.color import Color

from tokenreward.rewards import TokenRewards
from tokenreward.viz.heatmap import html_fragment, html_page, terminal_heatmap

RESPONSE = " The answer is <42> & done"
OFFSETS = [(0, 4), (4, 11), (11, 14), (14, 16), (16, 19), (19, 21), (21, 26)]
REWARDS = [0.5, -2.0, 0.0, 1.0, -0.25, 2.0, -1.0]


def record() -> dict:
    return TokenRewards.from_lists("red", [RESPONSE], [OFFSETS], [REWARDS], [0.25]).record(0)


def background(style) -> tuple[int, int, int]:
    return Color.parse(str(style.bgcolor.name)).get_truecolor()


def test_terminal_colours_follow_sign_and_magnitude():
    text = terminal_heatmap(record())
    header, body = text.plain.split("\n", 1)
    assert body == RESPONSE
    assert "sequence reward +0.2500" in header and "sum +0.2500" in header
    spans = [s for s in text.spans if s.start >= len(header) + 1]
    assert [body[s.start - len(header) - 1 : s.end - len(header) - 1] for s in spans] == [
        RESPONSE[a:b] for a, b in OFFSETS
    ]
    scale = max(abs(r) for r in REWARDS)
    for span, reward in zip(spans, REWARDS):
        r, g, b = background(span.style)
        if reward > 0:
            assert g > r and g > b
        elif reward < 0:
            assert r > g and r > b
        else:
            assert (r, g, b) == (255, 255, 255)
        # intensity: distance from white grows linearly with |reward| / scale
        target = (44, 160, 44) if reward > 0 else (214, 39, 40)
        assert 255 - g == pytest.approx(abs(reward) / scale * (255 - target[1]), abs=1)


def test_html_has_numbers_on_hover_and_escapes():
    fragment = html_fragment(record())
    assert fragment.startswith("<div") and fragment.endswith("</div>")
    titles = re.findall(r'title="([^"]*)"', fragment)
    assert len(titles) == len(REWARDS)
    for title, reward, (s, e) in zip(titles, REWARDS, OFFSETS):
        assert f"[{s}:{e}] reward {reward:+.6f}" in title
    assert " &lt;<" in fragment and ">42&gt;<" in fragment and " &amp;<" in fragment and "<42>" not in fragment
    page = html_page([record(), record()], title="two <records>")
    assert page.count('class="tokenreward-heatmap"') == 2
    assert "<title>two &lt;records&gt;</title>" in page
    assert "<script" not in page and "http" not in page


def test_split_characters_form_one_cell():
    response = " naïve"
    rec = {
        "rewarder": "x",
        "sequence_reward": 1.0,
        "tokens": [" ", "n", "a", "ï", "ï", "v", "e", ""],
        "offsets": [[0, 1], [1, 2], [2, 3], [3, 4], [3, 4], [4, 5], [5, 6], [6, 6]],
        "rewards": [0.1, 0.2, 0.3, 0.4, -0.6, 0.5, 0.6, 0.7],
    }
    text = terminal_heatmap(rec)
    assert text.plain.split("\n", 1)[1] == response
    fragment = html_fragment(rec)
    assert len(re.findall(r"<span", fragment)) == 6
    assert 'data-reward="-0.2"' in fragment  # the two bytes of "ï" share one cell, 0.4 - 0.6
    assert 'data-reward="1.3"' in fragment  # the empty-span EOS joins the last cell, 0.6 + 0.7


def test_bad_records():
    with pytest.raises(ValueError, match="lacks rewards"):
        terminal_heatmap({"rewarder": "x", "sequence_reward": 0.0, "tokens": [], "offsets": []})
    with pytest.raises(ValueError, match="2 tokens, 2 offsets and 1 rewards"):
        html_fragment(
            {
                "rewarder": "x",
                "sequence_reward": 0.0,
                "tokens": ["a", "b"],
                "offsets": [[0, 1], [1, 2]],
                "rewards": [1.0],
            }
        )
    with pytest.raises(ValueError, match="non-finite reward at token 1"):
        html_fragment(
            {
                "rewarder": "x",
                "sequence_reward": 0.0,
                "tokens": ["a", "b"],
                "offsets": [[0, 1], [1, 2]],
                "rewards": [1.0, float("nan")],
            }
        )
