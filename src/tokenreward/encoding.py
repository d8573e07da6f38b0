"""Prompts and responses -> model inputs, with each response token's character offsets.

Choices (documented here because every rewarder relies on them):
- A plain-text prompt is followed immediately by the response text and the two are
  tokenized together (the tokenizer's own special tokens, e.g. a BOS, are added).
- A conversational prompt (TRL style: a list of `{"role", "content"}` messages) is rendered
  with the tokenizer's chat template with the response appended as the assistant turn; the
  response is located as the last occurrence of its text in the rendered string.
- A response may be a string or a conversation whose last message is the assistant reply.
- Response tokens are the tokens that cover at least one character of the response; a token
  straddling the prompt/response boundary counts as a response token, its offset clipped to
  the response. Tokens after the response (a template's end-of-turn, an EOS) are kept in the
  input and belong to the last response token (see `EncodedPairs.token_ends`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from tokenreward.rewards import Offsets, TextOrMessages


@dataclass
class EncodedPairs:
    """A right-padded batch of prompt+response inputs.

    `response_positions[i]` are the input positions of response `i`'s tokens, `offsets[i]`
    their character spans in the response string, `last_positions[i]` the last real input
    position (where a sequence-classification model reads its score).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    response_positions: list[list[int]]
    offsets: list[Offsets]
    last_positions: list[int]
    responses: list[str]

    def token_ends(self, i: int) -> list[int]:
        """Input position that closes each response token: the position before the next
        response token, and for the last token the last real position."""
        pos = self.response_positions[i]
        return [p - 1 for p in pos[1:]] + [self.last_positions[i]]

    def prompt_end(self, i: int) -> int:
        """Last input position before the response (-1 if the response starts the input)."""
        return self.response_positions[i][0] - 1


def response_text(response: TextOrMessages, index: int = 0) -> str:
    """The response string; for a conversation, the content of its last (assistant) message."""
    if isinstance(response, str):
        text = response
    elif isinstance(response, (list, tuple)) and response and isinstance(response[-1], dict):
        if response[-1].get("role", "assistant") != "assistant":
            raise ValueError(f"response {index}: the last message must be the assistant's, got {response[-1].get('role')!r}")
        text = response[-1].get("content", "")
    else:
        raise TypeError(f"response {index}: expected a string or a list of messages, got {type(response).__name__}")
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"response {index} is empty")
    return text


def render(tokenizer, prompt: TextOrMessages, response: str, index: int = 0) -> tuple[str, int, bool]:
    """Full text, the response's start offset in it, and whether special tokens must be added."""
    if isinstance(prompt, str):
        return prompt + response, len(prompt), True
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"prompt {index} is conversational but the tokenizer has no chat template")
    messages = list(prompt) + [{"role": "assistant", "content": response}]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    start = text.rfind(response)
    if start < 0:
        raise ValueError(f"prompt {index}: the chat template changed the response text; cannot locate it")
    return text, start, False


def check_tokenizer(tokenizer) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"tokenizer {type(tokenizer).__name__} gives no character offsets (a 'fast' tokenizer is "
            "needed to align tokens to the response text)"
        )
    if tokenizer.pad_token_id is None:
        raise ValueError("tokenizer has no pad token; set one (e.g. tokenizer.pad_token = tokenizer.eos_token)")


def encode_pairs(
    tokenizer,
    prompts: Sequence[TextOrMessages],
    responses: Sequence[TextOrMessages],
    max_length: int | None = None,
) -> EncodedPairs:
    """Tokenize prompt+response pairs (see the module docstring for the rules)."""
    check_tokenizer(tokenizer)
    rows, positions, offsets, lasts, texts = [], [], [], [], []
    for i, (prompt, response) in enumerate(zip(prompts, responses)):
        resp = response_text(response, i)
        full, start, special = render(tokenizer, prompt, resp, i)
        end = start + len(resp)
        enc = tokenizer(full, return_offsets_mapping=True, add_special_tokens=special)
        ids, spans = enc["input_ids"], enc["offset_mapping"]
        if max_length is not None and len(ids) > max_length:
            raise ValueError(
                f"prompt+response {i} is {len(ids)} tokens, longer than the model's context of {max_length}"
            )
        pos = [p for p, (s, e) in enumerate(spans) if e > s and e > start and s < end]
        if not pos:
            raise ValueError(f"response {i} produced no tokens that cover its text")
        rows.append(ids)
        positions.append(pos)
        offsets.append([(max(spans[p][0], start) - start, min(spans[p][1], end) - start) for p in pos])
        lasts.append(len(ids) - 1)
        texts.append(resp)
    width = max((len(r) for r in rows), default=0)
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, ids in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[i, : len(ids)] = 1
    return EncodedPairs(input_ids, attention_mask, positions, offsets, lasts, texts)
