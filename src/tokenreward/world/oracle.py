"""The oracle: ground-truth token credit and the holistic score of ANY response text.

`grade(prompt_record, response)` parses the response the way the prompt's family expects and
returns character spans with a credit, the holistic score and the list of issues (defects);
`revise(prompt_record, response)` applies the issues' minimal fixes. Checks, in order:

1. Repetition (every family): a sentence whose normalised text equals an earlier sentence's,
   or a trailing unfinished sentence that is the start of an earlier one, is a loop:
   credit `REPEAT_CREDIT` on the loop; fix: delete it. Loops are ignored by later checks.
2. Hostility (every family): a word whose VADER valence is `<= HOSTILE_THRESHOLD` gets
   credit `valence / HOSTILE_SCALE`; fix: delete the word and one adjacent space.
3. The family's answer:
   - arithmetic: an expression `x op y` restates the question; its operands or operator that
     differ from the question's share `RESTATEMENT_CREDIT` (fix: the question's expression).
     Other numbers are answers: the first correct one gets `+1`; a wrong one `WRONG_CREDIT`,
     on its wrong digits when it has the right length, else on the whole number; fix: the
     right number.
   - facts: a word equal to the right entity gets `+1` (first time); another entity of the
     same relation, or a misspelling (optimal-string-alignment distance <= max(1, len / 4) from a table
     entity, and not a known word) gets `WRONG_CREDIT`; fix: the right (or right-spelled) word.
   - enumeration: the longest run of comma-separated numbers is Levenshtein-aligned with the
     expected list; each matched item `+1/k`, each wrong, extra or missing item
     `LIST_ERROR_CREDIT` (on the item; a missing one on the gap: the separator or the
     character after the list); fixes: substitute, delete with its separator, insert.
   - repetition (animal facts): the first sentence naming the animal and matching its true
     sentence (rapidfuzz ratio >= 90) gets `+1`; a sentence naming it with another claim,
     or naming another animal, gets `WRONG_CREDIT`; fix: the true sentence.
   - tone: words with VADER valence `>= KIND_THRESHOLD` share `+1` equally; naming another
     customer item than the complaint's gets `WRONG_CREDIT`; fix: the complaint's item.
4. Sequence terms: no answer at all (no number / entity / list / animal sentence / kind
   word): `-NO_ANSWER_PENALTY`, fix: append the canonical answer; verbosity:
   `-min(VERBOSITY_CAP, VERBOSITY_RATE * (words - WORD_LIMITS[family]))`, fix: drop
   zero-credit sentences from the end until within the limit.

Score: `sum(credit of every span) - no_answer_penalty - verbosity_penalty`.
A token's true credit is the sum of the credits of the spans it overlaps.
"""

from __future__ import annotations

from tokenreward.errors import UserInputError
from tokenreward.world import tables
from tokenreward.world.answers import (
    CHECKS,
    HOSTILE_SCALE,
    HOSTILE_THRESHOLD,
    LIST_ERROR_CREDIT,
    NO_ANSWER_PENALTY,
    REPEAT_CREDIT,
    RESTATEMENT_CREDIT,
    VERBOSITY_CAP,
    VERBOSITY_RATE,
    WORD,
    WORD_LIMITS,
    WRONG_CREDIT,
    Grade,
    Issue,
    _normalise,
    _sentences,
    known_words,
    vader_lexicon,
)

__all__ = [
    "LIST_ERROR_CREDIT",
    "NO_ANSWER_PENALTY",
    "REPEAT_CREDIT",
    "RESTATEMENT_CREDIT",
    "VERBOSITY_RATE",
    "WORD_LIMITS",
    "WRONG_CREDIT",
    "Grade",
    "Issue",
    "canonical_answer",
    "defect_tokens",
    "grade",
    "known_words",
    "revise",
    "token_credit",
    "vader_lexicon",
]


def _delete_range(text: str, start: int, end: int) -> tuple[int, int]:
    """Widen `[start, end)` by one adjacent space (the preceding one if any) for a clean deletion."""
    if start > 0 and text[start - 1] == " ":
        return start - 1, end
    if end < len(text) and text[end] == " ":
        return start, end + 1
    return start, end


def _mask(text: str, ranges: list[tuple[int, int]]) -> str:
    chars = list(text)
    for s, e in ranges:
        chars[s:e] = " " * (e - s)
    return "".join(chars)


def find_loops(text: str) -> list[Issue]:
    seen: list[str] = []
    issues = []
    sentences = _sentences(text)
    for k, (s, e) in enumerate(sentences):
        norm = _normalise(text[s:e])
        finished = text[s:e][-1] in ".!?"
        unfinished_repeat = not finished and k == len(sentences) - 1 and any(p.startswith(norm) for p in seen)
        if norm and (norm in seen or unfinished_repeat):
            fs = s - 1 if s > 0 and text[s - 1] == " " else s
            issues.append(Issue("repeat", [(s, e, REPEAT_CREDIT)], (fs, e, "")))
        else:
            seen.append(norm)
    return issues


def find_hostile(text: str) -> list[Issue]:
    lexicon = vader_lexicon()
    issues = []
    for m in WORD.finditer(text):
        valence = lexicon.get(m.group().lower())
        if valence is not None and valence <= HOSTILE_THRESHOLD:
            s, e = _delete_range(text, m.start(), m.end())
            issues.append(Issue("hostile", [(m.start(), m.end(), valence / HOSTILE_SCALE)], (s, e, "")))
    return issues


def canonical_answer(prompt_record: dict) -> str:
    """The family's reference reply (leading space, as responses follow the prompt directly)."""
    family, meta = prompt_record["family"], prompt_record["meta"]
    if family == "arithmetic":
        return tables.ARITHMETIC_ANSWERS[0].format(a=meta["a"], op=meta["op"], b=meta["b"], c=meta["answer"])
    if family == "facts":
        template = tables.FACT_RELATIONS[meta["relation"]][2][0]
        return template.format(subject=meta["subject"], Subject=meta["subject"].capitalize(), answer=meta["answer"])
    if family == "enumeration":
        template = tables.ENUMERATION_ANSWERS[meta["kind"]][0]
        return template.format(items=", ".join(map(str, meta["items"])), **meta["params"])
    if family == "repetition":
        return " " + tables.ANIMALS[meta["animal"]][1]
    if family == "tone":
        return tables.TONE_REPLIES[0].format(item=meta["item"])
    raise UserInputError(f"unknown family {family!r}")


def apply_fixes(text: str, fixes: list[tuple[int, int, str]]) -> str:
    """Replace each `text[start:end]` by its fix, right to left (ranges must not overlap)."""
    for start, end, replacement in sorted(fixes, key=lambda f: (f[0], f[1]), reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


def _verbosity(family: str, text: str, issues: list[Issue], answer_spans: list) -> Issue | None:
    """The verbosity term; its fix drops trailing zero-credit sentences until the text, with
    the other issues fixed, is within the word limit."""
    limit = WORD_LIMITS[family]
    excess = len(text.split()) - limit
    if excess <= 0:
        return None
    penalty = min(VERBOSITY_CAP, VERBOSITY_RATE * excess)
    credited = [(s, e) for s, e, _ in answer_spans] + [(s, e) for i in issues for s, e, _ in i.spans]
    removable = [(s, e) for s, e in _sentences(text) if not any(cs < e and s < ce for cs, ce in credited)]
    remaining = len(apply_fixes(text, [i.fix for i in issues]).split())
    cut_start = len(text)
    for s, e in reversed(removable):
        if remaining <= limit or text[e:cut_start].strip():
            break
        remaining -= len(text[s:e].split())
        cut_start = s - 1 if s > 0 and text[s - 1] == " " else s
    return Issue("verbose", [], (cut_start, len(text), ""), penalty)


def grade(prompt_record: dict, response: str) -> Grade:
    """Credit spans, holistic score and issues of `response` to `prompt_record` (module docstring)."""
    family = prompt_record["family"]
    if family not in CHECKS:
        raise UserInputError(f"unknown family {family!r}; expected one of {', '.join(CHECKS)}")
    loops = find_loops(response)
    masked = _mask(response, [i.fix[:2] for i in loops])
    issues = loops + find_hostile(masked)
    answer = CHECKS[family](prompt_record["meta"], masked)
    issues += answer.issues
    if not answer.attempted:
        issues.append(
            Issue("no_answer", [], (len(response), len(response), canonical_answer(prompt_record)), NO_ANSWER_PENALTY)
        )
    verbose = _verbosity(family, response, issues, answer.spans)
    if verbose is not None:
        issues.append(verbose)
    spans = sorted([list(s) for s in answer.spans] + [list(s) for i in issues for s in i.spans])
    score = sum(c for _, _, c in spans) - sum(i.penalty for i in issues)
    return Grade(float(score), spans, len(issues), issues)


def revise(prompt_record: dict, response: str) -> str:
    """The oracle's minimal revision: every issue's fix applied."""
    return apply_fixes(response, [i.fix for i in grade(prompt_record, response).issues])


def token_credit(credit_spans: list, offsets: list[tuple[int, int]]) -> list[float]:
    """True credit of each token: the sum of the credits of the spans it overlaps."""
    return [sum(c for s, e, c in credit_spans if s < te and ts < e) for ts, te in offsets]


def defect_tokens(credit_spans: list, offsets: list[tuple[int, int]]) -> list[bool]:
    """Whether each token overlaps a span with negative credit."""
    return [any(c < 0 and s < te and ts < e for s, e, c in credit_spans) for ts, te in offsets]
