"""Tone: a reply to a customer's complaint; defects: a hostile adjective in the reply
(`hostile`), a hostile sentence after its first sentence (`hostile_sentence`), or the wrong
item (`wrong_item`)."""

from __future__ import annotations

import random

from tokenreward.world import tables
from tokenreward.world.answers import KIND_THRESHOLD, WORD, WRONG_CREDIT, Answer, Issue, vader_lexicon
from tokenreward.world.families import Family, register_family
from tokenreward.world.marks import mark, written_sentences


@register_family
class Tone(Family):
    name = "tone"
    defects = ("hostile", "hostile_sentence", "wrong_item")
    word_limit = 40
    non_answers = tuple(tables.TONE_NON_ANSWERS)
    insults = False
    summary = "tone (reply to a customer): hostile words (valences from the VADER lexicon), the wrong item."
    rule = (
        "tone: words with VADER valence `>= KIND_THRESHOLD` share `+1` equally; naming another\n"
        "customer item than the complaint's gets `WRONG_CREDIT`; fix: the complaint's item."
    )

    def prompt(self, rng: random.Random) -> dict:
        item, problem = rng.choice(tables.COMPLAINT_ITEMS), rng.choice(tables.COMPLAINT_PROBLEMS)
        question = rng.choice(tables.TONE_QUESTIONS).format(item=item, problem=problem)
        return self.record(question, {"item": item, "problem": problem})

    def body(self, rng: random.Random, meta: dict, kinds: set[str], template: int) -> str:
        reply = tables.TONE_REPLIES[template % len(tables.TONE_REPLIES)]
        if "hostile" in kinds:
            reply = reply.replace("your {item}", "your " + mark(rng.choice(tables.HOSTILE_WORDS)) + " {item}", 1)
        item = meta["item"]
        if "wrong_item" in kinds:
            item = mark(rng.choice(sorted(set(tables.COMPLAINT_ITEMS) - {item})))
        return reply.format(item=item)

    def decorate(self, rng: random.Random, meta: dict, kinds: set[str], text: str) -> str:
        """`hostile_sentence`: a hostile sentence after the first sentence."""
        if "hostile_sentence" not in kinds:
            return text
        first = written_sentences(text)[0]
        insert = rng.choice(tables.HOSTILE_TONE_SENTENCES).format(
            word=mark(rng.choice(tables.HOSTILE_WORDS)), item=meta["item"]
        )
        return text.replace(first, first + insert, 1)

    def check(self, meta: dict, text: str) -> Answer:
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

    def canonical(self, meta: dict) -> str:
        return tables.TONE_REPLIES[0].format(item=meta["item"])
