"""Marks around the defects the generator plants while it builds a response, and misspelling.

A family's response body wraps every planted defect in `OPEN ... CLOSE`; `unmark` removes the
marks and returns the clean text with the character spans of the planted defects, so tests can
check the oracle against the generator.
"""

from __future__ import annotations

import random
import re

from tokenreward.errors import UserInputError

OPEN, CLOSE = "\x02", "\x03"  # marks around planted defect spans while a response is built


def mark(text: str) -> str:
    return f"{OPEN}{text}{CLOSE}"


def unmark(text: str) -> tuple[str, list[tuple[int, int]]]:
    """Remove the defect marks; return the clean text and the marked spans."""
    clean, spans, start = [], [], None
    for ch in text:
        if ch == OPEN:
            start = len(clean)
        elif ch == CLOSE:
            spans.append((start, len(clean)))
        else:
            clean.append(ch)
    return "".join(clean), sorted(spans)


def misspell(rng: random.Random, word: str, avoid: set[str]) -> str:
    """One random edit (double, drop, swap or change a letter) that makes no known word."""
    vowels = "aeiou"
    for _ in range(100):
        i = rng.randrange(1, len(word)) if len(word) > 1 else 0
        op = rng.choice(("double", "drop", "swap", "vowel"))
        if op == "double":
            out = word[:i] + word[i] + word[i:]
        elif op == "drop" and len(word) > 3:
            out = word[:i] + word[i + 1 :]
        elif op == "swap" and i + 1 < len(word):
            out = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
        elif op == "vowel" and word[i] in vowels:
            out = word[:i] + rng.choice(vowels.replace(word[i], "")) + word[i + 1 :]
        else:
            continue
        if out.lower() not in avoid and out != word:
            return out
    raise UserInputError(f"could not misspell {word!r}")


def written_sentences(text: str) -> list[str]:
    """The sentences of a generated reply, each with its leading space and end mark."""
    return re.findall(r" [^.!?]*[.!?]", text)
