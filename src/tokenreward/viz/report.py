"""Self-contained HTML reports: tables, the learning curves as an embedded PNG (base64), and
sample responses drawn as token heatmaps (`tokenreward.viz.heatmap.html_fragment`).

The page loads nothing from outside: one file to open, mail or attach to an issue.
`rl_report` renders the `results.json` of `tokenreward bench rl` (see `tokenreward.bench.rl`).
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

STYLE = """
body { font-family: system-ui, -apple-system, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
caption { caption-side: bottom; font-size: 0.85em; color: #555; text-align: left; padding-top: 0.4em; }
.sample { border: 1px solid #e3e3e3; border-radius: 6px; padding: 0.6em 0.9em; margin: 0.8em 0; }
.prompt { white-space: pre-wrap; color: #555; font-family: ui-monospace, monospace; font-size: 0.88em; }
.meta { color: #555; font-size: 0.85em; }
img { max-width: 100%; }
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def html_document(title: str, body: str) -> str:
    """A whole page with the report style and no external resources."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{esc(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{esc(title)}</h1>\n{body}\n</body>\n</html>\n"
    )


def png_image(png: bytes | Path | str, alt: str) -> str:
    """An `<img>` carrying the PNG itself as a base64 data URI."""
    data = png if isinstance(png, bytes) else Path(png).read_bytes()
    if not data.startswith(b"\x89PNG"):
        raise ValueError(f"png_image: {alt!r} is not a PNG")
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}">'


def html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], caption: str | None = None) -> str:
    """A table of escaped cells (numbers are formatted by the caller)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>\n" for row in rows)
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return f"<table>{cap}\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody></table>"


def format_stat(stat: Mapping[str, Any] | float | None, digits: int = 3) -> str:
    """`mean ± std` for a `{"mean", "std"}` dict, the number itself for a float, `-` for None."""
    if stat is None:
        return "-"
    if isinstance(stat, (int, float)):
        return f"{stat:.{digits}f}"
    if stat.get("mean") is None:
        return "-"
    return f"{stat['mean']:.{digits}f} ± {stat.get('std', 0.0):.{digits}f}"


def format_steps(stat: Mapping[str, Any] | None) -> str:
    """Steps to reach the baseline: `mean ± std (reached k/n)`, or `not reached (0/n)`."""
    if not stat:
        return "-"
    reached = f"{stat['reached']}/{stat['of']}"
    if not stat["reached"]:
        return f"not reached ({reached})"
    return f"{stat['mean']:.1f} ± {stat['std']:.1f} ({reached})"


def results_table(results: Mapping[str, Any]) -> str:
    """One row per method (SFT first): held-out oracle score of sampled responses, its gain
    over SFT, the greedy responses' oracle score, KL, length, defect rate, and the steps
    needed to reach the baseline's final logged oracle score."""
    sft = results["sft"]
    rows = []
    for name, entry in [("SFT policy", sft), *results["methods"].items()]:
        score = entry["oracle_score"]
        gain = None
        if name != "SFT policy" and score and sft["oracle_score"]:
            gain = {"mean": score["mean"] - sft["oracle_score"]["mean"], "std": score["std"]}
        steps = "-" if name == "SFT policy" else (
            "baseline" if name == results.get("baseline") else format_steps(entry.get("steps_to_target")))
        rows.append([
            name,
            entry.get("trainer", "-"),
            (entry.get("rewarder") or "(default)") if name != "SFT policy" else "-",
            format_stat(score),
            format_stat(gain),
            format_stat(entry.get("greedy_oracle_score")),
            format_stat(entry.get("kl")),
            format_stat(entry.get("length"), 1),
            format_stat(entry.get("defect_rate")),
            steps,
        ])
    target = results.get("target_oracle_score")
    caption = (
        f"Held-out ({results.get('split', 'test')}) prompts, one sampled response each (temperature 1, as in training; "
        f"greedy: the greedy response), mean ± std over {len(results.get('seeds', []))} seed(s) after "
        f"{results.get('steps')} training steps. KL: summed log-ratio to the SFT policy per sampled response. "
        f"Last column: training steps until the logged oracle score of the training batches (trailing mean of "
        f"{results.get('window', 1)} steps) first reaches {results.get('baseline')}'s final value"
        + (f" ({target:.3f})." if isinstance(target, (int, float)) else " (no baseline curve).")
    )
    headers = ["method", "trainer", "rewarder", "oracle score", "gain over SFT", "greedy oracle score", "KL to SFT",
               "length", "defect rate", f"steps to reach {results.get('baseline')}"]
    return html_table(headers, rows, caption)


def sample_block(sample: Mapping[str, Any]) -> str:
    """One held-out sample: its prompt, the response as a token heatmap, the oracle score."""
    from tokenreward.viz.heatmap import html_fragment

    record = sample["record"]
    meta = f"oracle score {sample['oracle_score']:.3f}"
    return (
        f'<div class="sample"><div class="prompt">{esc(sample["prompt"])}</div>\n'
        f"{html_fragment(record)}\n<div class=\"meta\">{esc(meta)}</div></div>"
    )


def samples_section(samples: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """Per method its sample responses; each sample is `{"prompt", "oracle_score", "record"}`
    with `record` a `TokenRewards.record` dict."""
    parts = []
    for method, items in samples.items():
        parts.append(f"<h3>{esc(method)}</h3>")
        parts.extend(sample_block(s) for s in items)
        if not items:
            parts.append('<p class="meta">no samples</p>')
    return "\n".join(parts)


def rl_report(
    results: Mapping[str, Any],
    curves_png: bytes | Path | str | None,
    samples: Mapping[str, Sequence[Mapping[str, Any]]],
    title: str = "tokenreward bench rl",
) -> str:
    """The `bench rl` page: settings, the results table, learning curves, sample heatmaps."""
    settings = html_table(
        ["setting", "value"],
        [
            ["world", results.get("world", "-")],
            ["methods", ", ".join(results["methods"])],
            ["seeds", ", ".join(str(s) for s in results.get("seeds", []))],
            ["steps per run", results.get("steps", "-")],
            ["held-out prompts", results.get("eval_prompts", "-")],
            ["baseline", results.get("baseline", "-")],
        ],
    )
    heatmap_rewarder = results.get("heatmap_rewarder", "a rewarder")
    body = [
        "<h2>Settings</h2>", settings,
        "<h2>Results</h2>", results_table(results),
        "<h2>Learning curves</h2>",
        png_image(curves_png, "learning curves") if curves_png is not None else '<p class="meta">no curves logged</p>',
        "<h2>Sample responses</h2>",
        f'<p class="meta">Sampled held-out responses of each final policy (first seed), coloured by the per-token rewards of '
        f"{esc(heatmap_rewarder)}; hover a token for its value.</p>",
        samples_section(samples),
    ]
    return html_document(title, "\n".join(body))
