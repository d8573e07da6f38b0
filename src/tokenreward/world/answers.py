"""The family checks of the oracle (`tokenreward.world.oracle`), and the constants, patterns
and text helpers they share with it: each check finds a response's credited answer spans and
its answer defects for one task family (the oracle's docstring gives the rules)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

from rapidfuzz import fuzz
from rapidfuzz.distance import OSA, Levenshtein

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
WORD_LIMITS = {"arithmetic": 20, "facts": 20, "enumeration": 30, "repetition": 30, "tone": 40}

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


def _sentences(text: str) -> list[tuple[int, int]]:
    """Spans of sentences without surrounding whitespace."""
    spans = []
    for m in SENTENCE.finditer(text):
        chunk = m.group()
        stripped = chunk.strip()
        if stripped:
            start = m.start() + len(chunk) - len(chunk.lstrip())
            spans.append((start, start + len(stripped)))
    return spans


def _normalise(sentence: str) -> str:
    return " ".join(sentence.lower().rstrip(".!?").split())


def _match_case(word: str, like: str) -> str:
    return word[:1].upper() + word[1:] if like[:1].isupper() else word[:1].lower() + word[1:]


@dataclass
class Answer:
    """What a family check found: credited answer spans, issues, and whether any answer was attempted."""

    spans: list[tuple[int, int, float]] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    attempted: bool = False


def check_arithmetic(meta: dict, text: str) -> Answer:
    a, op, b, answer = str(meta["a"]), meta["op"], str(meta["b"]), str(meta["answer"])
    result = Answer()
    restated = []
    for m in EXPRESSION.finditer(text):
        restated.append((m.start(), m.end()))
        wrong = [(m.start(g), m.end(g)) for g, want in ((1, a), (2, op), (3, b)) if m.group(g) != want]
        if wrong:
            spans = [(s, e, RESTATEMENT_CREDIT / len(wrong)) for s, e in wrong]
            result.issues.append(Issue("wrong_restatement", spans, (m.start(), m.end(), f"{a} {op} {b}")))
    for m in NUMBER.finditer(text):
        if any(s <= m.start() < e for s, e in restated):
            continue
        result.attempted = True
        number = m.group()
        if number == answer:
            if not result.spans:
                result.spans.append((m.start(), m.end(), 1.0))
            continue
        if len(number) == len(answer):
            wrong = [i for i, (x, y) in enumerate(zip(number, answer)) if x != y]
            spans = [(m.start() + i, m.start() + i + 1, WRONG_CREDIT / len(wrong)) for i in wrong]
        else:
            spans = [(m.start(), m.end(), WRONG_CREDIT)]
        result.issues.append(Issue("wrong_number", spans, (m.start(), m.end(), answer)))
    return result


def _close(word: str, entity: str) -> bool:
    return OSA.distance(word.lower(), entity.lower()) <= max(1, len(entity) // 4)


def check_facts(meta: dict, text: str) -> Answer:
    table = tables.FACT_RELATIONS[meta["relation"]][0]
    subject, answer = meta["subject"], meta["answer"]
    others = {v.lower() for v in table.values()} - {answer.lower()}
    known = known_words()
    result = Answer()
    for m in WORD.finditer(text):
        word = m.group()
        lower = word.lower()
        if lower == answer.lower():
            result.attempted = True
            if not result.spans:
                result.spans.append((m.start(), m.end(), 1.0))
        elif lower in others:
            result.attempted = True
            result.issues.append(
                Issue(
                    "wrong_entity",
                    [(m.start(), m.end(), WRONG_CREDIT)],
                    (m.start(), m.end(), _match_case(answer, word)),
                )
            )
        elif lower not in known:
            if _close(word, answer) or any(_close(word, o) for o in others):
                result.attempted = True
                fixed = _match_case(answer, word)
            elif _close(word, subject):
                fixed = _match_case(subject, word)
            else:
                continue
            result.issues.append(
                Issue("misspelled", [(m.start(), m.end(), WRONG_CREDIT)], (m.start(), m.end(), fixed))
            )
    return result


def _number_runs(text: str) -> list[list[re.Match]]:
    runs: list[list[re.Match]] = []
    for m in NUMBER.finditer(text):
        if runs and LIST_SEPARATOR.fullmatch(text[runs[-1][-1].end() : m.start()]):
            runs[-1].append(m)
        else:
            runs.append([m])
    return runs


def check_enumeration(meta: dict, text: str) -> Answer:
    expected = [str(v) for v in meta["items"]]
    k = len(expected)
    runs = [r for r in _number_runs(text) if len(r) >= 2]
    result = Answer()
    if not runs:
        return result
    items = max(reversed(runs), key=len)  # longest; the last among equals
    result.attempted = True
    got = [m.group() for m in items]
    matched = set(range(len(got)))
    missing: dict[int, list[str]] = {}
    for op in Levenshtein.editops(got, expected):
        if op.tag == "replace":
            m = items[op.src_pos]
            matched.discard(op.src_pos)
            result.issues.append(
                Issue(
                    "list_wrong",
                    [(m.start(), m.end(), LIST_ERROR_CREDIT)],
                    (m.start(), m.end(), expected[op.dest_pos]),
                )
            )
        elif op.tag == "delete":
            m = items[op.src_pos]
            matched.discard(op.src_pos)
            fix = (
                (items[op.src_pos - 1].end(), m.end())
                if op.src_pos > 0
                else (m.start(), items[1].start() if len(items) > 1 else m.end())
            )
            result.issues.append(Issue("list_extra", [(m.start(), m.end(), LIST_ERROR_CREDIT)], (*fix, "")))
        else:
            missing.setdefault(op.src_pos, []).append(expected[op.dest_pos])
    for position, absent in missing.items():
        credit = LIST_ERROR_CREDIT * len(absent)
        if position == 0:
            first = items[0]
            span, fix = (first.start(), first.end()), (first.start(), first.start(), ", ".join(absent) + ", ")
        elif position < len(items):
            before, after = items[position - 1], items[position]
            span, fix = (before.end(), after.start()), (before.end(), before.end(), ", " + ", ".join(absent))
        else:
            last = items[-1]
            after_end = last.end() + 1 if last.end() < len(text) and not text[last.end()].isspace() else last.end()
            span = (last.end(), after_end) if after_end > last.end() else (last.start(), last.end())
            fix = (last.end(), last.end(), ", " + ", ".join(absent))
        result.issues.append(Issue("list_missing", [(*span, credit)], fix))
    result.spans = [(items[i].start(), items[i].end(), 1.0 / k) for i in sorted(matched)]
    return result


def _animal_names() -> dict[str, str]:
    """Every plural and singular animal name -> its plural key."""
    names = {}
    for plural, (singular, _) in tables.ANIMALS.items():
        names[plural] = plural
        names[singular] = plural
    return names


def check_repetition(meta: dict, text: str) -> Answer:
    subject, fact = meta["animal"], tables.ANIMALS[meta["animal"]][1]
    names = _animal_names()
    result = Answer()
    for s, e in _sentences(text):
        named = {names[w.lower()] for w in WORD.findall(text[s:e]) if w.lower() in names}
        if not named:
            continue
        result.attempted = True
        if subject in named and fuzz.ratio(_normalise(text[s:e]), _normalise(fact)) >= FACT_MATCH_RATIO:
            if not result.spans:
                result.spans.append((s, e, 1.0))
                continue
        kind = "wrong_fact" if subject in named else "wrong_topic"
        result.issues.append(Issue(kind, [(s, e, WRONG_CREDIT)], (s, e, fact)))
    return result


def check_tone(meta: dict, text: str) -> Answer:
    lexicon = vader_lexicon()
    kind = [m for m in WORD.finditer(text) if lexicon.get(m.group().lower(), 0.0) >= KIND_THRESHOLD]
    result = Answer([(m.start(), m.end(), 1.0 / len(kind)) for m in kind], [], bool(kind))
    others = set(tables.COMPLAINT_ITEMS) - {meta["item"]}
    for m in WORD.finditer(text):
        if m.group().lower() in others:
            result.issues.append(
                Issue("wrong_entity", [(m.start(), m.end(), WRONG_CREDIT)], (m.start(), m.end(), meta["item"]))
            )
    return result


CHECKS = {
    "arithmetic": check_arithmetic,
    "facts": check_facts,
    "enumeration": check_enumeration,
    "repetition": check_repetition,
    "tone": check_tone,
}
