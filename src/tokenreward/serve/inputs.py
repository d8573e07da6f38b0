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

Both may carry `"options": {name: value}`, rewarder options for this request only, each of
its option's type (a JSON boolean for a boolean option, an integer for an integer one, a
finite number for a float one). Every string must be valid Unicode (no lone surrogates), and
every token id an integer of the policy tokenizer's vocabulary. A `/get_reward` response that
is blank (nothing but whitespace after the prompt and the trailing special tokens, or ids that
decode to it) is a `Sample` with `blank` set: it gets the server's `--empty-reward`, unscored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tokenreward.options import annotation_kinds, json_type, option_problem
from tokenreward.rewards import Offsets, TextOrMessages


class BadRequest(ValueError):
    """A request the server refuses as a whole (answered 4xx with `{"error": message}`)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class Sample:
    """One pair to score; `align_to` are the policy tokens' offsets when the request gave ids;
    `blank`: the response holds nothing to score (answered with the server's empty reward)."""

    field: str
    prompt: TextOrMessages
    response: TextOrMessages
    align_to: Offsets | None = None
    blank: bool = False


@dataclass
class PolicyTokenizer:
    """How `response_ids` are read: `decode(ids) -> (text, offsets)`, and ids lie in `[0, vocab_size)`."""

    decode: Callable[[list[int]], tuple[str, Offsets]]
    vocab_size: int


def require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest(f"body: expected a JSON object, got {json_type(body)}")
    return body


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


def check_unicode(text: str, where: str) -> None:
    """Refuse a string that is not valid Unicode (JSON lets `\\ud800`, a lone surrogate, through)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise BadRequest(
            f"{where}: not valid Unicode (lone surrogate \\u{ord(text[err.start]):04x} at character {err.start})"
        ) from None


def check_messages(value: Any, where: str) -> None:
    if not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value
    ):
        raise BadRequest(f"{where}: every message needs a string 'role' and a string 'content'")
    for k, message in enumerate(value):
        check_unicode(message["role"], f"{where}[{k}].role")
        check_unicode(message["content"], f"{where}[{k}].content")


def check_prompt(value: Any, where: str, allow_messages: bool = True) -> None:
    if isinstance(value, str):
        check_unicode(value, where)
        return
    if allow_messages and isinstance(value, list) and value:
        check_messages(value, where)
        return
    wanted = "a string or a list of messages" if allow_messages else "a string"
    raise BadRequest(f"{where}: expected {wanted}, got {json_type(value)}")


def check_response(value: Any, where: str) -> None:
    """A non-empty string, or messages whose last one is the assistant's non-empty reply."""
    if isinstance(value, str):
        check_unicode(value, where)
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


def read_options(body: dict[str, Any], known: dict[str, set[type]]) -> dict[str, Any]:
    """`body["options"]`: an object whose names are options of the served rewarder (`known`:
    name -> the types it takes), each value of its option's type (see `option_problem`)."""
    options = body.get("options", {})
    if not isinstance(options, dict):
        raise BadRequest(f"options: expected an object, got {json_type(options)}")
    unknown = [name for name in options if name not in known]
    if unknown:
        listed = ", ".join(f"options.{name}" for name in unknown)
        verb = "not an option" if len(unknown) == 1 else "not options"
        raise BadRequest(f"{listed}: {verb} of this rewarder (options: {', '.join(sorted(known)) or 'none'})")
    for name, value in options.items():
        if isinstance(value, str):
            check_unicode(value, f"options.{name}")
        problem = option_problem(value, known[name])
        if problem:
            raise BadRequest(f"options.{name}: {problem}")
    return {name: as_declared(value, known[name]) for name, value in options.items()}


def as_declared(value: Any, kinds: set[type]) -> Any:
    """An integer given for a float-only option as a float (so `1` and `1.0` are one setting)."""
    numeric = isinstance(value, int) and not isinstance(value, bool)
    return float(value) if numeric and float in kinds and int not in kinds else value


def option_kinds(annotation: Any, default: Any) -> set[type]:
    """The JSON types an option takes: from its annotation, else from its default's type."""
    kinds = annotation_kinds(annotation) - {object}
    return kinds or {type(default)}


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
    body: Any, specials: tuple[str, ...] = (), policy: PolicyTokenizer | None = None
) -> list[Sample]:
    """Samples of an OpenRLHF `/get_reward` body (see the module docstring).

    `policy` decodes and bounds policy token ids (None: the server has no policy tokenizer, so
    `response_ids` is refused). A blank response is a `blank` sample, not an error: a rollout
    batch is answered whole.
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
        return _samples_from_ids(body, prompts, policy)
    if body.get("responses") is not None:
        responses = require_list(body, "responses", len(queries))
        for i, response in enumerate(responses):
            check_prompt(response, f"responses[{i}]", allow_messages=False)
        return [
            Sample(f"responses[{i}]", p, r, blank=not r.strip()) for i, (p, r) in enumerate(zip(prompts, responses))
        ]
    samples = []
    for i, (query, prompt) in enumerate(zip(queries, prompts)):
        if not query.startswith(prompt):
            raise BadRequest(f"query[{i}]: does not start with prompts[{i}]; send the responses as 'responses'")
        response = strip_special_suffix(query[len(prompt) :], specials)
        samples.append(Sample(f"query[{i}]", prompt, response, blank=not response.strip()))
    return samples


def check_ids(ids: Any, where: str, vocab_size: int) -> list[int]:
    """`ids` as a list of token ids of the policy tokenizer (a non-empty array of integers in `[0, vocab_size)`)."""
    if not isinstance(ids, list) or not ids:
        raise BadRequest(f"{where}: expected a non-empty array of integers, got {json_type(ids)}")
    for k, token in enumerate(ids):
        if not isinstance(token, int) or isinstance(token, bool):
            shown = repr(token) if isinstance(token, float) else json_type(token)
            raise BadRequest(f"{where}[{k}]: expected an integer token id, got {shown}")
        if not 0 <= token < vocab_size:
            raise BadRequest(
                f"{where}[{k}]: id {token} is outside the policy tokenizer's vocabulary (0..{vocab_size - 1})"
            )
    return ids


def _samples_from_ids(body: dict[str, Any], prompts: list[str], policy: PolicyTokenizer | None) -> list[Sample]:
    if policy is None:
        raise BadRequest("response_ids: the server has no --policy-tokenizer to decode them; send 'responses'")
    rows = require_list(body, "response_ids", len(prompts))
    samples = []
    for i, (prompt, ids) in enumerate(zip(prompts, rows)):
        where = f"response_ids[{i}]"
        ids = check_ids(ids, where, policy.vocab_size)
        try:
            text, offsets = policy.decode(ids)
        except (ValueError, TypeError, IndexError, OverflowError) as err:
            raise BadRequest(f"{where}: cannot decode with the policy tokenizer ({err})") from err
        samples.append(Sample(where, prompt, text, offsets, blank=not text.strip()))
    return samples
