"""The results file (`docs/results.md`): figures that need the full world or minutes of training,
written by the commands that measure them, so that the documentation cites one generated file
instead of numbers copied by hand.

`--record FILE` (on `bench rl`, `bench credit`, `bench preference` and `demo`) inserts or
replaces that command's section in FILE. A section is

    ## `tokenreward bench rl --out runs/bench-rl --steps 200`
    <!-- recorded: tokenreward bench rl --out runs/bench-rl --steps 200 -->
    Recorded 2026-12-07 06:30 UTC in 7 min 39 s (tokenreward 0.1.0) on the world `world-full`
    (size full, seed 0, files 3f2a9c01d2e4; /home/me/.cache/tokenreward/world-full).

    TABLE
    <!-- end of recorded section -->

keyed by its command line: the flags whose values differ from their defaults, in the config's
field order (so the Python API records the same line as the command). A rerun of one command
line replaces its own section; another command line adds one, above the line
`<!-- recorded sections end here -->` when the file has it, else at the end. Everything outside
the sections (an introduction, a history section) is kept as it is. The file is replaced
atomically.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shlex
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tokenreward.errors import UserInputError

SECTION_START = "<!-- recorded: {key} -->"
SECTION_END = "<!-- end of recorded section -->"
SECTIONS_END = "<!-- recorded sections end here -->"
NEW_FILE = "# Results\n\nWritten by the commands that measured them (`--record`); do not edit the recorded sections.\n"


@dataclass(kw_only=True)
class Recording:
    """The `--record FILE` flag of the commands that write a results-file section."""

    record: Path | None = field(
        default=None,
        metadata={
            "help": "insert or replace this command's section (command line, date, world, table) in a results "
            "file such as docs/results.md"
        },
    )


def command_line(command: str, config: Any) -> str:
    """`command` followed by `--flag value` for every field of `config` whose value differs from
    its default (`record` left out); lists are joined with commas, booleans are `--x` / `--no-x`."""
    words = command.split()
    for f in dataclasses.fields(config):
        if not f.init or f.name == "record":
            continue
        value = getattr(config, f.name)
        default = f.default if f.default is not dataclasses.MISSING else dataclasses.MISSING
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        if default is not dataclasses.MISSING and value == default:
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            words.append(flag if value else "--no-" + f.name.replace("_", "-"))
        elif value is not None:
            text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
            words += [flag, shlex.quote(text)]
    return " ".join(words)


def world_fingerprint(world: Any) -> str:
    """The first 12 hex digits of the SHA-256 of the world's recorded files (`world.json`'s
    `files`: each file's size and SHA-256), so two figures can be told apart by world."""
    files = world.config.get("files", {})
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:12]


def world_description(world: Any, reward_model: str | None = None) -> str:
    """The world a section was measured on, and its reward model (`reward_model`: the line naming
    one that replaced the world's)."""
    from tokenreward.world import recorded_backbone
    from tokenreward.world.readme import describe_reward_model

    config = world.config
    return (
        f"the world `{Path(world.root).name}` (size {config.get('size')}, seed {config.get('seed')}, "
        f"files {world_fingerprint(world)}); reward model: "
        f"{reward_model or describe_reward_model(recorded_backbone(config))}"
    )


def section(key: str, world: Any, table: str, seconds: float, when: datetime, reward_model: str | None = None) -> str:
    from tokenreward import __version__

    minutes, rest = divmod(round(seconds), 60)
    took = f"{minutes} min {rest} s" if minutes else f"{rest} s"
    return (
        f"## `{key}`\n{SECTION_START.format(key=key)}\n"
        f"Recorded {when:%Y-%m-%d %H:%M} UTC in {took} (tokenreward {__version__}) on {world_description(world, reward_model)}.\n\n"
        f"{table.strip()}\n{SECTION_END}\n"
    )


def replace_section(text: str, key: str, new: str) -> str:
    """`text` with the section of `key` replaced by `new` (or `new` added)."""
    lines = text.splitlines(keepends=True)
    marker = SECTION_START.format(key=key)
    starts = [k for k, line in enumerate(lines) if line.rstrip("\n") == marker]
    if starts:
        begin = starts[0] - 1 if starts[0] > 0 and lines[starts[0] - 1].startswith("## ") else starts[0]
        end = next((k for k in range(starts[0], len(lines)) if lines[k].rstrip("\n") == SECTION_END), None)
        if end is None:
            raise UserInputError(f"--record: the section {key!r} has no end line {SECTION_END!r}; repair the file")
        return "".join(lines[:begin]) + new + "".join(lines[end + 1 :])
    ends = [k for k, line in enumerate(lines) if line.rstrip("\n") == SECTIONS_END]
    if ends:
        return "".join(lines[: ends[0]]) + new + "\n" + "".join(lines[ends[0] :])
    return text.rstrip("\n") + "\n\n" + new


def write_section(
    path: str | Path,
    key: str,
    world: Any,
    table: str,
    seconds: float,
    when: datetime | None = None,
    reward_model: str | None = None,
):
    """Insert or replace the section of `key` in the results file `path` (created if missing);
    `reward_model` names a reward model that replaced the world's."""
    from tokenreward.io import write_atomic

    path = Path(path)
    text = path.read_text() if path.is_file() else NEW_FILE
    new = section(key, world, table, seconds, when or datetime.now(timezone.utc), reward_model)
    write_atomic(path, replace_section(text, key, new))


def credit_table(results: dict[str, dict[str, float]]) -> str:
    """`bench credit`'s results as a markdown table, best AUROC first."""
    rows = [
        "| rewarder | AUROC | Spearman | top1 | AUROC within a response | ms / 1k tokens |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in sorted(results.items(), key=lambda kv: -kv[1]["auroc"] if kv[1]["auroc"] == kv[1]["auroc"] else 1):
        rows.append(
            f"| {name} | {m['auroc']:.3f} | {m['spearman']:.3f} | {m['top1']:.3f} | {m['auroc_within']:.3f} "
            f"| {m['ms_per_1k']:.1f} |"
        )
    return "\n".join(rows + kind_rows(results) + step_rows(results))


def kind_rows(results: dict[str, dict[str, Any]]) -> list[str]:
    """`bench credit`'s within-response AUROC per defect kind (`credit_kinds`) as markdown lines,
    a column per kind with its number of responses; none when no rewarder has one."""
    by_kind = {name: m["auroc_within_by_kind"] for name, m in results.items() if m.get("auroc_within_by_kind")}
    if not by_kind:
        return []
    kinds = sorted({kind for kinds in by_kind.values() for kind in kinds})
    counts = {kind: max(kinds[kind]["responses"] for kinds in by_kind.values() if kind in kinds) for kind in kinds}
    rows = [
        "",
        "Per defect kind: the within-response AUROC of that kind's tokens against the clean ones (n: responses).",
        "",
        "| rewarder | " + " | ".join(f"{kind} (n={counts[kind]})" for kind in kinds) + " |",
        "|---" * (len(kinds) + 1) + "|",
    ]
    for name, kinds_of in sorted(by_kind.items()):
        cells = [f"{kinds_of[kind]['auroc']:.3f}" if kind in kinds_of else "-" for kind in kinds]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return rows


def step_rows(results: dict[str, dict[str, Any]]) -> list[str]:
    """`bench credit`'s step-level table (`credit_steps`) as markdown lines, best step AUROC first;
    none when no response had steps."""
    scored = {name: m for name, m in results.items() if "step_auroc" in m}
    if not scored:
        return []
    first = next(iter(scored.values()))
    rows = [
        "",
        f"Step level: the oracle's steps of the responses with steps ({first['steps']} steps, "
        f"{first['incorrect_steps']} incorrect); a step's score is the rewarder's step score (prm), else the sum "
        "of its token rewards over the step.",
        "",
        "| rewarder | step AUROC | step AUROC within a response | step top1 |",
        "|---|---|---|---|",
    ]
    for name, m in sorted(
        scored.items(), key=lambda kv: -kv[1]["step_auroc"] if kv[1]["step_auroc"] == kv[1]["step_auroc"] else 1
    ):
        rows.append(f"| {name} | {m['step_auroc']:.3f} | {m['step_auroc_within']:.3f} | {m['step_top1']:.3f} |")
    return rows


def rl_matched_kl_rows(results: dict[str, Any]) -> list[str]:
    """`bench rl`'s headline: each method's sampled held-out score at the baseline's final KL
    (mean ± std over the seeds that reach it), as markdown lines (none without a baseline)."""
    from tokenreward.bench.rl_results import score_name
    from tokenreward.viz.report import format_stat

    matched = results.get("matched_kl")
    if matched is None:
        return []
    kl = matched["kl"]
    rows = [
        f"At matched KL: the sampled held-out {score_name(results)} where each run's KL first reaches {kl:.3f} "
        f"({matched['baseline']}'s final KL, the least of its seeds'), mean ± std over the seeds that reach it",
        "",
        f"| method | score at KL {kl:.3f} | seeds reaching |",
        "|---|---|---|",
    ]
    rows += [
        f"| {name} | {format_stat(reading)} | {reading['reached']}/{reading['of']} |"
        for name, reading in matched["methods"].items()
    ]
    return rows + [""]


def rl_table(results: dict[str, Any]) -> str:
    """`bench rl`'s `results.json` as markdown: the matched-KL headline, then held-out oracle
    scores, KL, length, defect rate, steps to the baseline's final training score, training
    seconds (mean ± std)."""
    from tokenreward.bench.rl_results import score_name
    from tokenreward.viz.report import format_stat, format_steps

    score = score_name(results)
    rows = rl_matched_kl_rows(results) + [
        f"{len(results['seeds'])} seed(s), {results['steps']} steps, {results['split']} split, mean ± std over seeds",
        "",
        f"| method | {score} (sampled) | {score} (greedy) | KL to SFT | length | defect rate "
        f"| steps to {results['baseline']}'s final | train s / run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    sft = results["sft"]
    rows.append(
        f"| SFT policy | {format_stat(sft['oracle_score'])} | {format_stat(sft['greedy_oracle_score'])} | 0 "
        f"| {format_stat(sft['length'], 1)} | {format_stat(sft['defect_rate'])} | - | - |"
    )
    for name, m in results["methods"].items():
        steps = "baseline" if name == results["baseline"] else format_steps(m.get("steps_to_target"))
        rows.append(
            f"| {name} | {format_stat(m['oracle_score'])} | {format_stat(m['greedy_oracle_score'])} "
            f"| {format_stat(m['kl'])} | {format_stat(m['length'], 1)} | {format_stat(m['defect_rate'])} | {steps} "
            f"| {format_stat(m['train_seconds'], 0)} |"
        )
    return "\n".join(rows)


def bench_table(name: str, config: Any, result: Any) -> str:
    """The table a benchmark's run records: `credit` returns its results, `rl` the path of its
    `results.json`, `preference` writes `OUT/results.md`."""
    if name == "credit":
        return credit_table(result)
    if name == "rl":
        return rl_table(json.loads(Path(result).read_text()))
    if name == "preference":
        return (Path(config.out) / "results.md").read_text()
    raise UserInputError(f"--record: bench {name} has no results table to record")


def trained_with(name: str, result: Any) -> str | None:
    """The reward model `bench rl` trained with, as its results.json names it (its
    `--reward-model` may replace the world's); None for the other benches (the world's)."""
    return json.loads(Path(result).read_text())["reward_model"] if name == "rl" else None


def recording(name: str, run):
    """`run(config, name)` that, with `config.record`, checks the file is writable first and
    records the benchmark's table there afterwards."""
    import functools

    @functools.wraps(run)
    def recorded(config: Any, bench: str = name):
        target = getattr(config, "record", None)
        if target is None:
            return run(config, bench)
        from tokenreward.io import check_writable
        from tokenreward.world import open_world

        check_writable(target, "--record")
        began = time.perf_counter()
        result = run(config, bench)
        table = bench_table(bench, config, result)
        world = open_world(getattr(config, "world", None))
        key, seconds = command_line(f"tokenreward bench {bench}", config), time.perf_counter() - began
        write_section(target, key, world, table, seconds, reward_model=trained_with(bench, result))
        return result

    return recorded
