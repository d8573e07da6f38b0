"""Arithmetic: one operation on two numbers (`What is 17 + 25?`); defects: wrong digits of the
answer (`wrong_digit`) or a wrong number of another length (`wrong_number`)."""

from __future__ import annotations

import random

from tokenreward.world import tables
from tokenreward.world.answers import EXPRESSION, NUMBER, RESTATEMENT_CREDIT, WRONG_CREDIT, Answer, Issue
from tokenreward.world.families import Family, register_family
from tokenreward.world.marks import mark


@register_family
class Arithmetic(Family):
    name = "arithmetic"
    defects = ("wrong_digit", "wrong_number")
    verifiable = True
    word_limit = 20
    summary = "arithmetic (`What is 17 + 25?`): wrong digits;"
    rule = (
        "arithmetic: an expression `x op y` restates the question; its operands or operator that\n"
        "differ from the question's share `RESTATEMENT_CREDIT` (fix: the question's expression).\n"
        "Other numbers are answers: the first correct one gets `+1`; a wrong one `WRONG_CREDIT`,\n"
        "on its wrong digits when it has the right length, else on the whole number; fix: the\n"
        "right number."
    )

    def prompt(self, rng: random.Random) -> dict:
        """`a op b` with op in + - *: sums of 1..99, differences with a >= b, products of 2..12."""
        op = rng.choice("+-*")
        if op == "+":
            a, b = rng.randint(1, 99), rng.randint(1, 99)
        elif op == "-":
            a = rng.randint(10, 99)
            b = rng.randint(1, a)
        else:
            a, b = rng.randint(2, 12), rng.randint(2, 12)
        answer = a + b if op == "+" else a - b if op == "-" else a * b
        question = rng.choice(tables.ARITHMETIC_QUESTIONS).format(a=a, op=op, b=b)
        return self.record(question, {"a": a, "op": op, "b": b, "answer": answer})

    def body(self, rng: random.Random, meta: dict, kinds: set[str], template: int) -> str:
        c = str(meta["answer"])
        if kinds & {"wrong_digit", "wrong_number"}:
            c = wrong_number(rng, meta["answer"], same_length="wrong_digit" in kinds)
        return tables.ARITHMETIC_ANSWERS[template % 3].format(a=meta["a"], op=meta["op"], b=meta["b"], c=c)

    def check(self, meta: dict, text: str) -> Answer:
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

    def canonical(self, meta: dict) -> str:
        return tables.ARITHMETIC_ANSWERS[0].format(a=meta["a"], op=meta["op"], b=meta["b"], c=meta["answer"])


def wrong_number(rng: random.Random, answer: int, same_length: bool) -> str:
    """A wrong answer, marked: one changed digit (`same_length`), else a number 1..15 away
    (marked digit by digit when it happens to have the answer's length)."""
    digits = str(answer)
    if same_length:
        i = rng.randrange(len(digits))
        choices = [d for d in "0123456789" if d != digits[i] and not (i == 0 and d == "0" and len(digits) > 1)]
        wrong = digits[:i] + rng.choice(choices) + digits[i + 1 :]
    else:
        wrong = str(max(0, answer + rng.choice([-1, 1]) * rng.randint(1, 15)))
        if wrong == digits:
            wrong = str(answer + 1)
    return (
        "".join(mark(w) if w != d else w for w, d in zip(wrong, digits)) if len(wrong) == len(digits) else mark(wrong)
    )
