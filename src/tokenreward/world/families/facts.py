"""Facts: capitals, languages and dishes, of real and made-up entities (`What is the capital
of Peru?`); defects: a wrong entity that is right for another prompt (`wrong_entity`), a
misspelled answer (`misspelled`) or a misspelled subject (`misspelled_subject`)."""

from __future__ import annotations

import random

from rapidfuzz.distance import OSA

from tokenreward.errors import UserInputError
from tokenreward.world import tables
from tokenreward.world.answers import WORD, WRONG_CREDIT, Answer, Issue, known_words
from tokenreward.world.families import Family, register_family
from tokenreward.world.marks import OPEN, mark, misspell


@register_family
class Facts(Family):
    name = "facts"
    defects = ("wrong_entity", "misspelled", "misspelled_subject")
    verifiable = True
    word_limit = 20
    summary = (
        "facts (capitals, languages, dishes; real and made-up entities): a wrong entity (right for\n"
        "another prompt) or a misspelling;"
    )
    rule = (
        "facts: a word equal to the right entity gets `+1` (first time); another entity of the\n"
        "same relation, or a misspelling (optimal-string-alignment distance <= max(1, len / 4) from a table\n"
        "entity, and not a known word) gets `WRONG_CREDIT`; fix: the right (or right-spelled) word."
    )

    def prompt(self, rng: random.Random) -> dict:
        relation = rng.choice(sorted(tables.FACT_RELATIONS))
        table, questions, _ = tables.FACT_RELATIONS[relation]
        subject = rng.choice(sorted(table))
        question = rng.choice(questions).format(subject=subject)
        return self.record(question, {"relation": relation, "subject": subject, "answer": table[subject]})

    def body(self, rng: random.Random, meta: dict, kinds: set[str], template: int) -> str:
        table, _, answers = tables.FACT_RELATIONS[meta["relation"]]
        subject, answer = meta["subject"], meta["answer"]
        avoid = set(known_words())
        if "wrong_entity" in kinds:
            answer = mark(rng.choice(sorted({v for v in table.values() if v != answer})))
        elif "misspelled" in kinds:
            answer = mark(misspell(rng, answer, avoid))
        shown_subject = subject
        if "misspelled_subject" in kinds:
            template = template % 2  # the first two answer templates name the subject
            shown_subject = mark(_unambiguous_misspelling(rng, meta["relation"], subject, avoid))
        capitalised = (
            shown_subject[0] + shown_subject[1:2].upper() + shown_subject[2:]
            if shown_subject[0] == OPEN
            else shown_subject.capitalize()
        )
        return answers[template % len(answers)].format(subject=shown_subject, Subject=capitalised, answer=answer)

    def check(self, meta: dict, text: str) -> Answer:
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
                fix = (m.start(), m.end(), _match_case(answer, word))
                result.issues.append(Issue("wrong_entity", [(m.start(), m.end(), WRONG_CREDIT)], fix))
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

    def canonical(self, meta: dict) -> str:
        template = tables.FACT_RELATIONS[meta["relation"]][2][0]
        return template.format(subject=meta["subject"], Subject=meta["subject"].capitalize(), answer=meta["answer"])


def _unambiguous_misspelling(rng: random.Random, relation: str, subject: str, avoid: set[str]) -> str:
    """A misspelling of `subject` that is not as close to another entity of `relation`."""
    table = tables.FACT_RELATIONS[relation][0]
    entities = {w.lower() for w in list(table) + list(table.values())}
    candidates = (misspell(rng, subject, avoid) for _ in range(100))
    wrong = next(
        (
            w
            for w in candidates
            if not any(OSA.distance(w.lower(), e) <= max(1, len(e) // 4) for e in entities - {subject.lower()})
        ),
        None,
    )
    if wrong is None:
        raise UserInputError(f"no misspelling of {subject!r} is unambiguous")
    return wrong


def _close(word: str, entity: str) -> bool:
    return OSA.distance(word.lower(), entity.lower()) <= max(1, len(entity) // 4)


def _match_case(word: str, like: str) -> str:
    return word[:1].upper() + word[1:] if like[:1].isupper() else word[:1].lower() + word[1:]
