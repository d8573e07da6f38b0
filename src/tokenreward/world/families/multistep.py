"""Multistep: a chained computation answered one step per line, so that the correctness of
every step is known (ground truth for process reward models, `oracle.step_truth`).

    User: Start with 7. Add 5, multiply by 3, then subtract 4. Show one step per line.
    Assistant: Step 1: 7 + 5 = 12.
    Step 2: 12 * 3 = 36.
    Step 3: 36 - 4 = 32.
    The answer is 32.

Defects: a step with a wrong result (`wrong_result`) or a misread operand (`wrong_operand`);
later steps carry the error on (they compute right from the wrong value), and so does the
answer. Not among the default families: build a world with it by naming it
(`tokenreward world build --families ... multistep`).
"""

from __future__ import annotations

import operator
import random
import re
from dataclasses import dataclass

from tokenreward.world.answers import WRONG_CREDIT, Answer, Issue, StepTruth
from tokenreward.world.families import Family, register_family
from tokenreward.world.marks import mark

OPERATIONS = {"+": operator.add, "-": operator.sub, "*": operator.mul}
PHRASES = {"+": "add {b}", "-": "subtract {b}", "*": "multiply by {b}"}
QUESTIONS = [
    "Start with {start}. {operations}. Show one step per line.",
    "Begin at {start}. {operations}. Work it out one step per line.",
]
ANSWER_LINES = ["The answer is {answer}.", "Answer: {answer}."]
STEP = re.compile(r"Step \d+: (-?\d+) ([-+*]) (-?\d+) = (-?\d+)\.?")
FINAL = re.compile(r"(?:The answer is|Answer:) (-?\d+)\.?")


@dataclass
class _Step:
    """A written step and how it compares with the true chain (`_read`)."""

    match: re.Match
    truth: tuple[int, str, int, int] | None  # the true (previous value, op, operand, value); None past the chain
    written_before: int  # the result of the step before as written (the start for the first)
    correct: bool
    valid: bool


@register_family
class Multistep(Family):
    name = "multistep"
    defects = ("wrong_result", "wrong_operand")
    common_defects = ("verbose", "no_answer", "hostile")
    word_limit = 40
    verifiable = True
    has_steps = True
    summary = (
        "multistep (a chained computation, one step per line; not looped): a wrong step result or a\n"
        "misread operand, carried on by the later steps and the answer;"
    )
    rule = (
        "multistep: each line `Step k: a op b = c` is compared with the true chain (the k-th\n"
        "operation of the question applied to the true value before it). A correct step gets\n"
        "`+1/(n+1)` on its result; a step that does not follow from the line before it (wrong `a`,\n"
        "`op` or `b`, or `c != a op b`) gets `WRONG_CREDIT` shared by its wrong parts; a step that\n"
        "follows but carries an earlier error gets 0. The answer line gets `+1/(n+1)` when right,\n"
        "0 when it carries the last step's error, else `WRONG_CREDIT`; a step past the chain\n"
        "`WRONG_CREDIT`. Fixes: the true step (answer); missing steps and answer are inserted."
    )

    def prompt(self, rng: random.Random) -> dict:
        """A start of 2..20 and 2..4 operations that keep every value positive: + 1..30,
        - below the value, * 2..5 while the value is at most 30."""
        start = value = rng.randint(2, 20)
        operations, values = [], []
        for _ in range(rng.randint(2, 4)):
            op = rng.choice([o for o in "+-*" if (o != "-" or value > 1) and (o != "*" or value <= 30)])
            b = rng.randint(1, 30) if op == "+" else rng.randint(1, value - 1) if op == "-" else rng.randint(2, 5)
            value = OPERATIONS[op](value, b)
            operations.append([op, b])
            values.append(value)
        phrases = [PHRASES[op].format(b=b) for op, b in operations]
        said = ", ".join(phrases[:-1]) + ", then " + phrases[-1]
        question = rng.choice(QUESTIONS).format(start=start, operations=said[0].upper() + said[1:])
        return self.record(question, {"start": start, "operations": operations, "values": values, "answer": value})

    def body(self, rng: random.Random, meta: dict, kinds: set[str], template: int) -> str:
        """The steps from the start; a planted error is marked where it is made and carried on."""
        count = len(meta["operations"])
        at = {kind: rng.randrange(count) for kind in self.defects if kind in kinds}
        value, lines = meta["start"], []
        for k, (op, b) in enumerate(meta["operations"]):
            shown_b = str(b)
            if at.get("wrong_operand") == k:
                b = _misread(rng, op, b)
                shown_b = mark(str(b))
            result = OPERATIONS[op](value, b)
            shown_result = str(result)
            if at.get("wrong_result") == k:
                result = _slip(rng, result)
                shown_result = mark(str(result))
            lines.append(f"Step {k + 1}: {value} {op} {shown_b} = {shown_result}.")
            value = result
        return " " + "\n".join(lines) + "\n" + ANSWER_LINES[template % 2].format(answer=value)

    def check(self, meta: dict, text: str) -> Answer:
        steps, final = _read(meta, text)
        share = 1.0 / (len(meta["operations"]) + 1)
        result = Answer(attempted=bool(steps) or final is not None)
        for step in steps:
            _credit_step(result, step, share, text)
        result.issues += _completion(meta, steps, final)
        if final is not None:
            _credit_final(result, meta, steps, final, share)
        return result

    def canonical(self, meta: dict) -> str:
        values = [meta["start"]] + meta["values"]
        lines = [_line(k, values[k], op, b, values[k + 1]) for k, (op, b) in enumerate(meta["operations"])]
        return " " + "\n".join(lines) + "\n" + ANSWER_LINES[0].format(answer=meta["answer"])

    def correct(self, meta: dict, text: str) -> bool:
        """The final answer (the answer line's number, else the last step's result) is right."""
        steps, final = _read(meta, text)
        if final is not None:
            return int(final.group(1)) == meta["answer"]
        return bool(steps) and int(steps[-1].match.group(4)) == meta["answer"]

    def steps(self, meta: dict, text: str) -> list[StepTruth]:
        steps, final = _read(meta, text)
        truths = [StepTruth(s.match.start(), s.match.end(), s.correct, s.valid, "step") for s in steps]
        if final is not None:
            number = int(final.group(1))
            follows = int(steps[-1].match.group(4)) if steps else meta["start"]
            truths.append(StepTruth(final.start(), final.end(), number == meta["answer"], number == follows, "answer"))
        return truths


def _line(k: int, value: int, op: str, b: int, result: int) -> str:
    return f"Step {k + 1}: {value} {op} {b} = {result}."


def _misread(rng: random.Random, op: str, b: int) -> int:
    """Another operand: 2..5 for a product, else 1..5 away (at least 1)."""
    choices = (
        [v for v in range(2, 6) if v != b] if op == "*" else [v for v in range(b - 5, b + 6) if v >= 1 and v != b]
    )
    return rng.choice(choices)


def _slip(rng: random.Random, result: int) -> int:
    """A wrong result 1..9 away (not below 0 unless the result is)."""
    delta = rng.randint(1, 9)
    return result - delta if result - delta >= 0 and rng.random() < 0.5 else result + delta


def _read(meta: dict, text: str) -> tuple[list[_Step], re.Match | None]:
    """The written steps, each compared with the true chain (`correct`) and with the step before
    it as written (`valid`), and the last answer line (None without one)."""
    truths = [meta["start"]] + meta["values"]
    steps, written = [], meta["start"]
    for k, m in enumerate(STEP.finditer(text)):
        a, op, b, c = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
        if k >= len(meta["operations"]):
            steps.append(_Step(m, None, written, False, False))
            continue
        true_op, true_b = meta["operations"][k]
        truth = (truths[k], true_op, true_b, truths[k + 1])
        valid = (a, op, b) == (written, true_op, true_b) and c == OPERATIONS[op](a, b)
        steps.append(_Step(m, truth, written, (a, op, b, c) == truth, valid))
        written = c
    finals = list(FINAL.finditer(text))
    return steps, finals[-1] if finals else None


def _credit_step(result: Answer, step: _Step, share: float, text: str) -> None:
    """A step's credit and issue: `share` on a correct result; a step past the chain or one that
    does not follow blamed; one that follows but carries an error 0 (a zero-credit span)."""
    m = step.match
    if step.truth is None:
        start = m.start() - 1 if m.start() > 0 and text[m.start() - 1] == "\n" else m.start()
        result.issues.append(Issue("extra_step", [(m.start(), m.end(), WRONG_CREDIT)], (start, m.end(), "")))
        return
    if step.correct:
        result.spans.append((m.start(4), m.end(4), share))
        return
    previous, op, b, value = step.truth
    fix = (m.start(1), m.end(4), f"{previous} {op} {b} = {value}")
    if step.valid:
        result.issues.append(Issue("carried_step", [(m.start(4), m.end(4), 0.0)], fix))
        return
    result.issues.append(Issue("wrong_step", _blame(m, step), fix))


def _blame(m: re.Match, step: _Step) -> list[tuple[int, int, float]]:
    """`WRONG_CREDIT` shared by the parts of a step that do not follow: the operand copied from
    the step before, the operator, the question's operand, the result of the written operation."""
    a, op, b, c = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
    wrong = [g for g, bad in ((2, op != step.truth[1]), (3, b != step.truth[2])) if bad]
    if a != step.written_before:
        wrong.insert(0, 1)
    if c != OPERATIONS[op](a, b):
        wrong.append(4)
    return [(m.start(g), m.end(g), WRONG_CREDIT / len(wrong)) for g in wrong]


def _completion(meta: dict, steps: list[_Step], final: re.Match | None) -> list[Issue]:
    """The missing end of a reply that has begun: the steps of the chain past the last written
    one and, without an answer line, the answer line; inserted after the last step (before the
    answer line when no step is written)."""
    written = sum(step.truth is not None for step in steps)
    values = [meta["start"]] + meta["values"]
    lines = [_line(k, values[k], *meta["operations"][k], values[k + 1]) for k in range(written, len(values) - 1)]
    if final is None:
        lines.append(ANSWER_LINES[0].format(answer=meta["answer"]))
    if not lines or (not steps and final is None):
        return []
    kind = "missing_step" if written < len(meta["operations"]) else "missing_answer"
    if steps:
        at = steps[-1].match.end()
        return [Issue(kind, [], (at, at, "".join("\n" + line for line in lines)))]
    return [Issue(kind, [], (final.start(), final.start(), "".join(line + "\n" for line in lines)))]


def _credit_final(result: Answer, meta: dict, steps: list[_Step], final: re.Match, share: float) -> None:
    """The answer line: `share` when right, 0 when it carries the last step's result, else blamed."""
    number, span = int(final.group(1)), (final.start(1), final.end(1))
    fix = (*span, str(meta["answer"]))
    if number == meta["answer"]:
        result.spans.append((*span, share))
    elif steps and number == int(steps[-1].match.group(4)):
        result.issues.append(Issue("carried_answer", [(*span, 0.0)], fix))
    else:
        result.issues.append(Issue("wrong_answer", [(*span, WRONG_CREDIT)], fix))
