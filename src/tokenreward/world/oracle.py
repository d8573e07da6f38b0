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
   (each family's `rule`; its check and rule live in its module in `tokenreward.world.families`)
4. Sequence terms: no answer at all (no number / entity / list / animal sentence / kind
   word): `-NO_ANSWER_PENALTY`, fix: append the canonical answer; verbosity:
   `-min(VERBOSITY_CAP, VERBOSITY_RATE * (words - WORD_LIMITS[family]))`, fix: drop
   zero-credit sentences from the end until within the limit.

Score: `sum(credit of every span) - no_answer_penalty - verbosity_penalty`.
A token's true credit is the sum of the credits of the spans it overlaps.
"""

from __future__ import annotations

from tokenreward.errors import UserInputError
from tokenreward.world.answers import (
    HOSTILE_SCALE,
    HOSTILE_THRESHOLD,
    LIST_ERROR_CREDIT,
    NO_ANSWER_PENALTY,
    REPEAT_CREDIT,
    RESTATEMENT_CREDIT,
    VERBOSITY_CAP,
    VERBOSITY_RATE,
    WORD,
    WRONG_CREDIT,
    Grade,
    Issue,
    StepTruth,
    known_words,
    normalise,
    sentence_spans,
    vader_lexicon,
)
from tokenreward.world.families import FAMILIES, family

#: item 3 of the docstring, which `documented_rules` replaces by the families' rules
_FAMILY_RULES = "   (each family's `rule`; its check and rule live in its module in `tokenreward.world.families`)"

__all__ = [
    "LIST_ERROR_CREDIT",
    "ORACLE_REWARDS",
    "NO_ANSWER_PENALTY",
    "REPEAT_CREDIT",
    "RESTATEMENT_CREDIT",
    "VERBOSITY_RATE",
    "WRONG_CREDIT",
    "Grade",
    "Issue",
    "StepTruth",
    "canonical_answer",
    "correct",
    "defect_tokens",
    "documented_rules",
    "grade",
    "known_words",
    "oracle_reward",
    "revise",
    "step_truth",
    "token_credit",
    "vader_lexicon",
    "verifiable_families",
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
    sentences = sentence_spans(text)
    for k, (s, e) in enumerate(sentences):
        norm = normalise(text[s:e])
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
    return family(prompt_record["family"]).canonical(prompt_record["meta"])


def documented_rules(families: tuple[str, ...] | list[str]) -> str:
    """This module's rules (its docstring after the title) with item 3 spelled out: the `rule`
    of each of `families`, in order (the world's README prints it)."""
    head, tail = __doc__.split("\n", 2)[2].strip().split(_FAMILY_RULES + "\n")
    rules = "".join("   - " + family(name).rule.replace("\n", "\n     ") + "\n" for name in families)
    return head + rules + tail


def apply_fixes(text: str, fixes: list[tuple[int, int, str]]) -> str:
    """Replace each `text[start:end]` by its fix, right to left (ranges must not overlap)."""
    for start, end, replacement in sorted(fixes, key=lambda f: (f[0], f[1]), reverse=True):
        text = text[:start] + replacement + text[end:]
    return text


def _verbosity(limit: int, text: str, issues: list[Issue], answer_spans: list) -> Issue | None:
    """The verbosity term past `limit` words; its fix drops trailing zero-credit sentences until
    the text, with the other issues fixed, is within the limit."""
    excess = len(text.split()) - limit
    if excess <= 0:
        return None
    penalty = min(VERBOSITY_CAP, VERBOSITY_RATE * excess)
    credited = [(s, e) for s, e, _ in answer_spans] + [(s, e) for i in issues for s, e, _ in i.spans]
    removable = [(s, e) for s, e in sentence_spans(text) if not any(cs < e and s < ce for cs, ce in credited)]
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
    task = family(prompt_record["family"])
    loops, masked = _without_loops(response)
    issues = loops + find_hostile(masked)
    answer = task.check(prompt_record["meta"], masked)
    issues += answer.issues
    if not answer.attempted:
        issues.append(
            Issue(
                "no_answer",
                [],
                (len(response), len(response), task.canonical(prompt_record["meta"])),
                NO_ANSWER_PENALTY,
            )
        )
    verbose = _verbosity(task.word_limit, response, issues, answer.spans)
    if verbose is not None:
        issues.append(verbose)
    spans = sorted([list(s) for s in answer.spans] + [list(s) for i in issues for s in i.spans])
    score = sum(c for _, _, c in spans) - sum(i.penalty for i in issues)
    return Grade(float(score), spans, len(issues), issues)


def _without_loops(response: str) -> tuple[list[Issue], str]:
    """The loops of `response`, and the response with them blanked out (what later checks read)."""
    loops = find_loops(response)
    return loops, _mask(response, [i.fix[:2] for i in loops])


def verifiable_families() -> list[str]:
    """The registered families whose replies are right or wrong (`correct`)."""
    return [name for name in FAMILIES.names() if family(name).verifiable]


def correct(prompt_record: dict, response: str) -> float:
    """The verifiable reward: 1.0 when the answer of `response` is right, else 0.0, by the
    family's `correct` on the response with its loops blanked out (as `grade` reads it); loops,
    hostility and verbosity do not count. A family without a right answer raises ValueError."""
    task = family(prompt_record["family"])
    if not task.verifiable:
        raise UserInputError(
            f"the {task.name} family has no verifiable answer; the verifiable reward covers the families "
            f"{', '.join(verifiable_families())}"
        )
    return float(task.correct(prompt_record["meta"], _without_loops(response)[1]))


def holistic_score(prompt_record: dict, response: str) -> float:
    """The holistic reward: `grade(prompt_record, response).score`."""
    return grade(prompt_record, response).score


#: the oracle's rewards of a whole response, by name (`oracle_reward`)
ORACLE_REWARDS = {"score": holistic_score, "verifiable": correct}


def oracle_reward(prompt_record: dict, response: str, mode: str = "score") -> float:
    """The oracle's reward of `response` in `mode`: "score" (the holistic score, `grade`) or
    "verifiable" (1.0 right / 0.0 wrong, `correct`)."""
    if mode not in ORACLE_REWARDS:
        raise UserInputError(f"unknown oracle reward {mode!r}; choose one of {', '.join(ORACLE_REWARDS)}")
    return ORACLE_REWARDS[mode](prompt_record, response)


def step_truth(prompt_record: dict, response: str) -> list[StepTruth]:
    """Each step of `response` in order (the final answer line last), with its characters and
    whether it is correct (on the true chain) and valid (follows from the step before it), for
    families that write steps (`multistep`); the response is read as it is (loops included).
    Other families raise ValueError."""
    task = family(prompt_record["family"])
    if not task.has_steps:
        steps = [name for name in FAMILIES.names() if family(name).has_steps]
        raise UserInputError(
            f"the {task.name} family has no steps; step ground truth covers the families {', '.join(steps)}"
        )
    return task.steps(prompt_record["meta"], response)


def revise(prompt_record: dict, response: str) -> str:
    """The oracle's minimal revision: every issue's fix applied."""
    return apply_fixes(response, [i.fix for i in grade(prompt_record, response).issues])


def token_credit(credit_spans: list, offsets: list[tuple[int, int]]) -> list[float]:
    """True credit of each token: the sum of the credits of the spans it overlaps."""
    return [sum(c for s, e, c in credit_spans if s < te and ts < e) for ts, te in offsets]


def defect_tokens(credit_spans: list, offsets: list[tuple[int, int]]) -> list[bool]:
    """Whether each token overlaps a span with negative credit."""
    return [any(c < 0 and s < te and ts < e for s, e, c in credit_spans) for ts, te in offsets]
