"""`verifiable`: a checker's verdict as the reward (RLVR), on the response's last token; no reward model.

    R(x, y) = float(checker(x, y))        (1.0 right, 0.0 wrong; a bool counts as 1/0)
    r_t = R * [t = T]                     (the sparse layout: all of it on the last token T)

Tokens are `tokenizer`'s; without a tokenizer the response is one span, which aligning to a
policy's tokens (`score(..., align_to=...)`, as the trainers do) puts on the policy's last token.
The sequence reward is `R`.

The checker: `checker="package.module:function"`, a function of `(prompt, response text)` that
returns a number, imported when the rewarder is built. Default: the world's oracle
(`tokenreward.world.verifier.WorldVerifier`, for the world at `world=FOLDER`, default
`open_world()`; ignored with `checker`): `oracle_reward(record, response, "verifiable")` with
`record` the world's record of the prompt; a prompt the world does not hold, or one of a family
with no right answer, is refused naming the prompt and the verifiable families.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from typing import Any

from tokenreward.encoding import encode_pairs, response_text
from tokenreward.errors import UserInputError
from tokenreward.models import PathOrModel, load_tokenizer
from tokenreward.rewards import Rewarder, TextOrMessages, TokenRewards, register_rewarder

Checker = Callable[[TextOrMessages, str], Any]
#: the default checker's class, built with the `world` folder; named, not imported: the world sits above the rewarders
WORLD_CHECKER = "tokenreward.world.verifier:WorldVerifier"


def load_checker(spec: str) -> Checker:
    """The function `package.module:function` names; a one-line error naming the option otherwise."""
    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name:
        raise UserInputError(f"checker={spec!r}: expected package.module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise UserInputError(f"checker={spec!r}: cannot import {module_name} ({err})") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise UserInputError(f"checker={spec!r}: {module_name} has no function {function_name!r}")
    return function


def prompt_text(prompt: TextOrMessages) -> str:
    """The prompt string; for a conversation, the content of its last user message."""
    if isinstance(prompt, str):
        return prompt
    users = [m.get("content", "") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
    return users[-1] if users else ""


@register_rewarder("verifiable")
class VerifiableRewarder(Rewarder):
    #: why `bench credit`'s default set leaves it out
    no_token_credit = "a right/wrong verdict on the last token, for prompts with a right answer only (no token credit)"

    def __init__(
        self,
        tokenizer: PathOrModel | None = None,
        checker: str | None = None,
        world: str | None = None,
        batch_size: int = 64,
    ):
        self.tokenizer = load_tokenizer(tokenizer) if tokenizer is not None else None
        self.checker_name = checker or "the world's oracle"
        self.check = load_checker(checker) if checker else load_checker(WORLD_CHECKER)(world)
        self.batch_size = batch_size

    def verdict(self, prompt: TextOrMessages, response: str) -> float:
        """`float(checker(prompt, response))`; anything but a finite number is refused."""
        value = self.check(prompt, response)
        if isinstance(value, bool) or (isinstance(value, (int, float)) and math.isfinite(value)):
            return float(value)
        raise UserInputError(
            f"verifiable: checker {self.checker_name} returned {value!r} for prompt {prompt_text(prompt)[:60]!r}; "
            "it must return a finite number or a bool"
        )

    def _score_batch(self, prompts: list[TextOrMessages], responses: list[TextOrMessages]) -> TokenRewards:
        texts = [response_text(r, i) for i, r in enumerate(responses)]
        scores = [self.verdict(p, t) for p, t in zip(prompts, texts)]
        if self.tokenizer is not None:
            offsets = encode_pairs(self.tokenizer, prompts, responses).offsets
        else:
            offsets = [[(0, len(t))] for t in texts]
        rows = [[0.0] * (len(o) - 1) + [score] if o else [] for o, score in zip(offsets, scores)]
        return TokenRewards.from_lists(self.name, texts, offsets, rows, scores)
