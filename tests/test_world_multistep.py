"""The multistep family's per-step ground truth against a naive re-computation from the prompt
text, its planted errors as the oracle sees them, and the verifiable (right / wrong) reward of
the families with a right answer against the kinds the generator planted."""

from __future__ import annotations

import operator
import random
import re

import pytest

from tokenreward.world import generate as gen
from tokenreward.world import oracle

PHRASES = {"add": ("+", operator.add), "subtract": ("-", operator.sub), "multiply by": ("*", operator.mul)}
KIND_SETS = [[], ["wrong_result"], ["wrong_operand"], ["wrong_result", "wrong_operand"], ["hostile"], ["verbose"]]


@pytest.fixture(scope="module")
def records():
    return gen.make_prompts(random.Random(5), 40, families=("multistep",))


def naive_chain(prompt):
    """(start, [(op, operand, function)]) read from the prompt's words."""
    start = int(re.search(r"(?:Start with|Begin at) (\d+)\.", prompt).group(1))
    said = re.findall(r"(add|subtract|multiply by) (\d+)", prompt, flags=re.IGNORECASE)
    return start, [(PHRASES[word.lower()][0], int(b), PHRASES[word.lower()][1]) for word, b in said]


def naive_steps(prompt, response):
    """[(start, end, correct, valid, kind)] by reading the response line by line."""
    start, operations = naive_chain(prompt)
    truth = [start]
    for _, b, function in operations:
        truth.append(function(truth[-1], b))
    rows, offset, written, k = [], 0, start, 0
    for line in response.split("\n"):
        if "Step " in line:
            at = offset + line.index("Step ")
            a, op, b, _, c = line[line.index(": ") + 2 :].split(" ")[:5]
            a, b, c = int(a), int(b), int(c.rstrip("."))
            want_op, want_b, function = operations[k]
            valid = a == written and (op, b) == (want_op, want_b) and c == function(a, b)
            correct = (a, op, b, c) == (truth[k], want_op, want_b, truth[k + 1])
            end = at + len(f"Step {k + 1}: {a} {op} {b} = {c}.")
            rows.append((at, end, correct, valid, "step"))
            written, k = c, k + 1
        elif "answer is " in line:
            at = offset + line.index("The answer is ")
            number = int(line[line.index("answer is ") + 10 :].split(".")[0])
            rows.append((at, at + len(f"The answer is {number}."), number == truth[-1], number == written, "answer"))
        elif "Answer: " in line:
            at = offset + line.index("Answer: ")
            number = int(line[line.index("Answer: ") + 8 :].split(".")[0])
            rows.append((at, at + len(f"Answer: {number}."), number == truth[-1], number == written, "answer"))
        offset += len(line) + 1
    return rows


def test_step_truth_matches_a_naive_recomputation(records):
    rng, seen = random.Random(0), {"carried": 0, "invalid": 0, "correct": 0}
    for record in records:
        for kinds in KIND_SETS:
            response = gen.respond(rng, record, kinds).text
            truth = oracle.step_truth(record, response)
            assert [(t.start, t.end, t.correct, t.valid, t.kind) for t in truth] == naive_steps(
                record["prompt"], response
            ), response
            seen["carried"] += sum(t.valid and not t.correct for t in truth)
            seen["invalid"] += sum(not t.valid for t in truth)
            seen["correct"] += sum(t.correct for t in truth)
    assert min(seen.values()) > 20, seen


def test_a_planted_error_is_blamed_where_it_is_made_and_carried_after(records):
    rng = random.Random(1)
    for record in records:
        response = gen.respond(rng, record, ["wrong_result"])
        truth = oracle.step_truth(record, response.text)
        first = next(i for i, t in enumerate(truth) if not t.correct)
        assert not truth[first].valid and all(t.valid and not t.correct for t in truth[first + 1 :])
        assert all(t.correct and t.valid for t in truth[:first])
        graded = oracle.grade(record, response.text)
        assert sorted((s, e) for s, e, c in graded.credit_spans if c < 0) == response.planted
        assert truth[first].start <= response.planted[0][0] < response.planted[0][1] <= truth[first].end


def test_the_oracle_blames_exactly_the_planted_errors_and_the_revision_fixes_every_step(records):
    rng = random.Random(2)
    for record in records:
        for kinds in KIND_SETS[1:] + [gen.sample_kinds(rng, "multistep")]:
            response = gen.respond(rng, record, kinds)
            assert sorted((s, e) for s, e, c in oracle.grade(record, response.text).credit_spans if c < 0) == (
                response.planted
            )
            revision = oracle.revise(record, response.text)
            assert oracle.grade(record, revision).defects == 0, revision
            assert all(t.correct for t in oracle.step_truth(record, revision))


def test_stepwise_records_are_the_response_lines_labelled_by_a_naive_recomputation(records):
    from tokenreward.world.records import response_record, stepwise_records

    rng, responses = random.Random(3), []
    for record in records[:20]:
        responses += [response_record(record, gen.respond(rng, record, kinds)) for kinds in KIND_SETS]
    other = gen.make_prompts(random.Random(0), 2, families=("arithmetic",))
    responses += [response_record(p, gen.respond(rng, p, [])) for p in other]  # no steps: left out
    stepwise = stepwise_records(records[:20] + other, responses)
    assert len(stepwise) == len(responses) - len(other)
    labels = {True: 0, False: 0}
    for row, response in zip(stepwise, responses):
        text = response["response"]
        assert row["prompt"] == response["prompt"] and "\n".join(row["completions"]) == text
        naive, offset = [], 0
        for line in text.split("\n"):  # a line is good when every naive step inside it is correct
            inside = [
                correct for s, e, correct, _, _ in naive_steps(row["prompt"], text) if offset <= s < offset + len(line)
            ]
            naive.append(all(inside))
            offset += len(line) + 1
        assert row["labels"] == naive, text
        for label in naive:
            labels[label] += 1
    assert min(labels.values()) > 20, labels


def test_step_truth_is_refused_for_a_family_without_steps():
    record = gen.make_prompts(random.Random(0), 1, families=("arithmetic",))[0]
    with pytest.raises(ValueError, match="arithmetic family has no steps"):
        oracle.step_truth(record, " 1 + 1 = 2.")


#: per family, the planted kinds that make the answer wrong (the others leave it right)
WRONG_ANSWER_KINDS = {
    "arithmetic": {"wrong_digit", "wrong_number", "no_answer"},
    "facts": {"wrong_entity", "misspelled", "misspelled_subject", "no_answer"},
    "enumeration": {"missing", "extra", "wrong_item", "no_answer"},
}


@pytest.mark.parametrize("name", sorted(WRONG_ANSWER_KINDS))
def test_the_verifiable_reward_follows_the_planted_kinds(name):
    rng = random.Random(3)
    for record in gen.make_prompts(random.Random(4), 25, families=(name,)):
        for kinds in [[]] + [[k] for k in gen.defect_kinds(name)] + [gen.sample_kinds(rng, name)]:
            response = gen.respond(rng, record, kinds).text
            expected = 0.0 if set(kinds) & WRONG_ANSWER_KINDS[name] else 1.0
            assert oracle.oracle_reward(record, response, "verifiable") == expected, (kinds, response)
            assert oracle.oracle_reward(record, response) == oracle.grade(record, response).score


def test_the_verifiable_reward_of_a_chain_is_its_final_answer(records):
    rng = random.Random(6)
    for record in records:
        start, operations = naive_chain(record["prompt"])
        value = start
        for _, b, function in operations:
            value = function(value, b)
        for kinds in KIND_SETS:
            response = gen.respond(rng, record, kinds).text
            final = int(re.findall(r"(?:answer is|Answer:) (-?\d+)", response)[-1])
            assert oracle.correct(record, response) == float(final == value)


def test_the_verifiable_reward_is_refused_without_a_right_answer():
    record = gen.make_prompts(random.Random(0), 1, families=("tone",))[0]
    with pytest.raises(ValueError, match="tone family has no verifiable answer"):
        oracle.oracle_reward(record, " Thank you.", "verifiable")
    with pytest.raises(ValueError, match="unknown oracle reward 'exact'"):
        oracle.oracle_reward(record, " Thank you.", "exact")


CHAIN = {
    "family": "multistep",
    "meta": {"start": 7, "operations": [["+", 5], ["*", 3], ["-", 4]], "values": [12, 36, 32], "answer": 32},
}
CANONICAL = " Step 1: 7 + 5 = 12.\nStep 2: 12 * 3 = 36.\nStep 3: 36 - 4 = 32.\nThe answer is 32."


@pytest.mark.parametrize(
    "reply, score",
    [
        (CANONICAL, 1.0),
        (" Step 1: 7 + 5 = 12.", 0.25),  # the rest of the chain and the answer are missing
        (" The answer is 32.", 0.25),  # the steps are missing
        (" Step 1: 7 + 5 = 13.\nStep 2: 13 * 3 = 39.", -1.0),  # a slip, carried, then nothing
        (CANONICAL.replace("The answer is 32.", "Step 4: 32 + 1 = 33.\nThe answer is 33."), 0.75 - 1.0),
    ],
)
def test_odd_replies_are_graded_by_the_rule_and_revised_to_the_chain(reply, score):
    assert oracle.grade(CHAIN, reply).score == pytest.approx(score)
    assert oracle.revise(CHAIN, reply) == CANONICAL
