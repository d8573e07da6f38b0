"""`tokenreward score`: per-token rewards of one prompt/response pair or of a JSONL file.

    tokenreward score --rewarder red --reward-model RM_DIR --prompt "2 + 2 =" --response " 4."
    tokenreward score --rewarder abc --reward-model RM_DIR --input pairs.jsonl --format json --output scored.jsonl

Every resource flag given (`--reward-model`, `--tokenizer`, `--policy`, `--reference`,
`--discriminator`, `--cost-model`, or any `--resource NAME=PATH`) is handed to
`build_rewarder`, which passes each rewarder the ones its constructor takes; `--option
NAME=VALUE` sets a rewarder option (`beta_c=0.5`, `keep_sum=true`), typed from the rewarder's
constructor (an option it does not take is an error listing the valid ones). `--world DIR` takes the resources of a built world first.

A bad input row (not JSON, missing fields, an empty response, longer than the model's
context, a non-finite score) is named with its row and line: `--on-error fail` (the
default) stops before any output is written, `--on-error skip` leaves it out and says so.
`--truncate` cuts over-long prompts from the left instead. Every JSON record carries `row`,
the 0-based index of its pair among the input's non-blank lines. `--output` is checked
before any model is loaded and replaced only when the whole run succeeded.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenreward.commands._options import RewarderOptions, ScoreOptions
from tokenreward.config import add_config_arguments, config_from_args
from tokenreward.encoding import as_user_message, response_text
from tokenreward.errors import UserInputError
from tokenreward.io import atomic_write, check_writable
from tokenreward.models import ModelLoading
from tokenreward.options import parse_assignments
from tokenreward.rewards import build_rewarder, with_reward_model

RESOURCE_FLAGS = ("reward_model", "tokenizer", "policy", "reference", "discriminator", "cost_model")


def register(sub) -> None:
    parser = sub.add_parser(
        "score",
        help="per-token rewards of prompt/response pairs, as a heatmap, JSON or HTML",
        description=__doc__.split("\n\n")[0],
    )
    add_rewarder_arguments(parser)
    add_config_arguments(parser, ScoreOptions)
    parser.set_defaults(func=run)


def add_rewarder_arguments(parser) -> None:
    """The flags that choose and load a rewarder (shared by `score` and `serve`; see `load_rewarder`)."""
    add_config_arguments(parser, RewarderOptions)
    add_config_arguments(parser, ModelLoading)


@dataclass
class Row:
    """One input pair: `index` counts non-blank lines from 0, `line` from 1 (None for --prompt)."""

    index: int
    line: int | None
    prompt: Any = None
    response: Any = None
    problem: str | None = None
    truncated: int = 0

    def where(self) -> str:
        return f"row {self.index}" + (f" (line {self.line})" if self.line is not None else "")


def row_problem(prompt: Any, response: Any) -> str | None:
    """Why a prompt/response pair cannot be scored, judged from the values alone (None if it can)."""
    if isinstance(prompt, list):
        if not prompt or not all(
            isinstance(m, dict) and isinstance(m.get("content"), str) and m.get("role") for m in prompt
        ):
            return "a conversational 'prompt' must be a non-empty list of {role, content} messages"
        roles = sorted({m["role"] for m in prompt} - {"system", "user", "assistant", "tool"})
        if roles:
            return (
                f"the prompt has messages of unknown role {', '.join(map(repr, roles))} (use system, user, assistant)"
            )
    elif not isinstance(prompt, str):
        return f"'prompt' must be text or a list of messages, got {type(prompt).__name__}"
    try:
        response_text(response)
    except (ValueError, TypeError) as err:
        return clean(str(err))
    return None


def clean(message: str) -> str:
    """A per-pair message of the library ("response 0 is empty") said of the row at hand."""
    message = re.sub(r"\b(prompt\+response|response|prompt) 0\b", r"the \1", message)
    if "longer than the model's context" in message:
        message += " (--truncate cuts the prompt to fit)"
    if "(not finite)" in message:
        message += "; the model's outputs are not finite: are its weights NaN or inf?"
    return message


def read_rows(path: Path) -> list[Row]:
    """The pairs of a JSONL file; a line that is not a usable pair becomes a row with a problem."""
    if path.is_dir():
        raise UserInputError(f"--input {path}: is a folder, not a JSONL file")
    if not path.is_file():
        raise FileNotFoundError(f"--input {path}: no such file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise UserInputError(f"--input {path}: not UTF-8 text (byte {err.start}); is it a JSONL file?") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        row = Row(len(rows), number)
        rows.append(row)
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            row.problem = f"not valid JSON ({err.msg})"
            continue
        response = record.get("response", record.get("completion")) if isinstance(record, dict) else None
        if not isinstance(record, dict) or "prompt" not in record or response is None:
            row.problem = "needs a 'prompt' and a 'response' (or 'completion') field"
            continue
        row.prompt, row.response = record["prompt"], response
        row.problem = row_problem(row.prompt, row.response)
    if not rows:
        raise UserInputError(f"--input {path}: no prompt/response lines")
    return rows


def settle(rows: list[Row], on_error: str, source: str) -> list[Row]:
    """The rows without a problem; with `fail`, an error naming the first bad row."""
    bad = [r for r in rows if r.problem]
    if bad and on_error == "fail":
        more = f" ({len(bad) - 1} more bad rows)" if len(bad) > 1 else ""
        raise UserInputError(f"{source}, {bad[0].where()}: {bad[0].problem}{more}; fix it or pass --on-error skip")
    for r in bad:
        print(f"tokenreward score: skipped {source}, {r.where()}: {r.problem}", file=sys.stderr)
    return [r for r in rows if not r.problem]


def check_accepted(rewarder: str, given: dict[str, Any], flag: str) -> None:
    """Refuse a resource or option the rewarder would silently ignore (a typo, the wrong rewarder)."""
    import inspect

    from tokenreward.rewards import REWARDERS

    params = inspect.signature(REWARDERS.get(rewarder).__init__).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n in params if n != "self"]
    for name in given:
        if name not in accepted:
            shown = flag.format(name=name.replace("_", "-"), raw=name)
            raise UserInputError(f"{shown}: rewarder {rewarder!r} does not take it (it takes {', '.join(accepted)})")


def gather_resources(args: argparse.Namespace) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    if args.world:
        from tokenreward.world import open_world

        resources.update(open_world(args.world).resources())
    explicit = parse_assignments(args.resource, "--resource")
    check_accepted(args.rewarder, explicit, "--resource {raw}")
    flags = {name: getattr(args, name) for name in RESOURCE_FLAGS if getattr(args, name) is not None}
    check_accepted(args.rewarder, flags, "--{name}")
    given = {**explicit, **flags}
    if ("reward_model" in given or "tokenizer" in given) and "reward_tokenizer" not in given:
        resources.pop("reward_tokenizer", None)  # the world's reward model's own tokenizer, not for these
        if "tokenizer" not in given:  # a given reward model reads its own tokenizer, not the world's
            resources = with_reward_model(resources, given["reward_model"])
    resources.update(given)
    resources["loading"] = config_from_args(ModelLoading, args)
    resources["batch_size"] = args.batch_size
    return resources


def score_limits(rewarder) -> tuple[Any, int]:
    """(tokenizer, context length) of the rewarder's model, for `--truncate`."""
    from tokenreward.models import context_length

    tokenizer = getattr(rewarder, "tokenizer", None)
    model = next((getattr(rewarder, n) for n in ("model", "policy") if getattr(rewarder, n, None) is not None), None)
    limit = context_length(model) if model is not None else None
    if tokenizer is None or limit is None:
        raise UserInputError(
            f"--truncate: rewarder {rewarder.name!r} has no tokenizer and model context to truncate to"
        )
    return tokenizer, limit


def fit_prompt(tokenizer, limit: int, row: Row, chat_template: bool = False) -> None:
    """Drop the fewest leading prompt characters (or oldest messages) so that prompt+response fits
    (`chat_template`: a plain prompt measured as one user message)."""
    from tokenreward.encoding import encode_pairs

    def fits(prompt) -> bool:
        return (
            encode_pairs(tokenizer, [prompt], [row.response], chat_template=chat_template).input_ids.shape[1] <= limit
        )

    if fits(row.prompt):
        return
    if isinstance(row.prompt, str):
        low, high = 1, len(row.prompt)  # drop `high` characters: the empty prompt, fits if anything does
        if not fits(""):
            raise UserInputError(
                f"{row.where()}: the response alone is longer than the model's context of {limit} tokens"
            )
        while low < high:
            middle = (low + high) // 2
            low, high = (low, middle) if fits(row.prompt[middle:]) else (middle + 1, high)
        row.prompt, row.truncated = row.prompt[low:], low
        return
    for drop in range(1, len(row.prompt)):
        if fits(row.prompt[drop:]):
            row.prompt, row.truncated = row.prompt[drop:], drop
            return
    raise UserInputError(
        f"{row.where()}: the last message and the response are longer than the model's context of {limit} tokens"
    )


def score_rows(rewarder, rows: list[Row], on_error: str, source: str) -> list[tuple[Row, dict[str, Any]]]:
    """(row, record) of every row that scores, `batch_size * 4` pairs at a time; a chunk that
    fails is scored row by row to find (and name, or skip) its bad rows."""
    from rich.console import Console
    from rich.progress import Progress

    failures = (ValueError, TypeError, FloatingPointError)
    out: list[tuple[Row, dict[str, Any]]] = []
    chunk = max(1, rewarder.batch_size * 4)
    with Progress(console=Console(stderr=True), disable=len(rows) <= chunk, transient=True) as bar:
        task = bar.add_task(f"scoring with {rewarder.name}", total=len(rows))
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            try:
                out += zip(part, rewarder.score([r.prompt for r in part], [r.response for r in part]).records())
            except failures:
                for row in part:
                    try:
                        out += zip([row], rewarder.score([row.prompt], [row.response]).records())
                    except failures as err:
                        row.problem = clean(str(err))
                        settle([row], on_error, source)
            bar.update(task, advance=len(part))
    return out


def quiet_transformers() -> None:
    """Keep Hugging Face's loading bars and reports off the command's output."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def load_rewarder(args: argparse.Namespace):
    """The rewarder the flags of `add_rewarder_arguments` describe, loaded once, its tokenizer checked."""
    quiet_transformers()
    options = parse_assignments(args.option, "--option")  # typed from the rewarder's constructor, unknown ones refused
    rewarder = build_rewarder(args.rewarder, gather_resources(args), **options)
    if getattr(rewarder, "tokenizer", None) is not None:
        from tokenreward.encoding import check_tokenizer

        try:
            check_tokenizer(rewarder.tokenizer)
        except ValueError as err:
            raise UserInputError(f"the tokenizer {getattr(rewarder.tokenizer, 'name_or_path', '')}: {err}") from None
    return rewarder


def input_rows(args: argparse.Namespace) -> tuple[list[Row], str]:
    single = args.prompt is not None or args.response is not None
    if single == (args.input is not None):
        raise UserInputError("give either --prompt and --response, or --input FILE")
    if single and (args.prompt is None or args.response is None):
        raise UserInputError("--prompt and --response go together")
    if single:
        row = Row(0, None, args.prompt, args.response, row_problem(args.prompt, args.response))
        if row.problem:
            raise UserInputError(f"--response: {row.problem}")
        return [row], "--prompt/--response"
    return read_rows(args.input), f"--input {args.input}"


def write_records(records: list[dict[str, Any]], args: argparse.Namespace, out) -> None:
    """The scored records in `--format` on `out` (a terminal gets the heatmap in colour)."""
    if args.format == "json":
        out.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    elif args.format == "html":
        from tokenreward.viz.heatmap import html_page

        out.write(html_page(records, f"tokenreward score: {args.rewarder}"))
    else:
        from rich.console import Console

        from tokenreward.viz.heatmap import terminal_heatmap

        console = Console(file=out, highlight=False, soft_wrap=True)
        for record in records:
            console.print(terminal_heatmap(record))


def run(args: argparse.Namespace) -> int:
    rows, source = input_rows(args)
    if args.output is not None:
        check_writable(args.output, "--output")
    total = len(rows)
    rows = settle(rows, args.on_error, source)
    rewarder = load_rewarder(args)
    if args.truncate:
        tokenizer, limit = score_limits(rewarder)
        for row in rows:
            try:
                fit_prompt(tokenizer, limit, row, args.chat_template)
            except ValueError as err:
                row.problem = str(err).removeprefix(row.where() + ": ")
        rows = settle(rows, args.on_error, source)
    if args.chat_template:
        for row in rows:
            row.prompt = as_user_message(row.prompt)
    scored = score_rows(rewarder, rows, args.on_error, source)
    if not scored:
        raise UserInputError(f"{source}: no row could be scored")
    records = []
    for row, record in scored:
        record["row"] = row.index
        if row.truncated:
            record["prompt_truncated"] = row.truncated
        records.append(record)
    if args.output is None:  # written only now that every row is scored
        write_records(records, args, sys.stdout)
    else:
        with atomic_write(args.output) as out:
            write_records(records, args, out)
    if len(scored) < total:
        print(
            f"tokenreward score: scored {len(scored)} of {total} rows, skipped {total - len(scored)}", file=sys.stderr
        )
    return 0
