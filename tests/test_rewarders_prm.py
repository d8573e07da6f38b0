"""The `prm` rewarder: step splitting and markers by hand, each PRM kind's step scores against the
model's own Hugging Face forward (Math-Shepherd: the authors' scoring code), every placement and
aggregate against naive loops over the definitions, on the rewarder's tokens and on another
tokenizer's, and its one-line errors."""

from __future__ import annotations

import math

import pytest
import torch
from tokenizers import processors

from tokenreward.rewarders.prm import marked_response, split_steps, unescaped
from tokenreward.rewards import build_rewarder
from tokenreward.testing import tiny_causal_lm, tiny_config, train_tokenizer

PROMPT = "What is 17 + 25?"
RESPONSES = [
    " 17 + 25 is 42.\nSo the answer is 42.",
    " The capital of France is Paris.\n\nThank you for asking\n",
    " Hello world!",
]
SHEPHERD_CORPUS = [
    "Step 1: 17 + 25 = 42. ки\nStep 2: The answer is 42. ки",
    "Step 1: 5 - 3 = 2. ки\nStep 2: 2 + 2 = 4. ки\nStep 3: + - + - ки",
    "What is 17 + 25? What is 5 - 3?",
]


def token_classifier(tokenizer, num_labels: int = 2, seed: int = 0):
    from transformers import AutoModelForTokenClassification

    torch.manual_seed(seed)
    config = tiny_config("llama", len(tokenizer), tokenizer.pad_token_id, num_labels=num_labels)
    model = AutoModelForTokenClassification.from_config(config)
    with torch.no_grad():
        model.score.weight.mul_(20.0)  # visible differences between steps
    return model.eval()


def two_class_model(tokenizer, seed: int = 0):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    config = tiny_config("llama", len(tokenizer), tokenizer.pad_token_id, num_labels=2)
    model = AutoModelForSequenceClassification.from_config(config)
    with torch.no_grad():
        model.score.weight.mul_(20.0)
    return model.eval()


def separator_positions(prompt: str, response: str, separator: str = "\n") -> tuple[str, list[int]]:
    """By hand: the PRM's input (the separator after the last step too) and the index in it of the
    separator's character that closes each step (blank pieces close nothing)."""
    marked = response if response.endswith(separator) else response + separator
    closing, piece_has_text = [], False
    for k, char in enumerate(marked):
        if char == separator:
            if piece_has_text:
                closing.append(len(prompt) + k)
            piece_has_text = False
        elif not char.isspace():
            piece_has_text = True
    return prompt + marked, closing


def token_at(spans, char: int) -> int:
    return next(t for t, (s, e) in enumerate(spans) if s <= char < e)


def test_steps_and_markers_by_hand():
    assert split_steps("a\nb\n\nc\n", "\n") == [(0, 1), (2, 3), (5, 6)]
    assert split_steps("one step", "\n\n") == [(0, 8)]
    assert marked_response("a\nb", [(0, 1), (2, 3)], "\n") == ("a\nb\n", [1, 3])
    assert marked_response("a\nb\n", [(0, 1), (2, 3)], "\n") == ("a\nb\n", [1, 3])
    assert marked_response("x\ny", [(0, 1), (2, 3)], " ки") == ("x ки\ny ки", [3, 8])
    assert marked_response("x ки\ny", [(0, 4), (5, 6)], " ки") == ("x ки\ny ки", [3, 8])
    assert [unescaped(text) for text in ("\\n\\n", "\n", " ки", "<extra_0>")] == ["\n\n", "\n", " ки", "<extra_0>"]


def scores_at_separators(tokenizer, response: str, probabilities) -> list[float]:
    """By hand: `probabilities(input_ids)` (P(good) at every position of one input) read at the
    token holding each step's closing separator."""
    text, closing = separator_positions(PROMPT, response)
    encoded = tokenizer(text, return_offsets_mapping=True, return_tensors="pt")
    probs = probabilities(encoded["input_ids"])
    spans = encoded["offset_mapping"][0].tolist()
    return [float(probs[token_at(spans, c)]) for c in closing]


@pytest.mark.parametrize("num_labels", [2, 1])
@torch.no_grad()
def test_token_classification_scores_are_the_models_own_at_each_separator(tokenizer, num_labels):
    model = token_classifier(tokenizer, num_labels)
    rewarder = build_rewarder("prm", reward_model=model, tokenizer=tokenizer, device="cpu")
    assert rewarder.kind == "token-classification"
    result = rewarder.score([PROMPT] * len(RESPONSES), RESPONSES)

    def probabilities(input_ids):
        logits = model(input_ids=input_ids).logits[0]
        return logits.softmax(-1)[:, 1] if num_labels == 2 else torch.sigmoid(logits[:, 0])

    for i, response in enumerate(RESPONSES):
        expected = scores_at_separators(tokenizer, response, probabilities)
        assert result.step_scores[i] == pytest.approx(expected, abs=1e-6)
    assert [len(s) for s in result.step_scores] == [2, 2, 1]


@torch.no_grad()
def test_two_class_scores_are_the_head_on_each_separators_hidden_state(tokenizer):
    model = two_class_model(tokenizer)
    rewarder = build_rewarder("prm", reward_model=model, tokenizer=tokenizer, device="cpu")
    assert rewarder.kind == "two-class"
    result = rewarder.score([PROMPT] * len(RESPONSES), RESPONSES)

    def probabilities(input_ids):
        hidden = model(input_ids=input_ids, output_hidden_states=True).hidden_states[-1][0]
        return model.score(hidden).softmax(-1)[:, 1]

    for i, response in enumerate(RESPONSES):
        expected = scores_at_separators(tokenizer, response, probabilities)
        assert result.step_scores[i] == pytest.approx(expected, abs=1e-6)


@pytest.fixture(scope="module")
def shepherd():
    """A causal LM and a tokenizer that knows the tag " ки" and adds a BOS (as Mistral's does)."""
    tokenizer = train_tokenizer(SHEPHERD_CORPUS * 4, vocab_size=300)
    tokenizer._tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", tokenizer.bos_token_id)]
    )
    return tiny_causal_lm("llama", tokenizer, seed=2), tokenizer


@torch.no_grad()
def test_math_shepherd_scores_equal_the_authors_code(shepherd):
    model, tokenizer = shepherd
    question, steps = "What is 17 + 25?", ["Step 1: 17 + 25 = 42.", "Step 2: 5 - 3 = 2.", "Step 3: The answer is 42."]
    rewarder = build_rewarder("prm", reward_model=model, tokenizer=tokenizer, device="cpu")
    assert rewarder.kind == "math-shepherd"
    got = rewarder.score([question], [" " + "\n".join(steps)]).step_scores[0]
    # the README of peiyi9979/math-shepherd-mistral-7b-prm; the tag id is taken as it appears in the text
    good_token, bad_token, step_tag = "+", "-", " ки"
    candidate_tokens = tokenizer.encode(f"{good_token} {bad_token}")[1:]
    step_tag_id = tokenizer.encode(f"{step_tag}")[-1]
    output = "\n".join(step + step_tag for step in steps)
    input_id = torch.tensor([tokenizer.encode(f"{question} {output}")])
    logits = model(input_id).logits[:, :, candidate_tokens]
    scores = logits.softmax(dim=-1)[:, :, 0]
    step_scores = scores[input_id == step_tag_id]
    assert len(step_scores) == 3
    assert got == pytest.approx(step_scores.tolist(), abs=1e-6)


def naive_rows(placement: str, scores: list[float], spans: list, closing_chars: list[int]) -> list[float]:
    """The definitions, token by token: step k's last token holds its last character."""
    last = [token_at(spans, c) for c in closing_chars]
    row = [0.0] * len(spans)
    for k, score in enumerate(scores):
        if placement == "last":
            row[last[k]] += score
        elif placement == "difference":
            row[last[k]] += score - (scores[k - 1] if k else 0.0)
        else:
            first = last[k - 1] + 1 if k else 0
            for t in range(first, last[k] + 1):
                row[t] += score / (last[k] + 1 - first)
    return row


def last_characters(response: str) -> list[int]:
    """By hand: the last non-separator character of each step (pieces with text, split at newlines)."""
    ends, start = [], 0
    for piece in response.split("\n"):
        if piece.strip():
            ends.append(start + len(piece) - 1)
        start += len(piece) + 1
    return ends


@pytest.mark.parametrize("placement", ["last", "spread", "difference"])
@pytest.mark.parametrize("aggregate", ["min", "product", "last"])
def test_placements_and_aggregates_equal_naive_loops(tokenizer, other_tokenizer, placement, aggregate):
    model = token_classifier(tokenizer)
    rewarder = build_rewarder(
        "prm", reward_model=model, tokenizer=tokenizer, device="cpu", placement=placement, aggregate=aggregate
    )
    result = rewarder.score([PROMPT] * len(RESPONSES), RESPONSES)
    policy = [other_tokenizer(r, return_offsets_mapping=True)["offset_mapping"] for r in RESPONSES]
    aligned = rewarder.score([PROMPT] * len(RESPONSES), RESPONSES, align_to=policy)
    for i, response in enumerate(RESPONSES):
        scores = result.step_scores[i]
        assert result.token_rewards(i) == pytest.approx(
            naive_rows(placement, scores, result.offsets[i], last_characters(response)), abs=1e-6
        )
        product = 1.0
        for s in scores:
            product *= s
        expected = {"min": sorted(scores)[0], "product": product, "last": scores[-1]}[aggregate]
        assert float(result.sequence_rewards[i]) == pytest.approx(expected, abs=1e-6)
        if placement != "spread":  # a step's reward lands on the policy token holding its last character
            assert aligned.token_rewards(i) == pytest.approx(
                naive_rows(placement, scores, policy[i], last_characters(response)), abs=1e-6
            )
        else:  # spread keeps each step's total on the policy tokens
            assert sum(aligned.token_rewards(i)) == pytest.approx(sum(scores), abs=1e-5)
        assert aligned.step_scores[i] == scores
    if placement == "difference":
        assert [sum(result.token_rewards(i)) for i in range(3)] == pytest.approx(
            [s[-1] for s in result.step_scores], abs=1e-6
        )


def test_step_scores_survive_batching_and_only_prm_records_carry_them(tokenizer):
    model = token_classifier(tokenizer)
    whole = build_rewarder("prm", reward_model=model, tokenizer=tokenizer, device="cpu")
    budget = build_rewarder("prm", reward_model=model, tokenizer=tokenizer, device="cpu", batch_size=1)
    budget.max_batch_tokens = 10  # one pair per batch, scored longest first, answered in order
    a, b = whole.score([PROMPT] * 3, RESPONSES), budget.score([PROMPT] * 3, RESPONSES)
    for got, expected in zip(b.records(), a.records()):
        assert got["step_scores"] == pytest.approx(expected["step_scores"], abs=1e-6)
    assert math.isclose(a.records()[0]["sequence_reward"], min(a.step_scores[0]), abs_tol=1e-6)
    from tokenreward.testing import tiny_reward_model

    sparse = build_rewarder("sparse", reward_model=tiny_reward_model("llama", tokenizer), tokenizer=tokenizer)
    assert "step_scores" not in sparse.score([PROMPT], [RESPONSES[0]]).records()[0]


def test_bad_options_and_inputs_are_one_line_errors(tokenizer, shepherd, tmp_path):
    model = token_classifier(tokenizer)
    for options, message in [
        ({"placement": "first"}, "placement must be one of last, spread, difference"),
        ({"aggregate": "mean"}, "aggregate must be one of min, product, last"),
        ({"step_separator": ""}, "step_separator must not be empty"),
        ({"model_kind": "value-head"}, "model_kind must be auto"),
    ]:
        with pytest.raises(ValueError, match=message):
            build_rewarder("prm", reward_model=model, tokenizer=tokenizer, **options)
    with pytest.raises(ValueError, match="cannot tell the PRM kind of LlamaForSequenceClassification"):
        from tokenreward.testing import tiny_reward_model

        build_rewarder("prm", reward_model=tiny_reward_model("llama", tokenizer), tokenizer=tokenizer)
    lm, shepherd_tokenizer = shepherd
    with pytest.raises(ValueError, match="good_token '17' and bad_token '-' must be two different tokens"):
        build_rewarder("prm", reward_model=lm, tokenizer=shepherd_tokenizer, good_token="17")
    tiny_causal_lm("llama", tokenizer).save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")
    with pytest.raises(ValueError, match="has no trained token-classification head"):
        build_rewarder("prm", reward_model=str(tmp_path / "lm"), model_kind="token-classification")
    rewarder = build_rewarder("prm", reward_model=model, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="response 0 has no step"):
        rewarder.score([PROMPT], ["\n\n"])
