"""Enumeration: the first k primes, counting from a to b, the first k multiples of m; defects:
a missing item (`missing`), an extra one (`extra`) or a wrong one (`wrong_item`)."""

from __future__ import annotations

import random
import re

from rapidfuzz.distance import Levenshtein

from tokenreward.world import tables
from tokenreward.world.answers import LIST_ERROR_CREDIT, LIST_SEPARATOR, NUMBER, Answer, Issue
from tokenreward.world.families import Family, register_family
from tokenreward.world.marks import CLOSE, OPEN, mark


@register_family
class Enumeration(Family):
    name = "enumeration"
    defects = ("missing", "extra", "wrong_item")
    verifiable = True
    word_limit = 30
    summary = "enumeration (first k primes, counting, multiples): missing, extra or wrong items;"
    rule = (
        "enumeration: the longest run of comma-separated numbers is Levenshtein-aligned with the\n"
        "expected list; each matched item `+1/k`, each wrong, extra or missing item\n"
        "`LIST_ERROR_CREDIT` (on the item; a missing one on the gap: the separator or the\n"
        "character after the list); fixes: substitute, delete with its separator, insert."
    )

    def prompt(self, rng: random.Random) -> dict:
        kind = rng.choice(sorted(tables.ENUMERATION_QUESTIONS))
        if kind == "primes":
            params = {"k": rng.randint(3, 9)}
            items = _primes(params["k"])
        elif kind == "count":
            a = rng.randint(1, 40)
            params = {"a": a, "b": a + rng.randint(2, 7)}
            items = list(range(a, params["b"] + 1))
        else:
            params = {"k": rng.randint(3, 7), "m": rng.randint(2, 12)}
            items = [params["m"] * i for i in range(1, params["k"] + 1)]
        question = rng.choice(tables.ENUMERATION_QUESTIONS[kind]).format(**params)
        return self.record(question, {"kind": kind, "params": params, "items": items})

    def body(self, rng: random.Random, meta: dict, kinds: set[str], template: int) -> str:
        items = [str(v) for v in meta["items"]]
        if "missing" in kinds:
            body = _drop_item(rng, items)
        else:
            if "wrong_item" in kinds:
                i = rng.randrange(len(items))
                items[i] = mark(_absent(rng, meta["items"]))
            if "extra" in kinds:
                items.insert(rng.randrange(1, len(items) + 1), mark(_absent(rng, meta["items"])))
            body = ", ".join(items)
        text = tables.ENUMERATION_ANSWERS[meta["kind"]][template % 2].format(items=body, **meta["params"])
        if text.count(OPEN) > text.count(CLOSE):  # a missing last item is blamed on the character after the list
            cut = text.index(OPEN) + 1
            text = text[:cut] + text[cut] + CLOSE + text[cut + 1 :]
        return text

    def check(self, meta: dict, text: str) -> Answer:
        expected = [str(v) for v in meta["items"]]
        runs = [r for r in _number_runs(text) if len(r) >= 2]
        result = Answer()
        if not runs:
            return result
        items = max(reversed(runs), key=len)  # longest; the last among equals
        result.attempted = True
        matched = set(range(len(items)))
        missing: dict[int, list[str]] = {}
        for op in Levenshtein.editops([m.group() for m in items], expected):
            if op.tag == "insert":
                missing.setdefault(op.src_pos, []).append(expected[op.dest_pos])
                continue
            m = items[op.src_pos]
            matched.discard(op.src_pos)
            if op.tag == "replace":
                fix = (m.start(), m.end(), expected[op.dest_pos])
                result.issues.append(Issue("list_wrong", [(m.start(), m.end(), LIST_ERROR_CREDIT)], fix))
            else:
                fix = (
                    (items[op.src_pos - 1].end(), m.end())
                    if op.src_pos > 0
                    else (m.start(), items[1].start() if len(items) > 1 else m.end())
                )
                result.issues.append(Issue("list_extra", [(m.start(), m.end(), LIST_ERROR_CREDIT)], (*fix, "")))
        result.issues += [_missing_issue(text, items, position, absent) for position, absent in missing.items()]
        result.spans = [(items[i].start(), items[i].end(), 1.0 / len(expected)) for i in sorted(matched)]
        return result

    def canonical(self, meta: dict) -> str:
        template = tables.ENUMERATION_ANSWERS[meta["kind"]][0]
        return template.format(items=", ".join(map(str, meta["items"])), **meta["params"])


def _primes(k: int) -> list[int]:
    found, n = [], 2
    while len(found) < k:
        if all(n % p for p in found if p * p <= n):
            found.append(n)
        n += 1
    return found


def _drop_item(rng: random.Random, items: list[str]) -> str:
    """The list with one item (not the first) left out; the mark covers the separator where it
    was, or opens at the end of the list (closed by `body` after the next character)."""
    i = rng.randrange(1, len(items))
    del items[i]
    if i < len(items):
        items[i - 1] += mark(", ")
        items[i - 1 : i + 1] = [items[i - 1] + items[i]]
        return ", ".join(items)
    return ", ".join(items) + OPEN


def _absent(rng: random.Random, items: list[int]) -> str:
    while True:
        value = rng.randint(1, max(items) + 10)
        if value not in items:
            return str(value)


def _number_runs(text: str) -> list[list[re.Match]]:
    runs: list[list[re.Match]] = []
    for m in NUMBER.finditer(text):
        if runs and LIST_SEPARATOR.fullmatch(text[runs[-1][-1].end() : m.start()]):
            runs[-1].append(m)
        else:
            runs.append([m])
    return runs


def _missing_issue(text: str, items: list[re.Match], position: int, absent: list[str]) -> Issue:
    """The issue of the items `absent` before list position `position`: on the first item (at
    the start), on the separator (inside), or on the character after the list (at the end)."""
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
    return Issue("list_missing", [(*span, credit)], fix)
