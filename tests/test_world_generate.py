"""The generator's ground truth, checked independently of the generator and the oracle:
arithmetic recomputed from the prompt text, facts looked up in the tables, lists rebuilt by
naive loops, hostile words read from the VADER lexicon file; plus determinism and the oracle
finding exactly the defects the generator planted."""

from __future__ import annotations

import operator
import random
import re
from importlib import resources

import pytest

from tokenreward.world import generate as gen
from tokenreward.world import oracle, tables
from tokenreward.world.families import DEFAULT_FAMILIES

OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul}


@pytest.fixture(scope="module")
def prompts():
    return gen.make_prompts(random.Random(7), 60)


def by_family(prompts, family):
    return [p for p in prompts if p["family"] == family]


def naive_primes(k):
    primes = []
    n = 2
    while len(primes) < k:
        if all(n % d for d in range(2, n)):
            primes.append(n)
        n += 1
    return primes


def test_every_family_and_distinct_prompts(prompts):
    assert {p["family"] for p in prompts} == set(DEFAULT_FAMILIES)
    assert len({p["prompt"] for p in prompts}) == len(prompts)
    assert len({p["id"] for p in prompts}) == len(prompts)
    for p in prompts:
        assert p["prompt"].startswith("User: ") and p["prompt"].endswith("\nAssistant:")


def test_arithmetic_answers_recomputed_from_the_prompt_text(prompts):
    for p in by_family(prompts, "arithmetic"):
        a, op, b = re.search(r"(\d+) ([-+*]) (\d+)", p["prompt"]).groups()
        assert p["meta"]["answer"] == OPS[op](int(a), int(b))
        good = gen.respond(random.Random(0), p, []).text
        assert re.findall(r"\d+", good)[-1] == str(OPS[op](int(a), int(b)))


def test_fact_answers_come_from_the_table(prompts):
    for p in by_family(prompts, "facts"):
        subject = p["meta"]["subject"]
        assert subject.lower() in p["prompt"].lower()
        table = {"capital": tables.CAPITALS, "language": tables.LANGUAGES, "dish": tables.DISHES}[
            p["meta"]["relation"]
        ]
        assert p["meta"]["answer"] == table[subject]
        good = gen.respond(random.Random(0), p, []).text
        assert table[subject] in good
        wrong = gen.respond(random.Random(1), p, ["wrong_entity"])
        ((s, e),) = wrong.planted
        assert wrong.text[s:e] in table.values() and wrong.text[s:e] != table[subject]


def test_a_word_right_for_one_prompt_is_wrong_for_another():
    peru = {"family": "facts", "meta": {"relation": "capital", "subject": "Peru", "answer": "Lima"}}
    chile = {"family": "facts", "meta": {"relation": "capital", "subject": "Chile", "answer": "Santiago"}}
    assert oracle.grade(peru, " Lima.").score > 0 > oracle.grade(chile, " Lima.").score


def test_enumeration_items_rebuilt_naively(prompts):
    for p in by_family(prompts, "enumeration"):
        numbers = [int(n) for n in re.findall(r"\d+", p["prompt"])]
        kind = p["meta"]["kind"]
        if kind == "primes":
            expected = naive_primes(numbers[0])
        elif kind == "count":
            expected = list(range(numbers[0], numbers[1] + 1))
        else:
            expected = [numbers[1] * i for i in range(1, numbers[0] + 1)]
        assert p["meta"]["items"] == expected
        good = gen.respond(random.Random(0), p, []).text
        assert ", ".join(map(str, expected)) in good


def test_hostile_words_have_negative_vader_valence_read_from_the_file(prompts):
    lines = (resources.files("vaderSentiment") / "vader_lexicon.txt").read_text().splitlines()
    valence = {line.split("\t")[0]: float(line.split("\t")[1]) for line in lines}
    for p in by_family(prompts, "tone"):
        for kind in ("hostile", "hostile_sentence"):
            r = gen.respond(random.Random(3), p, [kind])
            ((s, e),) = r.planted
            assert valence[r.text[s:e]] <= oracle.HOSTILE_THRESHOLD


def test_loops_repeat_the_sentence(prompts):
    for p in by_family(prompts, "repetition"):
        fact = tables.ANIMALS[p["meta"]["animal"]][1]
        r = gen.respond(random.Random(5), p, ["loop"])
        assert r.text.startswith(" " + fact)
        for s, e in r.planted:
            assert fact.startswith(r.text[s:e])


def test_same_seed_same_world_different_seed_different_world():
    first = gen.make_prompts(random.Random(11), 20)
    assert first == gen.make_prompts(random.Random(11), 20)
    assert first != gen.make_prompts(random.Random(12), 20)
    rng_a, rng_b = random.Random(3), random.Random(3)
    texts_a = [gen.respond(rng_a, p, gen.sample_kinds(rng_a, p["family"])).text for p in first]
    texts_b = [gen.respond(rng_b, p, gen.sample_kinds(rng_b, p["family"])).text for p in first]
    assert texts_a == texts_b


def all_kinds(family):
    return sorted(gen.defect_kinds(family))


def test_oracle_finds_exactly_the_planted_defects(prompts):
    rng = random.Random(1)
    checked = 0
    for p in prompts:
        kind_sets = (
            [[]] + [[k] for k in all_kinds(p["family"])] + [gen.sample_kinds(rng, p["family"]) for _ in range(2)]
        )
        for kinds in kind_sets:
            r = gen.respond(rng, p, kinds)
            g = oracle.grade(p, r.text)
            negative = sorted((s, e) for s, e, c in g.credit_spans if c < 0)
            assert negative == r.planted, (p["prompt"], r.text, kinds)
            assert (g.defects > 0) == bool(kinds), (r.text, kinds)
            checked += 1
    assert checked > 500


def test_unknown_defect_kind_is_refused(prompts):
    with pytest.raises(ValueError, match="unknown defect kinds"):
        gen.respond(random.Random(0), by_family(prompts, "arithmetic")[0], ["misspelled"])


def test_revision_templates_take_prompt_and_response():
    for template in (gen.REVISION_BETTER, gen.REVISION_WORSE):
        text = template.format(prompt="User: Hi?\nAssistant:", response=" Hello.")
        assert "User: Hi?\nAssistant: Hello." in text
