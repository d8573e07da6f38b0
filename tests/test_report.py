"""The HTML report: self-contained, well-formed, escaped, and showing the numbers it is given."""

from __future__ import annotations

import base64
import re
import statistics
from html.parser import HTMLParser

import pytest

from tokenreward.viz.plots import save_learning_curves
from tokenreward.viz.report import format_stat, gap_to_baseline, html_table, png_image, rl_report

VOID = {"meta", "img", "br", "hr", "input", "link"}


class Collector(HTMLParser):
    """Checks that every opened element is closed in order; collects images, links and table rows."""

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.sources: list[str] = []
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("src", "href"):
            if key in attrs:
                self.sources.append(attrs[key])
        if tag == "tr":
            self.rows.append([])
        if tag in ("td", "th"):
            self._cell = []
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def parse(document: str) -> Collector:
    collector = Collector()
    collector.feed(document)
    collector.close()
    assert collector.errors == [] and collector.stack == []
    return collector


def stat(values):
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values), "values": values}


def token_record(text: str, rewards: list[float]) -> dict:
    cuts = [0, 4, 9, len(text)]
    offsets = [[cuts[k], cuts[k + 1]] for k in range(3)]
    return {
        "rewarder": "red",
        "sequence_reward": sum(rewards),
        "tokens": [text[s:e] for s, e in offsets],
        "offsets": offsets,
        "rewards": rewards,
    }


@pytest.fixture
def results():
    red = [0.61, 0.72, 0.66]
    sparse = [0.41, 0.52, 0.39]
    return {
        "steps": 40,
        "seeds": [0, 1, 2],
        "split": "test",
        "baseline": "ppo-sparse",
        "window": 5,
        "target_oracle_score": 0.44,
        "world": "world/small",
        "eval_prompts": 16,
        "heatmap_rewarder": "red",
        "sft": {
            "oracle_score": stat([0.2, 0.3, 0.25]),
            "greedy_oracle_score": stat([-1.0, -1.0, -1.0]),
            "kl": stat([0.0, 0.0, 0.0]),
            "length": stat([14.0, 15.0, 14.5]),
            "defect_rate": stat([0.6, 0.5, 0.7]),
        },
        "methods": {
            "ppo-sparse": {
                "trainer": "ppo",
                "rewarder": "sparse",
                "oracle_score": stat(sparse),
                "kl": stat([0.1, 0.2, 0.3]),
                "length": stat([12.0, 13.0, 15.0]),
                "defect_rate": stat([0.3, 0.2, 0.4]),
            },
            "ppo-red": {
                "trainer": "ppo",
                "rewarder": "red",
                "oracle_score": stat(red),
                "kl": stat([0.2, 0.2, 0.5]),
                "greedy_oracle_score": stat([0.5, 0.1, 0.3]),
                "length": stat([11.0, 12.0, 13.0]),
                "defect_rate": stat([0.1, 0.2, 0.1]),
                "steps_to_target": {"mean": 15.0, "std": 7.0710678, "values": [10, 20], "reached": 2, "of": 3},
            },
            "rloo": {
                "trainer": "rloo",
                "rewarder": None,
                "oracle_score": stat([0.3, 0.31, 0.2]),
                "kl": None,
                "length": None,
                "defect_rate": None,
                "steps_to_target": {"mean": None, "std": None, "values": [], "reached": 0, "of": 3},
            },
        },
    }


def test_table_cells_are_the_seed_statistics(tmp_path, results):
    png = save_learning_curves(
        tmp_path / "c.png",
        {"ppo-red": [[{"step": 1, "oracle_score": 0.1}, {"step": 2, "oracle_score": 0.3}]]},
        metrics=("oracle_score",),
    )
    page = rl_report(results, png, {})
    rows = {row[0]: row for row in parse(page).rows if row}
    header = rows["method"]
    red, rloo, sft = (dict(zip(header, rows[k])) for k in ("ppo-red", "rloo", "SFT policy"))
    red_scores = [0.61, 0.72, 0.66]
    assert red["oracle score"] == f"{statistics.fmean(red_scores):.3f} ± {statistics.stdev(red_scores):.3f}"
    assert red["gain over SFT"] == f"{statistics.fmean(red_scores) - 0.25:.3f} ± {statistics.stdev(red_scores):.3f}"
    assert (
        red["greedy oracle score"]
        == f"{statistics.fmean([0.5, 0.1, 0.3]):.3f} ± {statistics.stdev([0.5, 0.1, 0.3]):.3f}"
    )
    assert red["length"] == "12.0 ± 1.0"
    assert red["steps to reach ppo-sparse"] == "15.0 ± 7.1 (2/3)"
    assert dict(zip(header, rows["ppo-sparse"]))["steps to reach ppo-sparse"] == "baseline"
    assert rloo["steps to reach ppo-sparse"] == "not reached (0/3)"
    assert rloo["KL to SFT"] == "-" and rloo["rewarder"] == "(default)" and rloo["greedy oracle score"] == "-"
    assert sft["oracle score"] == "0.250 ± 0.050" and sft["length"] == "14.5 ± 0.5" and sft["gain over SFT"] == "-"


def test_page_is_self_contained_and_embeds_the_png(tmp_path, results):
    png = save_learning_curves(
        tmp_path / "c.png",
        {"ppo-red": [[{"step": 1, "oracle_score": 0.1}, {"step": 2, "oracle_score": 0.3}]]},
        metrics=("oracle_score",),
    )
    collector = parse(rl_report(results, png, {}))
    assert len(collector.sources) == 1 and all(s.startswith("data:") for s in collector.sources)
    assert base64.b64decode(collector.sources[0].split(",", 1)[1]) == png.read_bytes()
    with pytest.raises(ValueError, match="not a PNG"):
        png_image(b"GIF89a", "x")


def test_cells_and_prompts_are_escaped():
    table = html_table(["a<b"], [["<script>alert(1)</script>"]])
    assert "<script>" not in table and "&lt;script&gt;" in table
    assert parse(table).rows == [["a<b"], ["<script>alert(1)</script>"]]
    assert format_stat(None) == "-" and format_stat(0.12345) == "0.123" and format_stat({"mean": None}) == "-"


def test_samples_are_drawn_with_the_heatmap_fragment(results):
    from tokenreward.viz.heatmap import html_fragment

    record = token_record("The answer is 42.", [0.5, -0.25, 1.0])
    samples = {
        "SFT policy": [],
        "ppo-red": [
            {"prompt": "<b>Q</b>: 6 * 7?", "response": "The answer is 42.", "oracle_score": 0.8, "record": record}
        ],
    }
    page = rl_report(results, None, samples, title="bench & co")
    parse(page)
    assert html_fragment(record) in page
    assert "&lt;b&gt;Q&lt;/b&gt;: 6 * 7?" in page and "<b>Q</b>" not in page
    assert "<title>bench &amp; co</title>" in page
    assert re.search(r'<div class="meta">oracle score 0\.800</div>', page)
    assert "no samples" in page and "no curves logged" in page


def test_one_seed_shows_no_spread():
    assert format_stat({"mean": 0.5, "std": 0.0, "values": [0.5]}) == "0.500"
    assert format_stat({"mean": 0.5, "std": 0.1, "values": [0.4, 0.6]}) == "0.500 ± 0.100"


def test_summary_weighs_the_gap_against_the_seed_spread(results):
    red, sparse = [0.61, 0.72, 0.66], [0.41, 0.52, 0.39]
    comparison = gap_to_baseline(results, "ppo-red")
    gap, spread = statistics.fmean(red) - statistics.fmean(sparse), statistics.stdev(red) + statistics.stdev(sparse)
    assert comparison["gap"] == pytest.approx(gap) and comparison["spread"] == pytest.approx(spread)
    assert comparison["outside"] is (abs(gap) > spread) is True and comparison["seeds"] == 3
    page = rl_report(results, None, {})
    summary = re.search(r'<p class="summary">(.*?)</p>', page).group(1)
    assert summary.count(". ") + summary.endswith(".") >= 3
    assert (
        "16 held-out prompts" in summary
        and "no model saw" in summary
        and "the SFT policy before RL scores 0.250 ± 0.050" in summary
    )
    assert f"{gap:+.3f}" in summary and "ppo-red is ahead" in summary  # ppo-red: the best mean besides the baseline
    assert "<title>ppo-sparse vs ppo-red vs rloo: held-out oracle score after 40 RL steps, 3 seeds</title>" in page

    results["methods"]["ppo-sparse"]["oracle_score"] = stat([0.60, 0.75, 0.62])
    within = rl_report(results, None, {})
    assert "do not show a winner" in within and "is ahead" not in within
    assert gap_to_baseline(results, "ppo-sparse") is None and gap_to_baseline(results, "nothing") is None


def test_one_seed_summary_claims_no_winner(results):
    results["seeds"] = [0]
    for entry in [results["sft"], *results["methods"].values()]:
        first = entry["oracle_score"]["values"][0]
        entry["oracle_score"] = {"mean": first, "std": 0.0, "values": [first]}
    page = rl_report(results, None, {})
    assert (
        "With one seed there is no spread" in page
        and "is ahead" not in page
        and "±" not in page.split("<h2>Settings")[0]
    )
    assert "one seed, so no spread is shown" in page and gap_to_baseline(results, "ppo-red")["outside"] is False
