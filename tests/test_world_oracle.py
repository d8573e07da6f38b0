"""The oracle's documented formula on hand-written responses (including odd ones a policy may
produce), the minimality of its revisions, and the token-credit helpers."""

from __future__ import annotations

import random

import pytest
from rapidfuzz.distance import Levenshtein

from tokenreward.world import generate as gen
from tokenreward.world import oracle
from tokenreward.world.families import family
from tokenreward.world.oracle import (
    LIST_ERROR_CREDIT,
    NO_ANSWER_PENALTY,
    REPEAT_CREDIT,
    VERBOSITY_RATE,
    WRONG_CREDIT,
    grade,
    revise,
    vader_lexicon,
)


def arithmetic(a, op, b, answer):
    return {"family": "arithmetic", "meta": {"a": a, "op": op, "b": b, "answer": answer}}


def facts(relation, subject, answer):
    return {"family": "facts", "meta": {"relation": relation, "subject": subject, "answer": answer}}


PRIMES5 = {"family": "enumeration", "meta": {"kind": "primes", "params": {"k": 5}, "items": [2, 3, 5, 7, 11]}}
OWLS = {"family": "repetition", "meta": {"animal": "owls"}}
OWL_FACT = "Owls can turn their heads almost all the way around."
TONE = {"family": "tone", "meta": {"item": "lamp", "problem": "arrived late"}}


def spans_text(text, g, sign):
    return [text[s:e] for s, e, c in g.credit_spans if (c < 0 if sign < 0 else c > 0)]


def test_arithmetic_wrong_digit_is_the_defect():
    text = " 17 + 25 = 47."
    g = grade(arithmetic(17, "+", 25, 42), text)
    assert g.credit_spans == [[text.index("47") + 1, text.index("47") + 2, WRONG_CREDIT]]
    assert g.score == pytest.approx(WRONG_CREDIT)
    assert revise(arithmetic(17, "+", 25, 42), text) == " 17 + 25 = 42."


def test_arithmetic_right_answer_and_restated_question_ignored():
    text = " 17 + 25 = 42."
    g = grade(arithmetic(17, "+", 25, 42), text)
    assert spans_text(text, g, +1) == ["42"] and g.defects == 0 and g.score == pytest.approx(1.0)


def test_arithmetic_wrong_length_marks_whole_number_and_extra_answers_count():
    text = " I think 142, or 42."
    g = grade(arithmetic(17, "+", 25, 42), text)
    assert spans_text(text, g, -1) == ["142"] and spans_text(text, g, +1) == ["42"]
    assert g.score == pytest.approx(1.0 + WRONG_CREDIT)


def test_a_misquoted_question_is_a_restatement_defect_not_an_answer():
    record = arithmetic(4, "*", 11, 44)
    text = " 4 * 12 = 44."
    g = grade(record, text)
    assert spans_text(text, g, -1) == ["12"] and spans_text(text, g, +1) == ["44"]
    assert g.score == pytest.approx(1.0 + oracle.RESTATEMENT_CREDIT)
    assert revise(record, text) == " 4 * 11 = 44."


def test_loops_are_defects_in_any_family_and_masked_from_the_answer_check():
    text = " The answer is 42. The answer is 42. The answer is 4"
    g = grade(arithmetic(17, "+", 25, 42), text)
    assert spans_text(text, g, -1) == ["The answer is 42.", "The answer is 4"]
    assert g.score == pytest.approx(1.0 + 2 * REPEAT_CREDIT)
    assert revise(arithmetic(17, "+", 25, 42), text) == " The answer is 42."


def test_misspelled_subject_and_entity():
    record = facts("dish", "samosa", "India")
    text = " Samoosa comes from Indai."
    g = grade(record, text)
    assert spans_text(text, g, -1) == ["Samoosa", "Indai"]
    assert g.score == pytest.approx(2 * WRONG_CREDIT)
    assert revise(record, text) == " Samosa comes from India."


def test_same_word_right_in_one_prompt_wrong_in_another():
    assert grade(facts("language", "Peru", "Spanish"), " Spanish.").score == pytest.approx(1.0)
    g = grade(facts("language", "Brazil", "Portuguese"), " They speak Spanish.")
    assert g.score == pytest.approx(WRONG_CREDIT) and g.issues[0].kind == "wrong_entity"


def test_unknown_word_is_no_answer_but_not_a_defect_span():
    g = grade(facts("capital", "Peru", "Lima"), " The capital of Peru is Xyzzyqua.")
    assert g.credit_spans == [] and g.score == pytest.approx(-NO_ANSWER_PENALTY)
    assert [i.kind for i in g.issues] == ["no_answer"]


def test_enumeration_wrong_extra_and_missing_items():
    text = " 2, 3, 5, 9, 11, 13."
    g = grade(PRIMES5, text)
    assert spans_text(text, g, -1) == ["9", "13"]
    assert g.score == pytest.approx(4 / 5 + 2 * LIST_ERROR_CREDIT)
    assert revise(PRIMES5, text) == " 2, 3, 5, 7, 11."
    text = " The first 5 prime numbers are 2, 3, 7, 11."
    g = grade(PRIMES5, text)
    assert spans_text(text, g, -1) == [", "] and g.score == pytest.approx(4 / 5 + LIST_ERROR_CREDIT)
    assert revise(PRIMES5, text) == " The first 5 prime numbers are 2, 3, 5, 7, 11."
    text = " 2, 3, 5, 7."
    assert revise(PRIMES5, text) == " 2, 3, 5, 7, 11." and spans_text(text, grade(PRIMES5, text), -1) == ["."]


def test_repetition_family_true_sentence_wrong_fact_wrong_topic():
    assert grade(OWLS, " " + OWL_FACT).score == pytest.approx(1.0)
    g = grade(OWLS, " Owls make honey from flowers.")
    assert g.issues[0].kind == "wrong_fact" and g.score == pytest.approx(WRONG_CREDIT)
    g = grade(OWLS, " Bees make honey from the nectar of flowers.")
    assert g.issues[0].kind == "wrong_topic"
    assert revise(OWLS, " Bees make honey from the nectar of flowers.") == " " + OWL_FACT


def test_hostile_words_use_vader_valence_and_kind_words_share_one():
    text = " You are stupid. Thanks for writing."
    g = grade(TONE, text)
    lexicon = vader_lexicon()
    assert spans_text(text, g, -1) == ["stupid"] and spans_text(text, g, +1) == ["Thanks"]
    assert g.score == pytest.approx(lexicon["stupid"] / oracle.HOSTILE_SCALE + 1.0)
    assert revise(TONE, text) == " You are. Thanks for writing."
    # the reply must be about the customer's item
    g = grade(TONE, " Thanks, we will fix your chair.")
    assert spans_text(" Thanks, we will fix your chair.", g, -1) == ["chair"]
    assert revise(TONE, " Thanks, we will fix your chair.") == " Thanks, we will fix your lamp."
    # hostile words count in every family
    g = grade(arithmetic(2, "+", 2, 4), " What a stupid question. 4.")
    assert g.score == pytest.approx(1.0 + lexicon["stupid"] / oracle.HOSTILE_SCALE)


def test_no_answer_and_verbosity_terms():
    record = arithmetic(6, "*", 4, 24)
    assert grade(record, " I do not know.").score == pytest.approx(-NO_ANSWER_PENALTY)
    filler = " Here is some more text for you to read"
    text = " 24." + filler * 3
    words = len(text.split())
    g = grade(record, text)
    assert g.score == pytest.approx(1.0 - min(1.0, VERBOSITY_RATE * (words - family("arithmetic").word_limit)))
    assert grade(record, "").score == pytest.approx(-NO_ANSWER_PENALTY)


def test_unknown_family_is_refused():
    with pytest.raises(ValueError, match="unknown family"):
        grade({"family": "poetry", "meta": {}}, " hi")


def test_score_is_sum_of_credits_minus_penalties_on_generated_responses():
    rng = random.Random(2)
    for p in gen.make_prompts(rng, 15):
        for _ in range(4):
            text = gen.respond(rng, p, gen.sample_kinds(rng, p["family"])).text
            g = grade(p, text)
            penalties = sum(i.penalty for i in g.issues)
            assert g.score == pytest.approx(sum(c for _, _, c in g.credit_spans) - penalties)
            assert all(0 <= s <= e <= len(text) for s, e, _ in g.credit_spans)


def test_revision_is_minimal_and_fixes_every_defect():
    rng = random.Random(4)
    revised = 0
    for p in gen.make_prompts(rng, 25):
        for kinds in [[k] for k in sorted(gen.defect_kinds(p["family"]))]:
            text = gen.respond(rng, p, kinds).text
            g = grade(p, text)
            revision = revise(p, text)
            assert Levenshtein.distance(text, revision) <= sum(i.size for i in g.issues), (text, revision)
            assert grade(p, revision).defects == 0, (text, revision)
            assert grade(p, revision).score > g.score
            revised += 1
    assert revised > 200


def test_token_credit_and_defect_tokens_by_overlap():
    spans = [[0, 3, 1.0], [5, 8, -0.5], [7, 9, -0.25]]
    offsets = [(0, 2), (2, 5), (5, 7), (7, 10), (10, 12)]
    assert oracle.token_credit(spans, offsets) == [1.0, 1.0, -0.5, -0.75, 0.0]
    assert oracle.defect_tokens(spans, offsets) == [False, False, True, True, False]
