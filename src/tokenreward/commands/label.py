"""`tokenreward label`: revise rejected responses and label their tokens (TLCR, Section 4.1).

    tokenreward label --reviser world|openai|hf [--base-url URL --model NAME] \\
        --tokenizer DIR --input pairs.jsonl --output labels.jsonl [--show N]

Input records: `prompt`, `chosen`, `rejected` (TRL's preference format; a conversational
prompt is a list of messages, a response a string or a one-message list). Without `--input`,
the pairs of the world's `--split` are labelled. Output: one record per input pair, in order:
`prompt`, `rejected`, `revision`, `{rejected,revision}_{tokens,offsets,labels}` and
`reasoning` when the reviser gave one, or `failed` (the reason) and `reply` when the reply did
not parse or the request failed for good (a 400, a timeout past the retries). Each record
names its input `pair` (0-based). The output is appended batch by batch, so a rerun of the
same command resumes: it labels the pairs not yet in the output and retries the failed ones
(`--keep-failed`: leave them), then rewrites the output in pair order. A torn last line (a
killed run) is dropped with a message and redone. The openai reviser's reply cache
(`--cache`, default `~/.cache/tokenreward/replies/`) makes requests already answered free.
`--show N` prints the first N labelled records as a coloured diff (`--html FILE`: also as an
HTML heatmap page).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenreward.commands._args import above, at_least
from tokenreward.config import add_config_arguments
from tokenreward.encoding import response_text
from tokenreward.errors import UserInputError
from tokenreward.io import (
    atomic_write,
    check_writable,
    read_jsonl,
    read_jsonl_for_append,
    row_location,
    write_atomic,
)
from tokenreward.labels import NEGATIVE, POSITIVE, label_pair
from tokenreward.progress import progress_bar
from tokenreward.revisers.base import REVISERS, ReviserError, RevisionRequest, build_reviser

OPENAI = "openai reviser"


@dataclass(kw_only=True)
class LabelOptions:
    """The flags of `tokenreward label`."""

    reviser: str | None = field(
        default=None, metadata={"help": "who revises the rejected responses", "choices": REVISERS.names}
    )
    tokenizer: str | None = field(
        default=None, metadata={"help": "tokenizer whose tokens get the labels (default with --world: the world's)"}
    )
    input: Path | None = field(default=None, metadata={"help": "pairs JSONL with prompt, chosen, rejected"})
    split: str = field(
        default="reward", metadata={"help": "without --input: label this split of the world's pairs (default: reward)"}
    )
    world: str | None = field(
        default=None,
        metadata={"help": "world folder (--reviser world, or pairs without --input; default: the built world)"},
    )
    output: Path = field(metadata={"help": "labels JSONL (appended; a rerun resumes)"})
    limit: int | None = field(
        default=None, metadata={"help": "label only the first N pairs, N >= 0", "type": at_least(0)}
    )
    keep_failed: bool = field(
        default=False,
        metadata={
            "help": "a rerun leaves the pairs recorded as failed instead of retrying them",
            "action": "store_true",
        },
    )
    base_url: str | None = field(
        default=None,
        metadata={
            "help": "OpenAI-compatible API base URL (default: $OPENAI_BASE_URL or the OpenAI API)",
            "group": OPENAI,
        },
    )
    model: str | None = field(
        default=None,
        metadata={"help": "model name (openai; default $OPENAI_MODEL) or model folder (hf)", "group": OPENAI},
    )
    api_key_env: str = field(
        default="OPENAI_API_KEY",
        metadata={"help": "environment variable holding the API key (default: OPENAI_API_KEY)", "group": OPENAI},
    )
    timeout: float = field(
        default=60.0,
        metadata={
            "help": "deadline in seconds for each whole request, > 0 (default: 60)",
            "type": above(0),
            "group": OPENAI,
        },
    )
    retries: int = field(
        default=4,
        metadata={
            "help": "retries on timeouts, 429, 5xx and non-JSON replies, >= 0 (default: 4)",
            "type": at_least(0),
            "group": OPENAI,
        },
    )
    concurrency: int = field(
        default=4, metadata={"help": "requests in flight, >= 1 (default: 4)", "type": at_least(1), "group": OPENAI}
    )
    cache: Path | None = field(
        default=None,
        metadata={"help": "reply cache folder (default: ~/.cache/tokenreward/replies)", "group": OPENAI},
    )
    max_new_tokens: int = field(
        default=512, metadata={"help": "hf reviser: tokens to generate, >= 1 (default: 512)", "type": at_least(1)}
    )
    chat_template: bool = field(
        default=False,
        metadata={
            "help": "tokenize plain-string prompts through the tokenizer's chat template (each as one user message)",
            "action": "store_true",
        },
    )
    show: int = field(
        default=0,
        metadata={
            "help": "print the first N labelled records as a coloured diff (default: 0)",
            "type": at_least(0),
            "metavar": "N",
        },
    )
    html: Path | None = field(
        default=None,
        metadata={"help": "with --show: also write those records as an HTML heatmap page (label 0 red, 1 green)"},
    )


def register(sub) -> None:
    parser = sub.add_parser(
        "label",
        help="revise rejected responses with a reviser and label their tokens (TLCR)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_arguments(parser, LabelOptions)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console()
    if args.reviser is None:
        if not args.show:
            raise UserInputError("give --reviser (world, openai, hf) to label, or --show N to view --output")
    else:
        code = label(args, console)
        if code:
            return code
    if args.show:
        if not args.output.exists():
            raise FileNotFoundError(f"--show: {args.output} does not exist")
        shown = [r for r in read_jsonl_for_append(args.output, "pair") if "failed" not in r][: args.show]
        for k, record in enumerate(shown):
            console.rule(f"pair {k}")
            console.print(labelled_diff(record))
        if args.html:
            from tokenreward.viz.heatmap import html_page

            write_atomic(
                args.html,
                html_page(
                    [r for record in shown for r in heatmap_records(record)], title=f"TLCR labels: {args.output.name}"
                ),
            )
            console.print(f"heatmaps: {args.html}")
    return 0


def read_pairs(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.input is not None:
        pairs = read_jsonl(args.input, "--input")
        where = f"--input {args.input}"
    else:
        pairs = open_world(args).pairs(args.split)
        where = f"the world's {args.split!r} pairs"
    if not pairs:
        raise UserInputError(f"{where}: no pairs to label")
    for k, pair in enumerate(pairs):
        row = row_location(args.input, k) if args.input is not None else f"{where}, row {k + 1}"
        missing = [key for key in ("prompt", "chosen", "rejected") if key not in pair]
        if missing:
            raise UserInputError(f"{row}: missing {', '.join(missing)} (expected prompt, chosen, rejected)")
        prompt = pair["prompt"]
        if not (
            isinstance(prompt, str)
            or (
                isinstance(prompt, list)
                and prompt
                and all(isinstance(m, dict) and isinstance(m.get("content"), str) and m.get("role") for m in prompt)
            )
        ):
            raise UserInputError(f"{row}: 'prompt' must be text or a list of {{role, content}} messages")
        for key in ("chosen", "rejected"):
            try:
                response_text(pair[key], k)
            except (ValueError, TypeError) as err:
                raise UserInputError(f"{row}, {key!r}: {err}") from None
    return pairs


def open_world(args: argparse.Namespace):
    from tokenreward.world import open_world as open_

    return open_(Path(args.world) if args.world else None)


def done_records(output: Path, pairs: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The records `output` already holds, by pair (a later record of a pair replaces an
    earlier one); refuse an output written for other pairs."""
    done: dict[int, dict[str, Any]] = {}
    for k, record in enumerate(read_jsonl_for_append(output, "pair")):
        index = record.get("pair", k)
        if not isinstance(index, int) or not 0 <= index < len(pairs):
            raise UserInputError(
                f"{output}, record {k}, is for pair {index!r} but the input has {len(pairs)} pairs; "
                "use another --output"
            )
        pair = pairs[index]
        if record.get("prompt") != pair["prompt"] or record.get("rejected") != response_text(pair["rejected"], index):
            raise UserInputError(
                f"{output}, record {k}, is not the label of input pair {index}; use another --output to start afresh"
            )
        done[index] = record
    return done


def pair_record(
    tokenizer, index: int, request: RevisionRequest, revision, chat_template: bool = False
) -> dict[str, Any]:
    if revision.ok:
        record = label_pair(
            tokenizer, request.prompt, request.rejected, revision.revision, revision.reasoning, chat_template
        )
    else:
        record = {
            "prompt": request.prompt,
            "rejected": request.rejected,
            "failed": revision.failure,
            "reply": revision.reply,
        }
    return {"pair": index, **record}


def label(args: argparse.Namespace, console) -> int:
    from tokenreward.models import load_tokenizer
    from tokenreward.world import cache_dir

    pairs = read_pairs(args)
    check_writable(args.output, "--output")
    if args.html is not None:
        check_writable(args.html, "--html")
    tokenizer_source = args.tokenizer or (open_world(args).tokenizer_dir if args.world or args.input is None else None)
    if tokenizer_source is None:
        raise UserInputError("--tokenizer DIR is needed (the tokenizer of the model that will learn the labels)")
    tokenizer = load_tokenizer(tokenizer_source)
    done = done_records(args.output, pairs)
    wanted = len(pairs) if args.limit is None else min(args.limit, len(pairs))
    todo = [k for k in range(wanted) if k not in done or ("failed" in done[k] and not args.keep_failed)]
    skipped = wanted - len(todo)
    if not todo:
        kept = sum("failed" in done[k] for k in range(wanted))
        console.print(f"{args.output}: all {wanted} pairs already done ({kept} recorded as failed)", soft_wrap=True)
        return 0
    reviser = build_reviser(
        args.reviser,
        model=args.model,
        base_url=args.base_url,
        api_key_env=args.api_key_env,
        timeout=args.timeout,
        retries=args.retries,
        concurrency=args.concurrency,
        cache_dir=args.cache or cache_dir() / "replies",
        max_new_tokens=args.max_new_tokens,
        world=args.world,
    )
    failures: dict[int, str] = {}
    retried = any(k in done for k in todo)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with progress_bar(len(todo), f"label ({args.reviser})") as advance, args.output.open("a") as out:
        for begin in range(0, len(todo), reviser.batch_size):
            indices = todo[begin : begin + reviser.batch_size]
            requests = [
                RevisionRequest(
                    pairs[k]["prompt"], response_text(pairs[k]["rejected"], k), response_text(pairs[k]["chosen"], k)
                )
                for k in indices
            ]
            try:
                revisions = reviser.revise_batch(requests)
            except ReviserError as err:
                raise ReviserError(
                    f"{err}; {sum(k < wanted for k in done)} of {wanted} pairs are in {args.output}; "
                    "rerun the same command to resume"
                ) from None
            for k, request, revision in zip(indices, requests, revisions):
                record = pair_record(tokenizer, k, request, revision, args.chat_template)
                done[k] = record
                if not revision.ok:
                    failures[k] = revision.failure
                out.write(json.dumps(record) + "\n")
            out.flush()
            advance(len(indices), failed=len(failures))
    if retried:  # records of retried pairs were appended: put the file back in pair order, one record a pair
        with atomic_write(args.output) as out:
            for k in sorted(done):
                out.write(json.dumps(done[k]) + "\n")
    stats = getattr(reviser, "stats", None)
    console.print(
        f"{args.output}: {len(todo) - len(failures)} labelled, {len(failures)} failed, {skipped} skipped (already done)"
        + (f"; requests {stats['requests']}, cache hits {stats['cache_hits']}" if stats else ""),
        soft_wrap=True,
    )
    for k, reason in list(failures.items())[:10]:
        console.print(f"  pair {k} failed: {reason[:200]}", soft_wrap=True, markup=False)
    if failures:
        console.print("  rerun the same command to retry the failed pairs")
    return 0


def heatmap_records(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The rejected response and the revision as heatmap records, reward `2 * label - 1`
    (negative -1, neutral 0, positive +1)."""
    return [
        {
            "rewarder": f"labels ({side})",
            "sequence_reward": float(sum(2 * label - 1 for label in record[f"{side}_labels"])),
            "tokens": record[f"{side}_tokens"],
            "offsets": record[f"{side}_offsets"],
            "rewards": [2 * label - 1 for label in record[f"{side}_labels"]],
        }
        for side in ("rejected", "revision")
    ]


def labelled_diff(record: dict[str, Any]):
    """The reasoning, then one line where deleted / substituted tokens of the rejected
    response are struck out in red and added / substituted tokens of the revision are green."""
    from rich.text import Text

    text = Text()
    if record.get("reasoning"):
        text.append(record["reasoning"] + "\n", style="dim italic")
    rejected = list(zip(record["rejected_tokens"], record["rejected_labels"]))
    revision = list(zip(record["revision_tokens"], record["revision_labels"]))
    i = j = 0
    # neutral tokens are the matched ones, in the same order on both sides
    while i < len(rejected) or j < len(revision):
        while i < len(rejected) and rejected[i][1] == NEGATIVE:
            text.append(rejected[i][0], style="strike white on red")
            i += 1
        while j < len(revision) and revision[j][1] == POSITIVE:
            text.append(revision[j][0], style="bold black on green")
            j += 1
        if i < len(rejected) and j < len(revision):
            text.append(revision[j][0])
            i, j = i + 1, j + 1
        elif i < len(rejected) or j < len(revision):
            raise ValueError("labels are inconsistent: the neutral tokens of the two responses do not pair up")
    return text
