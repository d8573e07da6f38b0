"""The world's task families: one module per family, each registering a `Family` subclass
with `register_family`. A family holds everything the world knows about its task: the prompt
maker, the response body with its planted defects, the oracle's answer check, the canonical
answer, the word limit, and the text the world's README gives for it.

    from tokenreward.world.families import family
    arithmetic = family("arithmetic")
    record = arithmetic.prompt(random.Random(0))      # {"family", "prompt", "meta"}
    arithmetic.check(record["meta"], " 2 + 2 = 4.")  # the oracle's answer spans and issues

A new family is a new module here; `tokenreward world build --families` selects the families
a world holds (`DEFAULT_FAMILIES` otherwise).
"""

from __future__ import annotations

import random
from functools import cache

from tokenreward.errors import UserInputError
from tokenreward.registry import Registry
from tokenreward.world import tables
from tokenreward.world.answers import Answer, StepTruth

#: the families of a world built without `--families`, in the order their prompts are drawn
DEFAULT_FAMILIES = ("arithmetic", "facts", "enumeration", "repetition", "tone")
#: defect kinds the generator can plant in a reply of any family (see `generate.respond`)
COMMON_DEFECTS = ("verbose", "no_answer", "loop", "hostile")


class Family:
    """One task family. Subclasses set the attributes and implement `prompt`, `body`, `check`
    and `canonical`; `decorate` is an optional last touch on the body."""

    name: str
    #: the family's own defect kinds (sampled twice as often as the common ones)
    defects: tuple[str, ...] = ()
    #: the common defect kinds this family's replies can carry
    common_defects: tuple[str, ...] = COMMON_DEFECTS
    #: words above which a reply is verbose (the oracle's verbosity term)
    word_limit: int
    #: replies that answer nothing (formatted with the prompt's `item`, if any)
    non_answers: tuple[str, ...] = tuple(tables.NON_ANSWERS)
    #: most copies of the last sentence a planted loop appends
    max_loops: int = 2
    #: whether the common "hostile" kind is an insult sentence (False: the body plants hostile words itself)
    insults: bool = True
    #: the README's line for the family: what it asks and the defects it plants
    summary: str
    #: the oracle's rule for the family's answer (item 3 of `tokenreward.world.oracle`'s docstring)
    rule: str
    #: whether a reply is right or wrong (`correct`; the oracle's verifiable reward)
    verifiable: bool = False
    #: whether replies are written in steps whose correctness is known (`steps`)
    has_steps: bool = False

    def prompt(self, rng: random.Random) -> dict:
        """A prompt record `{"family", "prompt", "meta"}` drawn with `rng`."""
        raise NotImplementedError

    def body(self, rng: random.Random, meta: dict, kinds: set[str], template: int) -> str:
        """The family's answer with the family's defects in `kinds` planted (marked, see `marks`)."""
        raise NotImplementedError

    def decorate(self, rng: random.Random, meta: dict, kinds: set[str], text: str) -> str:
        """Defects planted after the body (or the non-answer); none by default."""
        return text

    def check(self, meta: dict, text: str) -> Answer:
        """The oracle's credited answer spans and answer issues in `text` (loops already masked)."""
        raise NotImplementedError

    def canonical(self, meta: dict) -> str:
        """The reference reply (leading space, as responses follow the prompt directly)."""
        raise NotImplementedError

    def correct(self, meta: dict, text: str) -> bool:
        """Whether the reply's answer is right (for `verifiable` families): the check credits
        the whole answer (credits summing to 1) and finds no answer issue."""
        answer = self.check(meta, text)
        return answer.attempted and not answer.issues and abs(sum(c for _, _, c in answer.spans) - 1.0) < 1e-9

    def steps(self, meta: dict, text: str) -> list[StepTruth]:
        """Each step's span and ground truth (for families that `has_steps`)."""
        raise NotImplementedError

    def record(self, question: str, meta: dict) -> dict:
        """The prompt record of `question` (wrapped in `tables.PROMPT_TEMPLATE`)."""
        return {"family": self.name, "prompt": tables.PROMPT_TEMPLATE.format(question=question), "meta": meta}


FAMILIES: Registry[type[Family]] = Registry("world family", "tokenreward.world.families")


def register_family(cls: type[Family]) -> type[Family]:
    """Class decorator: register the family under its `name`."""
    return FAMILIES.register(cls.name)(cls)


@cache
def family(name: str) -> Family:
    """The registered family `name`; an unknown name raises ValueError listing the known ones."""
    if name not in FAMILIES.names():
        raise UserInputError(f"unknown family {name!r}; the world's families: {', '.join(FAMILIES.names())}")
    return FAMILIES.get(name)()


def check_families(names: tuple[str, ...] | list[str], where: str = "families") -> tuple[str, ...]:
    """`names` as a tuple, after checking that each is a registered family and none repeats."""
    if not names:
        raise UserInputError(f"{where}: name at least one world family ({', '.join(FAMILIES.names())})")
    for name in names:
        try:
            family(name)
        except ValueError as err:
            raise UserInputError(f"{where}: {err}") from None
    if len(set(names)) != len(names):
        raise UserInputError(f"{where}: a family is named twice in {', '.join(names)}")
    return tuple(names)
