"""Every registered world family agrees with itself: its prompts' canonical reply and good
bodies pass its check with full credit and within its word limit, each of its defect kinds
fails the oracle, and the registry refuses unknown or repeated names."""

from __future__ import annotations

import random

import pytest

from tokenreward.world import generate as gen
from tokenreward.world.families import DEFAULT_FAMILIES, FAMILIES, check_families, family
from tokenreward.world.marks import unmark
from tokenreward.world.oracle import grade

NAMES = FAMILIES.names()


def some_prompts(name, count=15, seed=0):
    rng = random.Random(seed)
    return [family(name).prompt(rng) for _ in range(count)]


def test_the_default_families_are_registered_in_their_order():
    assert set(DEFAULT_FAMILIES) <= set(NAMES)
    prompts = gen.make_prompts(random.Random(0), 2)
    assert [p["family"] for p in prompts] == [name for name in DEFAULT_FAMILIES for _ in range(2)]


@pytest.mark.parametrize("name", NAMES)
def test_the_canonical_reply_passes_the_check_with_full_credit(name):
    task = family(name)
    for record in some_prompts(name):
        assert record["family"] == name and record["prompt"].endswith("\nAssistant:")
        reply = task.canonical(record["meta"])
        answer = task.check(record["meta"], reply)
        assert answer.attempted and not answer.issues, reply
        assert sum(credit for _, _, credit in answer.spans) == pytest.approx(1.0)
        assert len(reply.split()) <= task.word_limit
        assert grade(record, reply).defects == 0 and grade(record, reply).score == pytest.approx(1.0)


@pytest.mark.parametrize("name", NAMES)
def test_every_good_body_passes_the_check(name):
    task, rng = family(name), random.Random(1)
    for record in some_prompts(name, 5):
        for template in range(12):
            text, planted = unmark(task.body(rng, record["meta"], set(), template))
            assert not planted
            assert grade(record, text).defects == 0, text


@pytest.mark.parametrize("name", NAMES)
def test_each_defect_kind_fails_the_oracle(name):
    rng = random.Random(2)
    for record in some_prompts(name, 8):
        good = grade(record, family(name).canonical(record["meta"])).score
        for kind in gen.defect_kinds(name):
            response = gen.respond(rng, record, [kind])
            graded = grade(record, response.text)
            assert response.planted or kind in ("verbose", "no_answer"), (kind, response.text)
            assert graded.defects > 0 and graded.score < good, (kind, response.text)


def test_the_registry_refuses_unknown_and_repeated_names():
    assert check_families(["facts", "arithmetic"]) == ("facts", "arithmetic")
    with pytest.raises(ValueError, match="unknown family 'poetry'"):
        check_families(["facts", "poetry"])
    with pytest.raises(ValueError, match="named twice"):
        check_families(["facts", "facts"])
    with pytest.raises(ValueError, match="at least one"):
        check_families([])
    with pytest.raises(ValueError, match="unknown family 'poetry'"):
        family("poetry")
