"""The reviser interface: (prompt, rejected, chosen) -> a minimal revision of the rejected response.

A `Revision` either carries the revised text (and the reviser's reasoning when it gave one) or
says why it failed (`failure`); a failed revision is recorded as such and never labelled.
`request_failed` marks a failure of the request itself (a 400, or a timeout or 5xx that
outlived the retries) rather than of the reply: a rerun of `tokenreward label` retries such
pairs. Problems no rerun of one pair can fix (a refused key, a wrong URL) raise
`ReviserError` so that the labelling run stops and can be resumed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tokenreward.errors import UserInputError
from tokenreward.registry import Registry
from tokenreward.rewards import TextOrMessages


class ReviserError(RuntimeError):
    """The reviser could not be reached or refused the request (after its retries)."""


@dataclass
class Revision:
    revision: str | None
    reasoning: str | None = None
    failure: str | None = None
    reply: str | None = None
    request_failed: bool = False

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass
class RevisionRequest:
    prompt: TextOrMessages
    rejected: str
    chosen: str


class Reviser(ABC):
    """Subclasses implement `revise_batch`; `revise` is the one-item convenience."""

    name: str = "reviser"
    #: how many requests the labelling command hands over at once
    batch_size: int = 8

    def revise(self, prompt: TextOrMessages, rejected: str, chosen: str) -> Revision:
        return self.revise_batch([RevisionRequest(prompt, rejected, chosen)])[0]

    @abstractmethod
    def revise_batch(self, requests: Sequence[RevisionRequest]) -> list[Revision]:
        """One `Revision` per request, in order."""


REVISERS: Registry[type[Reviser]] = Registry("reviser", "tokenreward.revisers")


def register_reviser(name: str):
    """Class decorator: register a `Reviser` subclass under `name` and set its `name`."""
    return REVISERS.register_class(name)


def build_reviser(name: str, **options: Any) -> Reviser:
    """Build reviser `name` with the options its constructor accepts (None values dropped)."""
    import inspect

    cls = REVISERS.get(name)
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    kwargs = {k: v for k, v in options.items() if v is not None and k in {p.name for p in params}}
    missing = [p.name for p in params if p.default is inspect.Parameter.empty and p.name not in kwargs]
    if missing:
        raise UserInputError(f"reviser {name!r} needs " + ", ".join("--" + m.replace("_", "-") for m in missing))
    return cls(**kwargs)
