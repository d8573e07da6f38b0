"""`tokenreward score`: per-token rewards of one prompt/response pair or of a JSONL file.

    tokenreward score --rewarder red --reward-model RM_DIR --prompt "2 + 2 =" --response " 4."
    tokenreward score --rewarder abc --reward-model RM_DIR --input pairs.jsonl --format json --output scored.jsonl

Every resource flag given (`--reward-model`, `--tokenizer`, `--policy`, `--reference`,
`--discriminator`, `--cost-model`, or any `--resource NAME=PATH`) is handed to
`build_rewarder`, which passes each rewarder the ones its constructor takes; `--option
NAME=VALUE` sets a rewarder option (`beta_c=0.5`, `keep_sum=true`), typed from the rewarder's
constructor (an option it does not take is an error listing the valid ones). `--world DIR` takes the resources of a built world first.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from tokenreward.options import parse_assignments
from tokenreward.rewards import TokenRewards, build_rewarder

RESOURCE_FLAGS = ("reward_model", "tokenizer", "policy", "reference", "discriminator", "cost_model")
FORMATS = ("text", "json", "html")


def register(sub) -> None:
    parser = sub.add_parser(
        "score",
        help="per-token rewards of prompt/response pairs, as a heatmap, JSON or HTML",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--rewarder", required=True, help="rewarder name (red, abc, sparse, uniform, ...)")
    for name in RESOURCE_FLAGS:
        parser.add_argument("--" + name.replace("_", "-"), dest=name, metavar="DIR", help=f"{name.replace('_', ' ')} folder or hub id")
    parser.add_argument("--resource", action="append", default=[], metavar="NAME=PATH", help="any other resource the rewarder needs")
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE", help="a rewarder option, e.g. beta_c=0.5")
    parser.add_argument("--world", metavar="DIR", help="take the resources of this built world (flags given override them)")
    parser.add_argument("--prompt", help="prompt text (with --response)")
    parser.add_argument("--response", help="response text (with --prompt)")
    parser.add_argument("--input", type=Path, metavar="FILE", help="JSONL with 'prompt' and 'response' (or 'completion') per line")
    parser.add_argument("--format", choices=FORMATS, default="text", help="text: terminal heatmap; json: one object per response (JSONL for --input); html: a self-contained page")
    parser.add_argument("--output", type=Path, metavar="FILE", help="write here instead of standard output")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--batch-size", type=int, default=8, help="pairs per forward pass (default: 8)")
    parser.set_defaults(func=run)


def read_pairs(path: Path) -> tuple[list[Any], list[Any]]:
    """Prompts and responses of a JSONL file, with errors naming the line."""
    if not path.is_file():
        raise FileNotFoundError(f"--input {path}: no such file")
    prompts, responses = [], []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path} line {number}: not valid JSON ({err.msg})") from err
            response = row.get("response", row.get("completion")) if isinstance(row, dict) else None
            if not isinstance(row, dict) or "prompt" not in row or response is None:
                raise ValueError(f"{path} line {number}: needs a 'prompt' and a 'response' (or 'completion') field")
            prompts.append(row["prompt"])
            responses.append(response)
    if not prompts:
        raise ValueError(f"{path}: no prompt/response lines")
    return prompts, responses


def gather_resources(args: argparse.Namespace) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    if args.world:
        from tokenreward.world import open_world

        resources.update(open_world(args.world).resources())
    resources.update(parse_assignments(args.resource, "--resource"))
    resources.update({name: getattr(args, name) for name in RESOURCE_FLAGS if getattr(args, name) is not None})
    if args.device:
        resources["device"] = args.device
    resources["batch_size"] = args.batch_size
    return resources


@contextmanager
def destination(path: Path | None) -> Iterator[Any]:
    if path is None:
        yield sys.stdout
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        yield handle


def score_in_chunks(rewarder, prompts: list[Any], responses: list[Any], on_chunk) -> None:
    """Score `batch_size * 4` pairs at a time, calling `on_chunk(TokenRewards)` after each,
    with a progress bar on standard error when there is more than one chunk."""
    from rich.console import Console
    from rich.progress import Progress

    chunk = max(1, rewarder.batch_size * 4)
    with Progress(console=Console(stderr=True), disable=len(prompts) <= chunk, transient=True) as bar:
        task = bar.add_task(f"scoring with {rewarder.name}", total=len(prompts))
        for start in range(0, len(prompts), chunk):
            try:
                on_chunk(rewarder.score(prompts[start : start + chunk], responses[start : start + chunk]))
            except (ValueError, FloatingPointError) as err:
                if len(prompts) <= chunk:
                    raise
                stop = min(start + chunk, len(prompts))
                raise type(err)(f"input pairs {start}..{stop - 1} (indices below count from {start}): {err}") from err
            bar.update(task, advance=min(chunk, len(prompts) - start))


def quiet_transformers() -> None:
    """Keep Hugging Face's loading bars and reports off the command's output."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def run(args: argparse.Namespace) -> int:
    single = args.prompt is not None or args.response is not None
    if single == (args.input is not None):
        raise ValueError("give either --prompt and --response, or --input FILE")
    if single and (args.prompt is None or args.response is None):
        raise ValueError("--prompt and --response go together")
    prompts, responses = ([args.prompt], [args.response]) if single else read_pairs(args.input)
    quiet_transformers()
    rewarder = build_rewarder(args.rewarder, gather_resources(args), **parse_assignments(args.option, "--option"))

    with destination(args.output) as out:
        if args.format == "json":
            def write(result: TokenRewards) -> None:
                for record in result.records():
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
                out.flush()

            score_in_chunks(rewarder, prompts, responses, write)
            return 0
        results: list[TokenRewards] = []
        score_in_chunks(rewarder, prompts, responses, results.append)
        records = TokenRewards.concat(results).records()
        if args.format == "html":
            from tokenreward.viz.heatmap import html_page

            out.write(html_page(records, f"tokenreward score: {args.rewarder}"))
        else:
            from rich.console import Console

            from tokenreward.viz.heatmap import terminal_heatmap

            console = Console(file=out, highlight=False, soft_wrap=True)
            for record in records:
                console.print(terminal_heatmap(record))
    return 0
