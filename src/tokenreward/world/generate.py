"""Seeded generator of the world's prompts and responses, with the defects it plants.

Five families of prompts (arithmetic, facts, enumeration, repetition, tone). A response is a
good reply or a reply with planted defects of chosen kinds; `respond` returns the text and the
character spans of the defects it planted, so tests can check the oracle against the
generator. Prompts are plain strings (`PROMPT_TEMPLATE`) that the policy continues; responses
start with a space and exclude the end-of-sequence token.

`REVISION_BETTER` / `REVISION_WORSE` are the revision instructions (T-REG contrastive
prompting) that the SFT data teaches the policy: format them with `prompt` (the prompt
string) and `response`; the rewritten response follows directly, like a response follows
its prompt.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from rapidfuzz.distance import OSA

from tokenreward.errors import UserInputError
from tokenreward.rewarders.contrastive import REVISION_BETTER, REVISION_WORSE  # noqa: F401  (the world's policy learns them)
from tokenreward.world import tables
from tokenreward.world.oracle import WORD_LIMITS, known_words

FAMILIES = ("arithmetic", "facts", "enumeration", "repetition", "tone")
COMMON_DEFECTS = ("verbose", "no_answer", "loop", "hostile")
FAMILY_DEFECTS = {
    "arithmetic": ("wrong_digit", "wrong_number"),
    "facts": ("wrong_entity", "misspelled", "misspelled_subject"),
    "enumeration": ("missing", "extra", "wrong_item"),
    "repetition": ("loop", "wrong_topic"),
    "tone": ("hostile", "hostile_sentence", "wrong_item"),
}
#: how often a sampled response is good, and how often a defective one gets a second defect
GOOD_SHARE = 0.4
SECOND_DEFECT_SHARE = 0.15

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


@dataclass
class Response:
    text: str
    kinds: list[str]
    planted: list[tuple[int, int]] = field(default_factory=list)


# ---------------------------------------------------------------- prompts


def _primes(k: int) -> list[int]:
    found, n = [], 2
    while len(found) < k:
        if all(n % p for p in found if p * p <= n):
            found.append(n)
        n += 1
    return found


def _prompt(family: str, question: str, meta: dict) -> dict:
    return {"family": family, "prompt": tables.PROMPT_TEMPLATE.format(question=question), "meta": meta}


def arithmetic_prompt(rng: random.Random) -> dict:
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
    return _prompt("arithmetic", question, {"a": a, "op": op, "b": b, "answer": answer})


def facts_prompt(rng: random.Random) -> dict:
    relation = rng.choice(sorted(tables.FACT_RELATIONS))
    table, questions, _ = tables.FACT_RELATIONS[relation]
    subject = rng.choice(sorted(table))
    question = rng.choice(questions).format(subject=subject)
    return _prompt("facts", question, {"relation": relation, "subject": subject, "answer": table[subject]})


def enumeration_prompt(rng: random.Random) -> dict:
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
    return _prompt("enumeration", question, {"kind": kind, "params": params, "items": items})


def repetition_prompt(rng: random.Random) -> dict:
    animal = rng.choice(sorted(tables.ANIMALS))
    return _prompt("repetition", rng.choice(tables.ANIMAL_QUESTIONS).format(animal=animal), {"animal": animal})


def tone_prompt(rng: random.Random) -> dict:
    item, problem = rng.choice(tables.COMPLAINT_ITEMS), rng.choice(tables.COMPLAINT_PROBLEMS)
    question = rng.choice(tables.TONE_QUESTIONS).format(item=item, problem=problem)
    return _prompt("tone", question, {"item": item, "problem": problem})


PROMPT_MAKERS = {
    "arithmetic": arithmetic_prompt,
    "facts": facts_prompt,
    "enumeration": enumeration_prompt,
    "repetition": repetition_prompt,
    "tone": tone_prompt,
}


def make_prompts(rng: random.Random, per_family: int, attempts: int = 50) -> list[dict]:
    """Up to `per_family` distinct prompts of each family (fewer where the family has fewer)."""
    records = []
    for family in FAMILIES:
        seen: set[str] = set()
        misses = 0
        while len(seen) < per_family and misses < attempts * per_family:
            record = PROMPT_MAKERS[family](rng)
            if record["prompt"] in seen:
                misses += 1
                continue
            seen.add(record["prompt"])
            records.append(record)
    for i, record in enumerate(records):
        record["id"] = f"{record['family']}-{i:05d}"
    return [{"id": r["id"], "family": r["family"], "prompt": r["prompt"], "meta": r["meta"]} for r in records]


# ---------------------------------------------------------------- responses


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


def _wrong_number(rng: random.Random, answer: int, same_length: bool) -> str:
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


def _fact_entities(relation: str) -> set[str]:
    table = tables.FACT_RELATIONS[relation][0]
    return {w.lower() for w in list(table) + list(table.values())}


def _body(rng: random.Random, record: dict, kinds: set[str], template: int) -> str:
    """The family's answer with family-specific defects planted (marked)."""
    family, meta = record["family"], record["meta"]
    if family == "arithmetic":
        c = str(meta["answer"])
        if kinds & {"wrong_digit", "wrong_number"}:
            c = _wrong_number(rng, meta["answer"], same_length="wrong_digit" in kinds)
        return tables.ARITHMETIC_ANSWERS[template % 3].format(a=meta["a"], op=meta["op"], b=meta["b"], c=c)
    if family == "facts":
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
            entities = _fact_entities(meta["relation"])
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
            shown_subject = mark(wrong)
        capitalised = (
            shown_subject[0] + shown_subject[1:2].upper() + shown_subject[2:]
            if shown_subject[0] == OPEN
            else shown_subject.capitalize()
        )
        return answers[template % len(answers)].format(subject=shown_subject, Subject=capitalised, answer=answer)
    if family == "enumeration":
        items = [str(v) for v in meta["items"]]
        if "missing" in kinds:
            i = rng.randrange(1, len(items))
            del items[i]
            if i < len(items):
                items[i - 1] += mark(", ")
                rendered = items[i - 1] + items[i]
                items[i - 1 : i + 1] = [rendered]
                body = ", ".join(items)
            else:
                body = ", ".join(items) + OPEN
        else:
            if "wrong_item" in kinds:
                i = rng.randrange(len(items))
                items[i] = mark(_absent(rng, meta["items"]))
            if "extra" in kinds:
                items.insert(rng.randrange(1, len(items) + 1), mark(_absent(rng, meta["items"])))
            body = ", ".join(items)
        template = tables.ENUMERATION_ANSWERS[meta["kind"]][template % 2]
        text = template.format(items=body, **meta["params"])
        if text.count(OPEN) > text.count(CLOSE):  # a missing last item is blamed on the character after the list
            cut = text.index(OPEN) + 1
            text = text[:cut] + text[cut] + CLOSE + text[cut + 1 :]
        return text
    if family == "repetition":
        animal = meta["animal"]
        if "wrong_topic" in kinds:
            other = rng.choice(sorted(set(tables.ANIMALS) - {animal}))
            return " " + mark(tables.ANIMALS[other][1])
        return " " + tables.ANIMALS[animal][1]
    if family == "tone":
        reply = tables.TONE_REPLIES[template % len(tables.TONE_REPLIES)]
        if "hostile" in kinds:
            reply = reply.replace("your {item}", "your " + mark(rng.choice(tables.HOSTILE_WORDS)) + " {item}", 1)
        item = meta["item"]
        if "wrong_item" in kinds:
            item = mark(rng.choice(sorted(set(tables.COMPLAINT_ITEMS) - {item})))
        return reply.format(item=item)
    raise UserInputError(f"unknown family {family!r}")


def _absent(rng: random.Random, items: list[int]) -> str:
    while True:
        value = rng.randint(1, max(items) + 10)
        if value not in items:
            return str(value)


def _sentences_of(text: str) -> list[str]:
    return re.findall(r" [^.!?]*[.!?]", text)


def respond(
    rng: random.Random, record: dict, kinds: list[str] | tuple[str, ...] = (), template: int | None = None
) -> Response:
    """A response to `record` with the given defect kinds planted (none: a good reply)."""
    family = record["family"]
    allowed = set(COMMON_DEFECTS) | set(FAMILY_DEFECTS[family])
    unknown = set(kinds) - allowed
    if unknown:
        raise UserInputError(f"{family}: unknown defect kinds {sorted(unknown)}; allowed: {sorted(allowed)}")
    kinds_set = set(kinds)
    template = rng.randrange(12) if template is None else template
    if "no_answer" in kinds_set:
        pool = tables.TONE_NON_ANSWERS if family == "tone" else tables.NON_ANSWERS
        text = pool[template % len(pool)].format(item=record["meta"].get("item", ""))
    else:
        text = _body(rng, record, kinds_set, template)
    if family == "tone" and "hostile_sentence" in kinds_set:
        first = _sentences_of(text)[0]
        insert = rng.choice(tables.HOSTILE_TONE_SENTENCES).format(
            word=mark(rng.choice(tables.HOSTILE_WORDS)), item=record["meta"]["item"]
        )
        text = text.replace(first, first + insert, 1)
    if family != "tone" and "hostile" in kinds_set:
        insult = rng.choice(tables.HOSTILE_SENTENCES).format(word=mark(rng.choice(tables.HOSTILE_WORDS)))
        text = insult + text if rng.random() < 0.5 else text + insult
    if "loop" in kinds_set:
        sentence = _sentences_of(text)[-1].replace(OPEN, "").replace(CLOSE, "")
        loops = [" " + mark(sentence[1:]) for _ in range(rng.randint(1, 4 if family == "repetition" else 2))]
        if (
            "verbose" not in kinds_set and rng.random() < 0.5
        ):  # cut off mid-sentence, as when generation runs out of tokens
            words = sentence[1:].split()
            loops.append(" " + mark(" ".join(words[: rng.randint(1, max(1, len(words) - 1))])))
        text += "".join(loops)
    if "verbose" in kinds_set:
        fillers = rng.sample(tables.FILLERS, len(tables.FILLERS))
        target = WORD_LIMITS[family] + rng.randint(1, 10)
        while fillers and len(unmark(text)[0].split()) <= target:
            text += fillers.pop()
    clean, planted = unmark(text)
    return Response(clean, sorted(kinds_set), planted)


def sample_kinds(rng: random.Random, family: str) -> list[str]:
    """Defect kinds of one sampled response: none with probability `GOOD_SHARE`, else one
    (family-specific twice as likely as common), sometimes two."""
    if rng.random() < GOOD_SHARE:
        return []
    pool = list(FAMILY_DEFECTS[family]) * 2 + [k for k in COMMON_DEFECTS if k not in FAMILY_DEFECTS[family]]
    kinds = {rng.choice(pool)}
    if rng.random() < SECOND_DEFECT_SHARE:
        kinds.add(rng.choice(pool))
    if "no_answer" in kinds:
        kinds = {k for k in kinds if k in ("no_answer", "verbose", "loop") or (k == "hostile" and family != "tone")}
    return sorted(kinds)
