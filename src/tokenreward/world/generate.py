"""Seeded generator of the world's prompts and responses, with the defects it plants.

The families (`tokenreward.world.families`, `DEFAULT_FAMILIES` unless a build names others)
make the prompts and the bodies of the replies. A response is a good reply or a reply with
planted defects of chosen kinds; `respond` returns the text and the character spans of the
defects it planted, so tests can check the oracle against the generator. Prompts are plain
strings (`tables.PROMPT_TEMPLATE`) that the policy continues; responses start with a space and
exclude the end-of-sequence token.

`REVISION_BETTER` / `REVISION_WORSE` are the revision instructions (T-REG contrastive
prompting) that the SFT data teaches the policy: format them with `prompt` (the prompt
string) and `response`; the rewritten response follows directly, like a response follows
its prompt.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from tokenreward.errors import UserInputError
from tokenreward.rewarders.contrastive import REVISION_BETTER, REVISION_WORSE  # noqa: F401  (the world's policy learns them)
from tokenreward.world import tables
from tokenreward.world.families import DEFAULT_FAMILIES, Family, family
from tokenreward.world.marks import CLOSE, OPEN, mark, unmark, written_sentences

#: how often a sampled response is good, and how often a defective one gets a second defect
GOOD_SHARE = 0.4
SECOND_DEFECT_SHARE = 0.15


@dataclass
class Response:
    text: str
    kinds: list[str]
    planted: list[tuple[int, int]] = field(default_factory=list)


def make_prompts(
    rng: random.Random, per_family: int, families: tuple[str, ...] = DEFAULT_FAMILIES, attempts: int = 50
) -> list[dict]:
    """Up to `per_family` distinct prompts of each of `families`, in order (fewer where a family
    has fewer), with ids `FAMILY-NNNNN`."""
    records = []
    for name in families:
        maker = family(name)
        seen: set[str] = set()
        misses = 0
        while len(seen) < per_family and misses < attempts * per_family:
            record = maker.prompt(rng)
            if record["prompt"] in seen:
                misses += 1
                continue
            seen.add(record["prompt"])
            records.append(record)
    for i, record in enumerate(records):
        record["id"] = f"{record['family']}-{i:05d}"
    return [{"id": r["id"], "family": r["family"], "prompt": r["prompt"], "meta": r["meta"]} for r in records]


def defect_kinds(name: str) -> tuple[str, ...]:
    """Every defect kind a reply of family `name` can carry: its common ones, then its own."""
    task = family(name)
    return tuple(dict.fromkeys(task.common_defects + task.defects))


def respond(
    rng: random.Random, record: dict, kinds: list[str] | tuple[str, ...] = (), template: int | None = None
) -> Response:
    """A response to `record` with the given defect kinds planted (none: a good reply): the
    family's body (or a non-answer), its own late defects, then the common ones in the order
    hostile sentence, loop, verbose."""
    task = family(record["family"])
    unknown = set(kinds) - set(defect_kinds(task.name))
    if unknown:
        raise UserInputError(
            f"{task.name}: unknown defect kinds {sorted(unknown)}; allowed: {sorted(defect_kinds(task.name))}"
        )
    kinds_set = set(kinds)
    template = rng.randrange(12) if template is None else template
    if "no_answer" in kinds_set:
        text = task.non_answers[template % len(task.non_answers)].format(item=record["meta"].get("item", ""))
    else:
        text = task.body(rng, record["meta"], kinds_set, template)
    text = task.decorate(rng, record["meta"], kinds_set, text)
    if task.insults and "hostile" in kinds_set:
        insult = rng.choice(tables.HOSTILE_SENTENCES).format(word=mark(rng.choice(tables.HOSTILE_WORDS)))
        text = insult + text if rng.random() < 0.5 else text + insult
    if "loop" in kinds_set:
        text += _loops(rng, task, text, cut_off="verbose" not in kinds_set)
    if "verbose" in kinds_set:
        fillers = rng.sample(tables.FILLERS, len(tables.FILLERS))
        target = task.word_limit + rng.randint(1, 10)
        while fillers and len(unmark(text)[0].split()) <= target:
            text += fillers.pop()
    clean, planted = unmark(text)
    return Response(clean, sorted(kinds_set), planted)


def _loops(rng: random.Random, task: Family, text: str, cut_off: bool) -> str:
    """Copies (1 to `task.max_loops`) of the reply's last sentence, marked; with `cut_off`, half
    the time a last copy cut mid-sentence, as when generation runs out of tokens."""
    sentence = written_sentences(text)[-1].replace(OPEN, "").replace(CLOSE, "")
    loops = [" " + mark(sentence[1:]) for _ in range(rng.randint(1, task.max_loops))]
    if cut_off and rng.random() < 0.5:
        words = sentence[1:].split()
        loops.append(" " + mark(" ".join(words[: rng.randint(1, max(1, len(words) - 1))])))
    return "".join(loops)


def sample_kinds(rng: random.Random, name: str) -> list[str]:
    """Defect kinds of one sampled response of family `name`: none with probability
    `GOOD_SHARE`, else one (the family's own twice as likely as each common one), sometimes two."""
    if rng.random() < GOOD_SHARE:
        return []
    task = family(name)
    pool = list(task.defects) * 2 + [k for k in task.common_defects if k not in task.defects]
    kinds = {rng.choice(pool)}
    if rng.random() < SECOND_DEFECT_SHARE:
        kinds.add(rng.choice(pool))
    if "no_answer" in kinds:
        kinds = {k for k in kinds if k in ("no_answer", "verbose", "loop") or (k == "hostile" and task.insults)}
    return sorted(kinds)
