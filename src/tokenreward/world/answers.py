"""What the oracle (`tokenreward.world.oracle`) and the families' answer checks
(`tokenreward.world.families`) share: the credits, patterns, text helpers, and the `Issue`,
`Grade` and `Answer` records."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

from tokenreward.world import tables

REPEAT_CREDIT = -0.5
WRONG_CREDIT = -1.0
LIST_ERROR_CREDIT = -0.5
RESTATEMENT_CREDIT = -0.5
HOSTILE_THRESHOLD = -1.5
HOSTILE_SCALE = 3.0
KIND_THRESHOLD = 1.0
NO_ANSWER_PENALTY = 1.0
VERBOSITY_RATE = 0.1
VERBOSITY_CAP = 1.0
FACT_MATCH_RATIO = 90.0

WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
NUMBER = re.compile(r"\d+")
EXPRESSION = re.compile(r"(\d+)\s*([-+*])\s*(\d+)")
SENTENCE = re.compile(r"[^.!?]*[.!?]+|[^.!?]+$")
LIST_SEPARATOR = re.compile(r"\s*,\s*(?:and\s+)?|\s+and\s+")


@dataclass
class Issue:
    """One defect: its credited spans `[(start, end, credit)]` (empty for a sequence term),
    the fix `(start, end, text)` (replace `response[start:end]` by `text`), and its penalty."""

    kind: str
    spans: list[tuple[int, int, float]]
    fix: tuple[int, int, str]
    penalty: float = 0.0

    @property
    def size(self) -> int:
        """Characters the defect covers: the largest of its spans, its fixed range and its fix."""
        span_chars = sum(e - s for s, e, _ in self.spans)
        return max(span_chars, self.fix[1] - self.fix[0], len(self.fix[2]))


@dataclass
class Grade:
    score: float
    credit_spans: list[list]
    defects: int
    issues: list[Issue] = field(default_factory=list)


@lru_cache(maxsize=1)
def vader_lexicon() -> dict[str, float]:
    """Word -> mean human valence (-4..4), from the lexicon shipped in `vaderSentiment`."""
    text = (resources.files("vaderSentiment") / "vader_lexicon.txt").read_text(encoding="utf-8")
    lexicon = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and parts[0].isalpha():
            lexicon[parts[0].lower()] = float(parts[1])
    return lexicon


@lru_cache(maxsize=1)
def known_words() -> frozenset[str]:
    """Every word the world's templates and tables use, plus the VADER lexicon: never a misspelling."""
    texts: list[str] = []
    for value in vars(tables).values():
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, (list, tuple)):
            texts.extend(str(v) for v in value)
        elif isinstance(value, dict):
            for key, item in value.items():
                texts.append(str(key))
                texts.append(str(item))
    words = {w.lower() for text in texts for w in WORD.findall(text)}
    return frozenset(words | set(vader_lexicon()))


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Spans of sentences without surrounding whitespace."""
    spans = []
    for m in SENTENCE.finditer(text):
        chunk = m.group()
        stripped = chunk.strip()
        if stripped:
            start = m.start() + len(chunk) - len(chunk.lstrip())
            spans.append((start, start + len(stripped)))
    return spans


def normalise(sentence: str) -> str:
    return " ".join(sentence.lower().rstrip(".!?").split())


@dataclass
class Answer:
    """What a family check found: credited answer spans, issues, and whether any answer was attempted."""

    spans: list[tuple[int, int, float]] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    attempted: bool = False


@dataclass(frozen=True)
class StepTruth:
    """One step of a reply whose family writes steps (`oracle.step_truth`): its characters
    `response[start:end]`, whether it is `correct` (what the true chain says at this step),
    whether it is `valid` (it follows from the step before it as written, right or wrong), and
    its `kind`: "step", or "answer" for the final answer line. A step that is valid but not
    correct carries an earlier error."""

    start: int
    end: int
    correct: bool
    valid: bool
    kind: str = "step"
