"""PRM: token rewards from a process reward model's step scores.

A response is split into steps at `step_separator` (default "\\n", TRL's PRM trainer's; backslash
escapes in it and in `step_tag` are read as Python reads them, so a command line's `\\n` works): the
steps are the pieces between separators that hold a non-blank character (`split_steps`). The
PRM reads the response with a marker after every step (`marked_response`): the separator
itself for a `token-classification` or `two-class` PRM (appended after the last step, where the
response has none), the step tag (default " ки") for a `math-shepherd` PRM. The step score
`s_k` in [0, 1] is the PRM's probability that step k is good, read at the last token of its
marker (`tokenreward.rewarders._prm_models`).

Each step's reward lands on the step's last token `t_k`, the token that covers the step's
last character (the rewarder's tokens here, the policy's after `align_to`, which moves every
reward to the policy token holding that character). `placement`:
- `last`: `r_{t_k} = s_k`;
- `spread`: `r_t = s_k / n_k` for the `n_k` tokens `t_{k-1} < t <= t_k`;
- `difference`: `r_{t_k} = s_k - s_{k-1}` with `s_0 = 0`, so the rewards sum to `s_K`.
`aggregate`, the sequence reward: `min` (`min_k s_k`), `product` (`prod_k s_k`), `last` (`s_K`).
The step scores are kept in `TokenRewards.step_scores`.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from tokenreward.encoding import encode_pairs
from tokenreward.errors import UserInputError
from tokenreward.models import ModelLoading, PathOrModel, context_length, input_device, load_tokenizer, loading_options
from tokenreward.rewarders._prm_models import detect_kind, good_probabilities, good_token_ids, load_prm
from tokenreward.rewards import Rewarder, TextOrMessages, TokenRewards, register_rewarder
from tokenreward.types import Offsets

Span = tuple[int, int]


def unescaped(text: str) -> str:
    """`text` with backslash escapes read as Python reads them (`\\n` from a command line is a newline)."""
    return text.encode("latin-1", "backslashreplace").decode("unicode_escape")


def split_steps(text: str, separator: str) -> list[Span]:
    """`[start, end)` of each step of `text`: the pieces between `separator`s with a non-blank character."""
    if not separator:
        raise UserInputError("prm: step_separator must not be empty")
    steps, start = [], 0
    for piece in text.split(separator):
        if piece.strip():
            steps.append((start, start + len(piece)))
        start += len(piece) + len(separator)
    return steps


def marked_response(text: str, steps: list[Span], marker: str) -> tuple[str, list[int]]:
    """`text` with `marker` after every step, and the index of each step's marker's last character.
    A step that ends with the marker, or is followed by it, keeps the one it has."""
    pieces, positions, cursor, length = [], [], 0, 0
    for _, end in steps:
        if text.endswith(marker, cursor, end):
            piece, cursor = text[cursor:end], end
        elif text.startswith(marker, end):
            piece, cursor = text[cursor : end + len(marker)], end + len(marker)
        else:
            piece, cursor = text[cursor:end] + marker, end
        pieces.append(piece)
        length += len(piece)
        positions.append(length - 1)
    return "".join(pieces) + text[cursor:], positions


def covering_tokens(offsets: Offsets, characters: list[int]) -> list[int]:
    """For each character index, the first token whose end lies beyond it (the token holding it)."""
    tokens, t = [], 0
    for char in characters:
        while t < len(offsets) and offsets[t][1] <= char:
            t += 1
        if t == len(offsets):
            raise UserInputError(
                f"prm: no token covers character {char} of the response (its tokens end at {offsets[-1][1]})"
            )
        tokens.append(t)
    return tokens


def place_last(scores: list[float], last_tokens: list[int], length: int) -> list[float]:
    """`r_{t_k} = s_k` (scores of steps sharing a token add)."""
    row = [0.0] * length
    for score, t in zip(scores, last_tokens):
        row[t] += score
    return row


def place_spread(scores: list[float], last_tokens: list[int], length: int) -> list[float]:
    """`r_t = s_k / n_k` for the tokens `t_{k-1} < t <= t_k` (just `t_k` when a previous step ends there too)."""
    row, previous = [0.0] * length, -1
    for score, t in zip(scores, last_tokens):
        tokens = range(previous + 1, t + 1) if t > previous else range(t, t + 1)
        for u in tokens:
            row[u] += score / len(tokens)
        previous = t
    return row


def place_difference(scores: list[float], last_tokens: list[int], length: int) -> list[float]:
    """`r_{t_k} = s_k - s_{k-1}`, `s_0 = 0`."""
    return place_last([s - p for s, p in zip(scores, [0.0, *scores[:-1]])], last_tokens, length)


PLACEMENTS = {"last": place_last, "spread": place_spread, "difference": place_difference}
AGGREGATES = {"min": min, "product": math.prod, "last": lambda scores: scores[-1]}


@register_rewarder("prm")
class PrmRewarder(Rewarder):
    def __init__(
        self,
        reward_model: PathOrModel,
        tokenizer: PathOrModel | None = None,
        model_kind: str = "auto",
        step_separator: str = "\n",
        step_tag: str = " ки",
        good_token: str = "+",
        bad_token: str = "-",
        placement: str = "last",
        aggregate: str = "min",
        device: str | None = None,
        batch_size: int = 8,
        loading: ModelLoading | None = None,
    ):
        for name, value, known in (("placement", placement, PLACEMENTS), ("aggregate", aggregate, AGGREGATES)):
            if value not in known:
                raise UserInputError(f"{self.name}: {name} must be one of {', '.join(known)}, got {value!r}")
        if not step_separator:
            raise UserInputError(f"{self.name}: step_separator must not be empty")
        if batch_size < 1:
            raise UserInputError(f"{self.name}: batch_size must be at least 1, got {batch_size}")
        if tokenizer is None and not isinstance(reward_model, (str, Path)):
            raise UserInputError(f"{self.name}: pass `tokenizer` when the reward model is given as a loaded object")
        options = loading_options(loading, device)
        self.kind = detect_kind(reward_model, model_kind)
        self.model = load_prm(reward_model, self.kind, options)
        self.tokenizer = load_tokenizer(tokenizer if tokenizer is not None else reward_model)
        self.device = input_device(self.model)
        self.max_batch_tokens, self.batch_size = options.max_batch_tokens, batch_size
        self.separator, self.placement, self.aggregate = unescaped(step_separator), placement, aggregate
        self.marker = unescaped(step_tag) if self.kind == "math-shepherd" else self.separator
        if not self.marker:
            raise UserInputError(f"{self.name}: step_tag must not be empty")
        self.good_bad = good_token_ids(self.tokenizer, good_token, bad_token) if self.kind == "math-shepherd" else []

    def steps_of(self, text: str) -> list[Span]:
        """`[start, end)` of each step of a response text as this rewarder cuts it (`split_steps`),
        in the order of its `step_scores`."""
        return split_steps(text, self.separator)

    def score_steps(
        self, prompts: list[TextOrMessages], texts: list[str], steps: list[list[Span]]
    ) -> list[list[float]]:
        """`s_k` of every step of every response, from one forward pass over the marked responses."""
        marked = [marked_response(text, spans, self.marker) for text, spans in zip(texts, steps)]
        enc = encode_pairs(
            self.tokenizer, prompts, [m for m, _ in marked], context_length(self.model), self.model.config.pad_token_id
        )
        probs = good_probabilities(
            self.model, self.kind, enc.input_ids.to(self.device), enc.attention_mask.to(self.device), self.good_bad
        ).cpu()
        scores = []
        for i, (_, ends) in enumerate(marked):
            positions = [enc.response_positions[i][t] for t in covering_tokens(enc.offsets[i], ends)]
            scores.append(probs[i, positions].tolist())
        return scores

    @torch.no_grad()
    def _score_batch(self, prompts: list[TextOrMessages], responses: list[TextOrMessages]) -> TokenRewards:
        own = encode_pairs(self.tokenizer, prompts, responses)
        steps = [split_steps(text, self.separator) for text in own.responses]
        for i, spans in enumerate(steps):
            if not spans:
                raise UserInputError(f"{self.name}: response {i} has no step (it is blank)")
        scores = self.score_steps(prompts, own.responses, steps)
        rows = []
        for offsets, spans, step_scores in zip(own.offsets, steps, scores):
            last_tokens = covering_tokens(offsets, [end - 1 for _, end in spans])
            rows.append(PLACEMENTS[self.placement](step_scores, last_tokens, len(offsets)))
        sequence = [AGGREGATES[self.aggregate](s) for s in scores]
        return TokenRewards.from_lists(self.name, own.responses, own.offsets, rows, sequence, step_scores=scores)

    def input_length(self, prompt: TextOrMessages, response: TextOrMessages) -> int:
        return encode_pairs(self.tokenizer, [prompt], [response]).input_ids.shape[1]
