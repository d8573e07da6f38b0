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

from tokenreward.errors import UserInputError

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
.summary { font-size: 1.05em; line-height: 1.5; max-width: 60em; }
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def html_document(title: str, body: str) -> str:
    """A whole page with the report style and no external resources."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{esc(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{esc(title)}</h1>\n{body}\n</body>\n</html>\n"
    )


def png_image(png: bytes | Path | str, alt: str) -> str:
    """An `<img>` carrying the PNG itself as a base64 data URI."""
    data = png if isinstance(png, bytes) else Path(png).read_bytes()
    if not data.startswith(b"\x89PNG"):
        raise UserInputError(f"png_image: {alt!r} is not a PNG")
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}">'


def html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], caption: str | None = None) -> str:
    """A table of escaped cells (numbers are formatted by the caller)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>\n" for row in rows)
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return f"<table>{cap}\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody></table>"


def format_stat(stat: Mapping[str, Any] | float | None, digits: int = 3) -> str:
    """`mean ± std` for a `{"mean", "std"}` dict, the number itself for a float, `-` for None;
    a dict of one value (`values` of length 1: one seed, no spread) shows the value alone."""
    if stat is None:
        return "-"
    if isinstance(stat, (int, float)):
        return f"{stat:.{digits}f}"
    if stat.get("mean") is None:
        return "-"
    if len(stat.get("values", ())) == 1:
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ± {stat.get('std', 0.0):.{digits}f}"


def gap_to_baseline(
    results: Mapping[str, Any], method: str, scores: Mapping[str, Any] | None = None
) -> dict[str, Any] | None:
    """`method`'s mean held-out oracle score minus the baseline's (`gap`), the seed spread
    `std_method + std_baseline`, and `outside`: whether the two `mean ± std` intervals are
    apart (`|gap| > spread`, which needs at least two seeds each). None without both scores.
    `scores` maps methods to `{mean, std, values}` (default: the scores after the full budget)."""
    baseline = results.get("baseline")
    if scores is None:
        scores = {name: entry.get("oracle_score") for name, entry in results.get("methods", {}).items()}
    if method == baseline or method not in scores or baseline not in scores:
        return None
    a, b = scores[method], scores[baseline]
    if not a or not b or a.get("mean") is None or b.get("mean") is None:
        return None
    seeds = min(len(a.get("values", ())), len(b.get("values", ())))
    gap, spread = a["mean"] - b["mean"], a.get("std", 0.0) + b.get("std", 0.0)
    return {
        "method": method,
        "baseline": baseline,
        "gap": gap,
        "spread": spread,
        "seeds": seeds,
        "outside": seeds >= 2 and abs(gap) > spread,
    }


def gap_sentence(comparison: Mapping[str, Any]) -> str:
    """The comparison in words, claiming a winner only when the gap is outside the seed spread."""
    method, baseline, gap = comparison["method"], comparison["baseline"], comparison["gap"]
    if comparison["seeds"] < 2:
        return (
            f"With one seed there is no spread to weigh the gap of {gap:+.3f} ({method} minus {baseline}) against, "
            "so these runs do not show which method is better."
        )
    spread = f"the seed spread ({comparison['spread']:.3f}, the two standard deviations added)"
    if not comparison["outside"]:
        return f"The gap ({method} minus {baseline}) is {gap:+.3f}, within {spread}: these runs do not show a winner."
    leader = method if gap > 0 else baseline
    return f"The gap ({method} minus {baseline}) is {gap:+.3f}, outside {spread}: over these seeds {leader} is ahead."


def format_steps(stat: Mapping[str, Any] | None) -> str:
    """Steps to reach the baseline: `mean ± std (reached k/n), KL mean ± std` (the logged KL at
    those steps), or `not reached (0/n)`."""
    if not stat:
        return "-"
    reached = f"{stat['reached']}/{stat['of']}"
    if not stat["reached"]:
        return f"not reached ({reached})"
    kl = f", KL {format_stat(stat['kl'])}" if stat.get("kl") else ""
    return f"{stat['mean']:.1f} ± {stat['std']:.1f} ({reached}){kl}"


def format_reading(reading: Mapping[str, Any] | None) -> str:
    """A score at matched KL: `mean ± std (k/n seeds reach it)`, `-` when none does."""
    if not reading or reading.get("mean") is None:
        return "-" if not reading else f"not reached (0/{reading['of']})"
    return f"{format_stat(reading)} ({reading['reached']}/{reading['of']})"


def matched_kl_reading(results: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    return ((results.get("matched_kl") or {}).get("methods") or {}).get(name)


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
        steps = (
            "-"
            if name == "SFT policy"
            else ("baseline" if name == results.get("baseline") else format_steps(entry.get("steps_to_target")))
        )
        rows.append(
            [
                name,
                entry.get("trainer", "-"),
                (entry.get("rewarder") or "(default)") if name != "SFT policy" else "-",
                format_reading(matched_kl_reading(results, name)) if name != "SFT policy" else "-",
                format_stat(score),
                format_stat(gain),
                format_stat(entry.get("greedy_oracle_score")),
                format_stat(entry.get("kl")),
                format_stat(entry.get("length"), 1),
                format_stat(entry.get("defect_rate")),
                steps,
            ]
        )
    target = results.get("target_oracle_score")
    seeds = len(results.get("seeds", []))
    over = f"mean ± std over {seeds} seeds" if seeds > 1 else "one seed, so no spread is shown (one run can be noise)"
    draws = (
        "as in training, each policy seeded by its run's seed"
        if results.get("eval_seed") is None
        else f"as in training, every policy with the same random draws, evaluation seed {results['eval_seed']}"
    )
    matched = results.get("matched_kl")
    at_kl = (
        f"Score at KL {matched['kl']:.3f} ({matched['baseline']}'s final KL, the least of its seeds'): each seed's "
        "held-out curve read where its KL first reaches that value (linear between evaluated policies), over the "
        "seeds that reach it (k/n). "
        if matched
        else ""
    )
    caption = at_kl + (
        f"Held-out ({results.get('split', 'test')}) prompts, one sampled response each (temperature 1, {draws}; "
        f"greedy: the greedy response), {over}, after "
        f"{results.get('steps')} training steps. KL: summed log-ratio to the SFT policy per sampled response. "
        f"Last column: training steps until the logged oracle score of the training batches (trailing mean of "
        f"{results.get('window', 1)} steps) first reaches {results.get('baseline')}'s final value, with the logged KL there"
        + (f" ({target:.3f})." if isinstance(target, (int, float)) else " (no baseline curve).")
    )
    headers = [
        "method",
        "trainer",
        "rewarder",
        "oracle score at matched KL",
        "oracle score",
        "gain over SFT",
        "greedy oracle score",
        "KL to SFT",
        "length",
        "defect rate",
        f"steps to reach {results.get('baseline')}",
    ]
    return html_table(headers, rows, caption)


def sample_block(sample: Mapping[str, Any]) -> str:
    """One held-out sample: its prompt, the response as a token heatmap, the oracle score."""
    from tokenreward.viz.heatmap import html_fragment

    record = sample["record"]
    meta = f"oracle score {sample['oracle_score']:.3f}"
    response = '<p class="meta">(an empty response)</p>' if record is None else html_fragment(record)
    return (
        f'<div class="sample"><div class="prompt">{esc(sample["prompt"])}</div>\n'
        f'{response}\n<div class="meta">{esc(meta)}</div></div>'
    )


def samples_section(samples: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """Per method its sample responses; each sample is `{"prompt", "oracle_score", "record"}`
    with `record` a `TokenRewards.record` dict (None for an empty response)."""
    parts = []
    for method, items in samples.items():
        parts.append(f"<h3>{esc(method)}</h3>")
        parts.extend(sample_block(s) for s in items)
        if not items:
            parts.append('<p class="meta">no samples</p>')
    return "\n".join(parts)


def report_title(results: Mapping[str, Any]) -> str:
    """What the page is: the methods, the score, the budget and the seeds."""
    seeds = len(results.get("seeds", []))
    return (
        f"{' vs '.join(results['methods'])}: held-out oracle score after {results.get('steps')} RL steps, "
        f"{seeds} seed{'s' if seeds != 1 else ''}"
    )


def summary_paragraph(results: Mapping[str, Any]) -> str:
    """Three plain sentences: what was trained, what the numbers mean, and the result with its
    spread (the best method against the baseline, see `gap_sentence`)."""
    methods = results["methods"]
    seeds = len(results.get("seeds", []))
    described = ", ".join(
        f"{name} (trainer {m.get('trainer')}" + (f", rewarder {m['rewarder']})" if m.get("rewarder") else ")")
        for name, m in methods.items()
    )
    options = f" ({', '.join(results['trainer_options'])})" if results.get("trainer_options") else ""
    trained = (
        f"Each method fine-tuned the world's SFT policy with reinforcement learning for {results.get('steps')} steps "
        f"on the world's training prompts{options}, once per seed ({seeds} seed{'s' if seeds != 1 else ''}): "
        f"{described}."
    )
    sft = (results.get("sft") or {}).get("oracle_score") or {}
    sft_part = f"; the SFT policy before RL scores {format_stat(sft)}" if sft.get("mean") is not None else ""
    meaning = (
        f"The numbers are the oracle score of each final policy's sampled responses to "
        f"{results.get('eval_prompts', 'the')} held-out prompts: the world's ground-truth grade, which no model saw "
        f"during training (higher is better{sft_part})."
    )
    scored = [
        (name, m["oracle_score"]["mean"])
        for name, m in methods.items()
        if name != results.get("baseline") and (m.get("oracle_score") or {}).get("mean") is not None
    ]
    matched = (results.get("matched_kl") or {}).get("methods") or {}
    at_kl = [(name, matched[name]["mean"]) for name, _ in scored if (matched.get(name) or {}).get("mean") is not None]
    best = max(at_kl or scored, key=lambda x: x[1])[0] if scored else None
    comparison = gap_to_baseline(results, best) if best else None
    if comparison is None:
        result = "There is no baseline among the methods to compare with; the table has each method's scores."
    elif not matched:  # results without readings along training
        a, b = methods[comparison["method"]]["oracle_score"], methods[comparison["baseline"]]["oracle_score"]
        spread = "mean ± std over seeds" if comparison["seeds"] >= 2 else "one seed"
        result = (
            f"{comparison['method']} scores {format_stat(a)} and {comparison['baseline']} {format_stat(b)} ({spread}). "
            + gap_sentence(comparison)
        )
    else:
        result = matched_sentence(results, best) + " " + equal_steps_sentence(results, comparison)
    return f'<p class="summary">{esc(trained)} {esc(meaning)} {esc(result)}</p>'


def matched_sentence(results: Mapping[str, Any], method: str) -> str:
    """The headline: `method` and the baseline at the baseline's final KL, and the gap against the spread."""
    matched = results.get("matched_kl")
    baseline = results.get("baseline")
    a, b = matched_kl_reading(results, method), matched_kl_reading(results, baseline)
    comparison = gap_to_baseline(results, method, matched["methods"]) if matched else None
    if comparison is None:
        return f"At matched KL, {method} has no reading to set against {baseline}'s ({format_reading(a)})."
    return (
        f"At matched KL ({matched['kl']:.3f}, {baseline}'s final KL) {method} scores {format_reading(a)} and "
        f"{baseline} {format_reading(b)} (mean ± std over the seeds that reach it). " + gap_sentence(comparison)
    )


def equal_steps_sentence(results: Mapping[str, Any], comparison: Mapping[str, Any]) -> str:
    """The comparison after the same number of steps, with each method's KL beside its score."""
    method, baseline = comparison["method"], comparison["baseline"]
    entries = results["methods"]
    a, b = entries[method], entries[baseline]
    return (
        f"After the same {results.get('steps')} steps {method} scores {format_stat(a['oracle_score'])} at KL "
        f"{format_stat(a.get('kl'))} and {baseline} {format_stat(b['oracle_score'])} at KL {format_stat(b.get('kl'))}: "
        f"a gap of {comparison['gap']:+.3f} that mixes the methods with how far each moved from the SFT policy."
    )


def rl_report(
    results: Mapping[str, Any],
    curves_png: bytes | Path | str | None,
    samples: Mapping[str, Sequence[Mapping[str, Any]]],
    title: str | None = None,
    frontier_png: bytes | Path | str | None = None,
) -> str:
    """The `bench rl` page: three summary sentences, settings, the results table, the frontier
    (score against KL), learning curves, sample heatmaps. The title defaults to `report_title(results)`."""
    settings = html_table(
        ["setting", "value"],
        [
            ["world", results.get("world", "-")],
            ["methods", ", ".join(results["methods"])],
            ["seeds", ", ".join(str(s) for s in results.get("seeds", []))],
            ["steps per run", results.get("steps", "-")],
            ["held-out prompts", results.get("eval_prompts", "-")],
            ["baseline", results.get("baseline", "-")],
            ["trainer options", ", ".join(results.get("trainer_options") or []) or "the trainers' defaults"],
        ],
    )
    heatmap_rewarder = results.get("heatmap_rewarder", "a rewarder")
    body = [
        summary_paragraph(results),
        "<h2>Settings</h2>",
        settings,
        "<h2>Results</h2>",
        results_table(results),
        "<h2>Score against KL</h2>",
        png_image(frontier_png, "oracle score against KL")
        if frontier_png is not None
        else '<p class="meta">no frontier</p>',
        "<h2>Learning curves</h2>",
        png_image(curves_png, "learning curves") if curves_png is not None else '<p class="meta">no curves logged</p>',
        "<h2>Sample responses</h2>",
        f'<p class="meta">Sampled held-out responses of each final policy (first seed), coloured by the per-token rewards of '
        f"{esc(heatmap_rewarder)}; hover a token for its value.</p>",
        samples_section(samples),
    ]
    return html_document(title or report_title(results), "\n".join(body))
