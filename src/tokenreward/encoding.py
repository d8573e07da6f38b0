"""Prompts and responses -> model inputs, with each response token's character offsets.

Choices (documented here because every rewarder relies on them):
- Which prompts go through the chat template is decided in one place, `template_prompt`:
  a conversational prompt always (a tokenizer without a template is an error naming the row);
  a plain-string prompt is used as it is, unless `chat_template=True` (the `--chat-template`
  flag) makes it one user message. A tokenizer that has a template but receives plain prompts
  says so once per process on stderr (`plain_prompt_notice`).
- A plain-text prompt is followed immediately by the response text and the two are
  tokenized together (the tokenizer's own special tokens, e.g. a BOS, are added).
- A conversational prompt (TRL style: a list of `{"role", "content"}` messages) is rendered
  with the tokenizer's chat template with the response appended as the assistant turn. The
  response is located by rendering once with a placeholder in its place; a template that
  trims the content (as Llama 3's does) is allowed, the trimmed whitespace then gets no token.
- A response may be a string or a conversation whose last message is the assistant reply.
- Response tokens are the tokens that cover at least one character of the response; a token
  straddling the prompt/response boundary counts as a response token, its offset clipped to
  the response. Bytes of one character split over several tokens share that character's span.
- The score of a sequence-classification model is read where Hugging Face reads it: the
  rightmost input token that is not the pad token (`EncodedPairs.last_positions`). Tokens
  between the last response token and that position (a template's end-of-turn, an EOS that is
  not the pad token) belong to the last response token (see `EncodedPairs.token_ends`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from tokenreward.align import check_offsets
from tokenreward.errors import InputTypeError, UserInputError
from tokenreward.types import Offsets, TextOrMessages

PLACEHOLDER = "\u2063RESPONSE\u2063"

#: whether this process has said that plain prompts skip a tokenizer's chat template
_plain_prompt_notice_given = False


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def as_user_message(prompt: TextOrMessages) -> TextOrMessages:
    """A plain-string prompt as a one-message conversation `[{"role": "user", "content": prompt}]`;
    a conversation unchanged."""
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt


def prompts_as_chat(records: Sequence[dict], chat_template: bool) -> list[dict]:
    """`records` with each plain-string `prompt` made one user message when `chat_template` is
    set (the `--chat-template` flag of a command that reads prompt records); unchanged otherwise."""
    if not chat_template:
        return list(records)
    return [{**r, "prompt": as_user_message(r["prompt"])} if isinstance(r.get("prompt"), str) else r for r in records]


def plain_prompt_notice(tokenizer) -> None:
    """Say once per process, on one stderr line, that a tokenizer's chat template goes unused."""
    global _plain_prompt_notice_given
    if _plain_prompt_notice_given:
        return
    _plain_prompt_notice_given = True
    name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
    print(
        f"tokenreward: the tokenizer of {name} has a chat template; plain-string prompts are used as they are "
        "(pass --chat-template to apply it)",
        file=sys.stderr,
    )


def template_prompt(tokenizer, prompt: TextOrMessages, chat_template: bool = False, index: int = 0) -> TextOrMessages:
    """The prompt as it is encoded: a conversation (a list of `{role, content}` messages, to be
    rendered with the tokenizer's chat template) or a plain string (used as it is).

    A plain string becomes one user message when `chat_template` is set; otherwise, if the
    tokenizer has a template, `plain_prompt_notice` says once that it goes unused. A
    conversation needs a tokenizer with a template."""
    if isinstance(prompt, str):
        if chat_template:
            prompt = as_user_message(prompt)
        else:
            if has_chat_template(tokenizer):
                plain_prompt_notice(tokenizer)
            return prompt
    if not (isinstance(prompt, (list, tuple)) and all(isinstance(m, dict) for m in prompt)):
        raise InputTypeError(f"prompt {index}: expected a string or a list of messages, got {type(prompt).__name__}")
    if not has_chat_template(tokenizer):
        what = "was given chat_template=True" if chat_template else "is conversational"
        raise UserInputError(f"prompt {index} {what} but the tokenizer has no chat template")
    return list(prompt)


@dataclass
class EncodedPairs:
    """A right-padded batch of prompt+response inputs.

    `response_positions[i]` are the input positions of response `i`'s tokens, `offsets[i]`
    their character spans in the response string, `last_positions[i]` the position where a
    sequence-classification model reads its score (the rightmost non-pad token).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    response_positions: list[list[int]]
    offsets: list[Offsets]
    last_positions: list[int]
    responses: list[str]

    def token_ends(self, i: int) -> list[int]:
        """Input position that closes each response token: the position before the next
        response token, and for the last token the scoring position."""
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
            raise UserInputError(
                f"response {index}: the last message must be the assistant's, got {response[-1].get('role')!r}"
            )
        text = response[-1].get("content", "")
    else:
        raise InputTypeError(
            f"response {index}: expected a string or a list of messages, got {type(response).__name__}"
        )
    if not isinstance(text, str):
        raise InputTypeError(f"response {index}: the content must be a string, got {type(text).__name__}")
    if not text:
        raise UserInputError(f"response {index} is empty")
    return text


@dataclass
class Rendered:
    """The model's input text; response characters `[lead, lead + length)` sit at `start`."""

    text: str
    start: int
    lead: int
    length: int
    add_special_tokens: bool


def render(tokenizer, prompt: TextOrMessages, response: str, index: int = 0, chat_template: bool = False) -> Rendered:
    """Place the response after the prompt (plain concatenation or the chat template, as
    `template_prompt` decides)."""
    prompt = template_prompt(tokenizer, prompt, chat_template, index)
    if isinstance(prompt, str):
        return Rendered(prompt + response, len(prompt), 0, len(response), True)

    def apply(content: str) -> str:
        return tokenizer.apply_chat_template(
            list(prompt) + [{"role": "assistant", "content": content}], tokenize=False
        )

    framed = apply(PLACEHOLDER)
    if framed.count(PLACEHOLDER) != 1:
        raise UserInputError(f"prompt {index}: the chat template does not show the assistant's reply exactly once")
    start = framed.index(PLACEHOLDER)
    before, after = framed[:start], framed[start + len(PLACEHOLDER) :]
    for core in (response, response.strip()):
        if core and apply(core) == before + core + after:
            return Rendered(before + core + after, start, response.index(core), len(core), False)
    raise UserInputError(
        f"prompt {index}: the chat template changes the response text, so its tokens cannot be located"
    )


def check_tokenizer(tokenizer) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise UserInputError(
            f"tokenizer {type(tokenizer).__name__} gives no character offsets (a 'fast' tokenizer is "
            "needed to align tokens to the response text)"
        )
    if tokenizer.pad_token_id is None:
        raise UserInputError("tokenizer has no pad token; set one (e.g. tokenizer.pad_token = tokenizer.eos_token)")


def encode_pairs(
    tokenizer,
    prompts: Sequence[TextOrMessages],
    responses: Sequence[TextOrMessages],
    max_length: int | None = None,
    pad_token_id: int | None = None,
    chat_template: bool = False,
) -> EncodedPairs:
    """Tokenize prompt+response pairs (see the module docstring for the rules; `chat_template`
    applies the tokenizer's template to plain-string prompts as one user message).

    `pad_token_id` (default: the tokenizer's) pads the batch and marks the tokens a
    sequence-classification model skips when it reads its score; pass the model's
    `config.pad_token_id` so that `last_positions` is where the model itself reads.
    """
    check_tokenizer(tokenizer)
    pad = tokenizer.pad_token_id if pad_token_id is None else pad_token_id
    if len(prompts) != len(responses):
        raise UserInputError(f"{len(prompts)} prompts but {len(responses)} responses")
    rows, positions, offsets, lasts, texts = [], [], [], [], []
    for i, (prompt, response) in enumerate(zip(prompts, responses)):
        resp = response_text(response, i)
        r = render(tokenizer, prompt, resp, i, chat_template)
        start, end = r.start, r.start + r.length
        enc = tokenizer(r.text, return_offsets_mapping=True, add_special_tokens=r.add_special_tokens)
        ids, spans = enc["input_ids"], enc["offset_mapping"]
        if max_length is not None and len(ids) > max_length:
            raise UserInputError(
                f"prompt+response {i} is {len(ids)} tokens, longer than the model's context of {max_length}"
            )
        pos = [p for p, (s, e) in enumerate(spans) if e > s and e > start and s < end]
        if not pos:
            raise UserInputError(
                f"response {i} produced no tokens that cover its text (tokenizer offsets are unusable)"
            )
        offs = [(max(spans[p][0], start) - start + r.lead, min(spans[p][1], end) - start + r.lead) for p in pos]
        check_offsets(offs, len(resp), f"response {i}")
        last = max((p for p, token in enumerate(ids) if token != pad), default=-1)
        if last < pos[-1]:
            raise UserInputError(
                f"response {i} ends with the pad token (id {pad}); the model would not read its score after the "
                "response. Remove it from the response text or use a pad token distinct from the text's tokens"
            )
        rows.append(ids)
        positions.append(pos)
        offsets.append(offs)
        lasts.append(last)
        texts.append(resp)
    width = max((len(r) for r in rows), default=0)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, ids in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[i, : len(ids)] = 1
    return EncodedPairs(input_ids, attention_mask, positions, offsets, lasts, texts)
