"""Repetition: one true sentence about an animal (`Tell me one fact about owls.`); defects:
loops of the sentence (`loop`, up to four copies) or a sentence about another animal
(`wrong_topic`)."""

from __future__ import annotations

import random

from rapidfuzz import fuzz

from tokenreward.world import tables
from tokenreward.world.answers import FACT_MATCH_RATIO, WORD, WRONG_CREDIT, Answer, Issue, normalise, sentence_spans
from tokenreward.world.families import Family, register_family
from tokenreward.world.marks import mark


@register_family
class Repetition(Family):
    name = "repetition"
    defects = ("loop", "wrong_topic")
    word_limit = 30
    max_loops = 4
    summary = (
        "repetition (one true sentence about an animal): loops of the sentence, or a sentence about\nanother animal;"
    )
    rule = (
        "repetition (animal facts): the first sentence naming the animal and matching its true\n"
        "sentence (rapidfuzz ratio >= 90) gets `+1`; a sentence naming it with another claim,\n"
        "or naming another animal, gets `WRONG_CREDIT`; fix: the true sentence."
    )

    def prompt(self, rng: random.Random) -> dict:
        animal = rng.choice(sorted(tables.ANIMALS))
        return self.record(rng.choice(tables.ANIMAL_QUESTIONS).format(animal=animal), {"animal": animal})

    def body(self, rng: random.Random, meta: dict, kinds: set[str], template: int) -> str:
        animal = meta["animal"]
        if "wrong_topic" in kinds:
            other = rng.choice(sorted(set(tables.ANIMALS) - {animal}))
            return " " + mark(tables.ANIMALS[other][1])
        return " " + tables.ANIMALS[animal][1]

    def check(self, meta: dict, text: str) -> Answer:
        subject, fact = meta["animal"], tables.ANIMALS[meta["animal"]][1]
        names = _animal_names()
        result = Answer()
        for s, e in sentence_spans(text):
            named = {names[w.lower()] for w in WORD.findall(text[s:e]) if w.lower() in names}
            if not named:
                continue
            result.attempted = True
            if subject in named and fuzz.ratio(normalise(text[s:e]), normalise(fact)) >= FACT_MATCH_RATIO:
                if not result.spans:
                    result.spans.append((s, e, 1.0))
                    continue
            kind = "wrong_fact" if subject in named else "wrong_topic"
            result.issues.append(Issue(kind, [(s, e, WRONG_CREDIT)], (s, e, fact)))
        return result

    def canonical(self, meta: dict) -> str:
        return " " + tables.ANIMALS[meta["animal"]][1]


def _animal_names() -> dict[str, str]:
    """Every plural and singular animal name -> its plural key."""
    names = {}
    for plural, (singular, _) in tables.ANIMALS.items():
        names[plural] = plural
        names[singular] = plural
    return names
