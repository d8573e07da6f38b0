"""Request bodies -> samples to score, with errors that name the offending field.

Two body shapes are read:

- `/v1/token_rewards`: `{"prompts": [...], "responses": [...]}`, each prompt a string or TRL
  conversational messages, each response a string or messages ending with the assistant's.
- `/get_reward` (OpenRLHF's remote reward protocol): `{"query": [str], "prompts": [str],
  "labels": [...]}`. The response is `query[i][len(prompts[i]):]` (the query must start with
  its prompt), with trailing special-token strings (an EOS the policy emitted and OpenRLHF
  decoded with `skip_special_tokens=False`) removed. Optional `"responses": [str]` gives the
  responses directly; optional `"response_ids": [[int]]` gives the policy's token ids, decoded
  with the server's `--policy-tokenizer`, and the rewards are then aligned to those tokens.

Both may carry `"options": {name: value}`, rewarder options for this request only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tokenreward.rewards import Offsets, TextOrMessages


class BadRequest(ValueError):
    """A request the server refuses as a whole (answered 4xx with `{"error": message}`)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class Sample:
    """One pair to score; `align_to` are the policy tokens' offsets when the request gave ids."""

    field: str
    prompt: TextOrMessages
    response: TextOrMessages
    align_to: Offsets | None = None


def require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest(f"body: expected a JSON object, got {json_type(body)}")
    return body


def json_type(value: Any) -> str:
    names = {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }
    return "null" if value is None else names.get(type(value), type(value).__name__)


def require_list(body: dict[str, Any], name: str, length: int | None = None) -> list[Any]:
    """`body[name]` as a non-empty array (of `length` entries when given)."""
    if name not in body:
        raise BadRequest(f"{name}: missing field")
    value = body[name]
    if not isinstance(value, list):
        raise BadRequest(f"{name}: expected an array, got {json_type(value)}")
    if not value:
        raise BadRequest(f"{name}: empty array")
    if length is not None and len(value) != length:
        raise BadRequest(f"{name}: {len(value)} entries, but {length} prompts")
    return value


def check_messages(value: Any, where: str) -> None:
    if not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value
    ):
        raise BadRequest(f"{where}: every message needs a string 'role' and a string 'content'")


def check_prompt(value: Any, where: str, allow_messages: bool = True) -> None:
    if isinstance(value, str):
        return
    if allow_messages and isinstance(value, list) and value:
        check_messages(value, where)
        return
    wanted = "a string or a list of messages" if allow_messages else "a string"
    raise BadRequest(f"{where}: expected {wanted}, got {json_type(value)}")


def check_response(value: Any, where: str) -> None:
    """A non-empty string, or messages whose last one is the assistant's non-empty reply."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, list) and value:
        check_messages(value, where)
        if value[-1]["role"] != "assistant":
            raise BadRequest(f"{where}: the last message must be the assistant's, got {value[-1]['role']!r}")
        text = value[-1]["content"]
    else:
        raise BadRequest(f"{where}: expected a string or a list of messages, got {json_type(value)}")
    if not text:
        raise BadRequest(f"{where}: empty response")


def read_options(body: dict[str, Any], known: set[str]) -> dict[str, Any]:
    """`body["options"]`: an object whose names are options of the served rewarder."""
    options = body.get("options", {})
    if not isinstance(options, dict):
        raise BadRequest(f"options: expected an object, got {json_type(options)}")
    for name, value in options.items():
        if name not in known:
            raise BadRequest(
                f"options.{name}: not an option of this rewarder (options: {', '.join(sorted(known)) or 'none'})"
            )
        if not isinstance(value, (bool, int, float, str)):
            raise BadRequest(f"options.{name}: expected a number, boolean or string, got {json_type(value)}")
    return options


def token_reward_samples(body: Any) -> list[Sample]:
    """Samples of a `/v1/token_rewards` body."""
    body = require_object(body)
    prompts = require_list(body, "prompts")
    responses = require_list(body, "responses", len(prompts))
    for i, (prompt, response) in enumerate(zip(prompts, responses)):
        check_prompt(prompt, f"prompts[{i}]")
        check_response(response, f"responses[{i}]")
    return [Sample(f"responses[{i}]", p, r) for i, (p, r) in enumerate(zip(prompts, responses))]


def strip_special_suffix(text: str, specials: tuple[str, ...]) -> str:
    """Remove special-token strings (e.g. `</s>`) repeated at the end of `text`."""
    stripped = True
    while stripped:
        stripped = False
        for token in specials:
            if token and text.endswith(token):
                text, stripped = text[: -len(token)], True
    return text


def get_reward_samples(
    body: Any,
    specials: tuple[str, ...] = (),
    decode_ids: Callable[[list[int]], tuple[str, Offsets]] | None = None,
) -> list[Sample]:
    """Samples of an OpenRLHF `/get_reward` body (see the module docstring).

    `decode_ids(ids) -> (text, offsets)` decodes policy token ids (None: the server has no
    policy tokenizer, so `response_ids` is refused).
    """
    body = require_object(body)
    queries = require_list(body, "query")
    prompts = require_list(body, "prompts", len(queries))
    if body.get("labels") is not None:
        if not isinstance(body["labels"], list):
            raise BadRequest(f"labels: expected an array, got {json_type(body['labels'])}")
        if len(body["labels"]) != len(queries):
            raise BadRequest(f"labels: {len(body['labels'])} entries, but {len(queries)} queries")
    for i, (query, prompt) in enumerate(zip(queries, prompts)):
        check_prompt(query, f"query[{i}]", allow_messages=False)
        check_prompt(prompt, f"prompts[{i}]", allow_messages=False)
    if body.get("response_ids") is not None:
        return _samples_from_ids(body, prompts, decode_ids)
    if body.get("responses") is not None:
        responses = require_list(body, "responses", len(queries))
        for i, response in enumerate(responses):
            check_prompt(response, f"responses[{i}]", allow_messages=False)
            check_response(response, f"responses[{i}]")
        return [Sample(f"responses[{i}]", p, r) for i, (p, r) in enumerate(zip(prompts, responses))]
    samples = []
    for i, (query, prompt) in enumerate(zip(queries, prompts)):
        if not query.startswith(prompt):
            raise BadRequest(f"query[{i}]: does not start with prompts[{i}]; send the responses as 'responses'")
        response = strip_special_suffix(query[len(prompt) :], specials)
        if not response:
            raise BadRequest(f"query[{i}]: empty response (nothing after the prompt)")
        samples.append(Sample(f"query[{i}]", prompt, response))
    return samples


def _samples_from_ids(body: dict[str, Any], prompts: list[str], decode_ids) -> list[Sample]:
    if decode_ids is None:
        raise BadRequest("response_ids: the server has no --policy-tokenizer to decode them; send 'responses'")
    rows = require_list(body, "response_ids", len(prompts))
    samples = []
    for i, (prompt, ids) in enumerate(zip(prompts, rows)):
        where = f"response_ids[{i}]"
        if (
            not isinstance(ids, list)
            or not ids
            or not all(isinstance(t, int) and not isinstance(t, bool) for t in ids)
        ):
            raise BadRequest(f"{where}: expected a non-empty array of integers")
        try:
            text, offsets = decode_ids(ids)
        except (ValueError, TypeError, IndexError, OverflowError) as err:
            raise BadRequest(f"{where}: cannot decode with the policy tokenizer ({err})") from err
        if not text:
            raise BadRequest(f"{where}: decodes to an empty response")
        samples.append(Sample(where, prompt, text, offsets))
    return samples
