"""`tokenreward label`: revise rejected responses and label their tokens (TLCR, Section 4.1).

    tokenreward label --reviser world|openai|hf [--base-url URL --model NAME] \\
        --tokenizer DIR --input pairs.jsonl --output labels.jsonl [--show N]

Input records: `prompt`, `chosen`, `rejected` (TRL's preference format; a conversational
prompt is a list of messages, a response a string or a one-message list). Without `--input`,
the pairs of the world's `--split` are labelled. Output: one record per input pair, in order:
`prompt`, `rejected`, `revision`, `{rejected,revision}_{tokens,offsets,labels}` and
`reasoning` when the reviser gave one, or `failed` (the reason) and `reply` when the reply did
not parse. The output is appended batch by batch, so a rerun of the same command resumes
after the last written record; the openai reviser's reply cache (`--cache`, default
`OUTPUT.cache/`) makes the requests of an interrupted batch free the second time.
`--show N` prints the first N labelled records as a coloured diff (`--html FILE`: also as an
HTML heatmap page).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tokenreward.encoding import response_text
from tokenreward.labels import NEGATIVE, POSITIVE, label_pair
from tokenreward.revisers.base import REVISERS, ReviserError, RevisionRequest, build_reviser
from tokenreward.jsonl import read_jsonl
from tokenreward.progress import progress_bar


def register(sub) -> None:
    parser = sub.add_parser(
        "label",
        help="revise rejected responses with a reviser and label their tokens (TLCR)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--reviser", choices=REVISERS.names(), help="who revises the rejected responses")
    parser.add_argument("--tokenizer", help="tokenizer whose tokens get the labels (default with --world: the world's)")
    parser.add_argument("--input", type=Path, help="pairs JSONL with prompt, chosen, rejected")
    parser.add_argument("--split", default="reward", help="without --input: label this split of the world's pairs (default: reward)")
    parser.add_argument("--world", help="world folder (--reviser world, or pairs without --input; default: the built world)")
    parser.add_argument("--output", type=Path, required=True, help="labels JSONL (appended; a rerun resumes)")
    parser.add_argument("--limit", type=int, help="label only the first N pairs")
    openai = parser.add_argument_group("openai reviser")
    openai.add_argument("--base-url", help="OpenAI-compatible API base URL (default: $OPENAI_BASE_URL or the OpenAI API)")
    openai.add_argument("--model", help="model name (openai; default $OPENAI_MODEL) or model folder (hf)")
    openai.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key (default: OPENAI_API_KEY)")
    openai.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default: 60)")
    openai.add_argument("--retries", type=int, default=4, help="retries on timeouts, 429 and 5xx (default: 4)")
    openai.add_argument("--concurrency", type=int, default=4, help="requests in flight (default: 4)")
    openai.add_argument("--cache", type=Path, help="reply cache folder (default: OUTPUT.cache)")
    parser.add_argument("--max-new-tokens", type=int, default=512, help="hf reviser: tokens to generate (default: 512)")
    parser.add_argument("--show", type=int, default=0, metavar="N", help="print the first N labelled records as a coloured diff")
    parser.add_argument("--html", type=Path, help="with --show: also write those records as an HTML heatmap page (label 0 red, 1 green)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console()
    if args.reviser is None:
        if not args.show:
            raise ValueError("give --reviser (world, openai, hf) to label, or --show N to view --output")
    else:
        code = label(args, console)
        if code:
            return code
    if args.show:
        if not args.output.exists():
            raise FileNotFoundError(f"--show: {args.output} does not exist")
        shown = [r for r in read_jsonl(args.output) if "failed" not in r][: args.show]
        for k, record in enumerate(shown):
            console.rule(f"pair {k}")
            console.print(labelled_diff(record))
        if args.html:
            from tokenreward.viz.heatmap import html_page

            args.html.write_text(html_page([r for record in shown for r in heatmap_records(record)], title=f"TLCR labels: {args.output.name}"))
            console.print(f"heatmaps: {args.html}")
    return 0


def read_pairs(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.input is not None:
        if not args.input.exists():
            raise FileNotFoundError(f"--input {args.input} does not exist")
        pairs = read_jsonl(args.input)
        where = str(args.input)
    else:
        pairs = open_world(args).pairs(args.split)
        where = f"the world's {args.split!r} pairs"
    for k, pair in enumerate(pairs):
        missing = [key for key in ("prompt", "chosen", "rejected") if key not in pair]
        if missing:
            raise ValueError(f"{where}, record {k}: missing {', '.join(missing)} (expected prompt, chosen, rejected)")
    return pairs[: args.limit] if args.limit is not None else pairs


def open_world(args: argparse.Namespace):
    from tokenreward.world import open_world as open_

    return open_(Path(args.world) if args.world else None)


def resume_point(output: Path, pairs: list[dict[str, Any]]) -> int:
    """How many pairs `output` already holds; refuse an output written for other pairs."""
    if not output.exists():
        return 0
    done = read_jsonl(output)
    if len(done) > len(pairs):
        raise ValueError(f"{output} holds {len(done)} records but the input has {len(pairs)} pairs; use another --output")
    for k, record in enumerate(done):
        if record["prompt"] != pairs[k]["prompt"] or record["rejected"] != response_text(pairs[k]["rejected"], k):
            raise ValueError(f"{output}, record {k}, is not the label of input pair {k}; use another --output to start afresh")
    return len(done)


def label(args: argparse.Namespace, console) -> int:
    from tokenreward.models import load_tokenizer

    pairs = read_pairs(args)
    tokenizer_source = args.tokenizer or (open_world(args).tokenizer_dir if args.world or args.input is None else None)
    if tokenizer_source is None:
        raise ValueError("--tokenizer DIR is needed (the tokenizer of the model that will learn the labels)")
    tokenizer = load_tokenizer(tokenizer_source)
    start = resume_point(args.output, pairs)
    if start == len(pairs):
        console.print(f"{args.output}: all {len(pairs)} pairs already labelled")
        return 0
    reviser = build_reviser(
        args.reviser,
        model=args.model,
        base_url=args.base_url,
        api_key_env=args.api_key_env,
        timeout=args.timeout,
        retries=args.retries,
        concurrency=args.concurrency,
        cache_dir=args.cache or args.output.with_name(args.output.name + ".cache"),
        max_new_tokens=args.max_new_tokens,
        world=args.world,
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    failed = 0
    with progress_bar(len(pairs), f"label ({args.reviser})", start=start) as advance, args.output.open("a") as out:
        for begin in range(start, len(pairs), reviser.batch_size):
            batch = pairs[begin : begin + reviser.batch_size]
            requests = [
                RevisionRequest(p["prompt"], response_text(p["rejected"], begin + k), response_text(p["chosen"], begin + k))
                for k, p in enumerate(batch)
            ]
            try:
                revisions = reviser.revise_batch(requests)
            except ReviserError as err:
                print(f"tokenreward label: error: {err}\n{begin} of {len(pairs)} pairs are in {args.output}; "
                      "rerun the same command to resume", file=sys.stderr)
                return 2
            for request, revision in zip(requests, revisions):
                if revision.ok:
                    record = label_pair(tokenizer, request.prompt, request.rejected, revision.revision, revision.reasoning)
                else:
                    failed += 1
                    record = {"prompt": request.prompt, "rejected": request.rejected, "failed": revision.failure, "reply": revision.reply}
                out.write(json.dumps(record) + "\n")
            out.flush()
            advance(len(batch), failed=failed)
    stats = getattr(reviser, "stats", None)
    console.print(
        f"{args.output}: {len(pairs) - start - failed} pairs labelled, {failed} failed (recorded with the reason)"
        + (f"; requests {stats['requests']}, cache hits {stats['cache_hits']}" if stats else "")
    )
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
