"""The rollout: prompts in, sampled responses and their per-token rewards out.

Reward layout: the rewarder's rewards land on the policy token that holds their characters
(`Rewarder.score(..., align_to=offsets)`); `align.terminal_layout` moves the reward on the
token that completes the text to the last generated token (the EOS when the policy stopped),
so the sparse rewarder gives the classic PPO-RLHF layout. A blank response (nothing to score)
gets the lowest sequence reward of its batch on its last token.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from tokenreward.align import terminal_layout
from tokenreward.errors import UserInputError
from tokenreward.generation import Generations, encode_prompt
from tokenreward.rewards import Rewarder, TextOrMessages, TokenRewards
from tokenreward.trainers.harness import derive_seed


def read_prompt_file(path: Path) -> list[dict[str, Any]]:
    """Records of a JSONL (or JSON list) file in TRL's prompt-only format: `{"prompt": ...}`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--prompts: no file {path}")
    text = path.read_text()
    if path.suffix == ".json":
        records = json.loads(text)
        if not isinstance(records, list):
            raise UserInputError(f"--prompts: {path} must hold a JSON list of records")
    else:
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise UserInputError(f"--prompts: {path} line {number} is not JSON: {err}") from err
    for number, record in enumerate(records, start=1):
        prompt = record.get("prompt") if isinstance(record, dict) else None
        if not (isinstance(prompt, str) and prompt.strip()) and not (isinstance(prompt, list) and prompt):
            raise UserInputError(
                f'--prompts: record {number} of {path} has no "prompt" (a string or a list of messages)'
            )
    if not records:
        raise UserInputError(f"--prompts: {path} holds no prompts")
    return records


def world_prompts(world, split: str, families: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The world's prompt records of `split`; with `families` (`--prompt-families`), only theirs."""
    if any(name not in world.families for name in families):
        unknown = next(name for name in families if name not in world.families)
        raise UserInputError(
            f"--prompt-families: {unknown!r} is not a family of the world at {world.root} "
            f"(its families: {', '.join(world.families)})"
        )
    records = [r for r in world.prompts(split) if not families or r["family"] in families]
    if not records:
        chosen = f" of the families {', '.join(families)}" if families else ""
        raise UserInputError(f"the world has no prompts{chosen} in split {split!r}")
    return records


def prepare_prompts(
    tokenizer,
    records: Sequence[dict],
    max_new_tokens: int,
    context: int | None,
    truncate: bool,
    chat_template: bool = False,
) -> tuple[list[list[int]], list[TextOrMessages]]:
    """Token ids for the policy and the prompt the rewarder sees. A prompt that leaves no room
    for `max_new_tokens` in the context is refused, or with `truncate` cut to its end.
    `chat_template`: the policy reads a plain prompt as one user message of its chat template
    (the rewarder still gets the prompt as written)."""
    room = None if context is None else context - max_new_tokens
    if room is not None and room < 1:
        raise UserInputError(
            f"--max-new-tokens {max_new_tokens} leaves no room for a prompt in the policy's context of {context}"
        )
    ids, prompts, too_long = [], [], []
    for i, record in enumerate(records):
        prompt_ids = encode_prompt(tokenizer, record["prompt"], chat_template, i)
        prompt = record["prompt"]
        if room is not None and len(prompt_ids) > room:
            too_long.append((i, len(prompt_ids)))
            if truncate:
                if not isinstance(prompt, str) or chat_template:
                    raise UserInputError(
                        f"prompt {i} is a conversation too long for the context; it cannot be truncated"
                    )
                prompt_ids = prompt_ids[-room:]
                prompt = tokenizer.decode(prompt_ids, skip_special_tokens=True)
        ids.append(prompt_ids)
        prompts.append(prompt)
    if too_long and not truncate:
        i, n = too_long[0]
        raise UserInputError(
            f"{len(too_long)} prompt(s) are longer than the context allows: prompt {i} is {n} tokens but the policy's "
            f"context of {context} minus --max-new-tokens {max_new_tokens} leaves {room}; shorten them, lower "
            "--max-new-tokens, or pass --truncate-prompts to keep their last tokens"
        )
    return ids, prompts


def step_prompt_indices(n_prompts: int, batch_size: int, step: int, seed: int) -> list[int]:
    """The prompts of step `step` (0-based): consecutive slices of seeded permutations, one
    permutation per pass over the prompts."""
    indices = []
    for position in range(step * batch_size, (step + 1) * batch_size):
        epoch, offset = divmod(position, n_prompts)
        order = torch.randperm(n_prompts, generator=torch.Generator().manual_seed(derive_seed(seed, "prompts", epoch)))
        indices.append(int(order[offset]))
    return indices


def policy_token_rewards(
    rewarder: Rewarder, prompts: Sequence[TextOrMessages], generations: Generations
) -> TokenRewards:
    """The rewards on the generated tokens (one per response id, offsets of the generations),
    in the layout described in the module docstring; `.padded(width)` gives the `[B, width]`
    tensor, `.sequence_rewards` the scores."""
    scored = [i for i, g in enumerate(generations) if g.text.strip()]
    rows = [[0.0] * len(g.response_ids) for g in generations]
    sequence = [0.0] * len(generations)
    if scored:
        result = rewarder.score(
            [prompts[i] for i in scored],
            [generations[i].text for i in scored],
            align_to=[generations[i].offsets for i in scored],
        )
        for k, i in enumerate(scored):
            rows[i] = terminal_layout(result.token_rewards(k), generations[i].offsets, len(generations[i].text))
            sequence[i] = float(result.sequence_rewards[k])
    floor = min(sequence[i] for i in scored) if scored else 0.0
    for i in sorted(set(range(len(generations))) - set(scored)):
        rows[i][-1] = floor
        sequence[i] = floor
    return TokenRewards.from_lists(rewarder.name, generations.texts, [g.offsets for g in generations], rows, sequence)
