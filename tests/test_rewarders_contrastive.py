"""T-REG's contrastive token reward against per-prefix forward passes, and its dataset cache."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tokenreward.rewards import REWARDERS, build_rewarder, rewarder_requirements
from tokenreward.testing import tiny_causal_lm

BETTER = "Improve: {prompt}{response}\nBetter:"
WORSE = "Worsen: {prompt}{response}\nWorse:"
PROMPTS = ["What is 17 + 25?", "The capital of France is"]
RESPONSES = [" The answer is 42.", " Paris."]


def naive_response_logprobs(model, tokenizer, context: str, response: str) -> list[float]:
    """log P(token | tokens before it) for the tokens of context+response covering the response."""
    enc = tokenizer(context + response, return_offsets_mapping=True)
    ids, out = enc["input_ids"], []
    with torch.no_grad():
        for p, (_, end) in enumerate(enc["offset_mapping"]):
            if end > len(context):
                out.append(float(model(input_ids=torch.tensor([ids[:p]])).logits[0, -1].log_softmax(-1)[ids[p]]))
    return out


def test_registered_with_reference():
    assert "contrastive" in REWARDERS
    assert rewarder_requirements("contrastive") == ["reference"]


def test_contrastive_reward_matches_two_prompted_passes(arch, tokenizer):
    model = tiny_causal_lm(arch, tokenizer, seed=11)
    out = build_rewarder(
        "contrastive", reference=model, tokenizer=tokenizer, better_template=BETTER, worse_template=WORSE, device="cpu"
    ).score(PROMPTS, RESPONSES)
    for i, (prompt, response) in enumerate(zip(PROMPTS, RESPONSES)):
        better = naive_response_logprobs(model, tokenizer, BETTER.format(prompt=prompt, response=response), response)
        worse = naive_response_logprobs(model, tokenizer, WORSE.format(prompt=prompt, response=response), response)
        expected = [1 / (1 + math.exp(-(b - w))) - 0.5 for b, w in zip(better, worse)]
        assert out.token_rewards(i) == pytest.approx(expected, abs=1e-5)
        assert float(out.sequence_rewards[i]) == pytest.approx(sum(expected), abs=1e-4)
        assert "".join(out.tokens(i)) == response
    assert out.rewards[out.mask].abs().max() < 0.5
    assert out.rewards[out.mask].abs().max() > 1e-4  # the two prompts do give different log-probs


def test_identical_templates_give_zero(tokenizer):
    model = tiny_causal_lm("gpt2", tokenizer, seed=11)
    out = build_rewarder(
        "contrastive", reference=model, tokenizer=tokenizer, better_template=BETTER, worse_template=BETTER
    ).score(PROMPTS, RESPONSES)
    assert out.rewards.abs().max() == 0


def test_default_templates_are_the_worlds_and_need_placeholders(tokenizer):
    from tokenreward.rewarders.contrastive import revision_templates

    world = pytest.importorskip("tokenreward.world.generate")
    assert revision_templates() == (world.REVISION_BETTER, world.REVISION_WORSE)
    with pytest.raises(ValueError, match=r"\{response\}"):
        build_rewarder(
            "contrastive",
            reference=tiny_causal_lm("gpt2", tokenizer),
            tokenizer=tokenizer,
            better_template="Better: {prompt}",
        )


def test_conversational_prompt_becomes_one_user_turn(tokenizer):
    from tokenreward.rewarders.contrastive import wrap

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}]
    assert wrap(BETTER, messages, " Paris.") == [
        {"role": "user", "content": "Improve: system: Be brief.\nuser: Capital of France? Paris.\nBetter:"}
    ]


def test_dataset_rewards_computed_once_and_cached_next_to_data(tmp_path, tokenizer, monkeypatch):
    """The trainer's path: one pass over the pairs, JSONL next to the data, re-read without a model."""
    import tokenreward.preference_data as preference_data

    model_dir = tmp_path / "reference"
    tiny_causal_lm("llama", tokenizer, seed=12).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    rows = [{"prompt": p, "chosen": c, "rejected": " No."} for p, c in zip(PROMPTS, RESPONSES)]
    data = preference_data.prepare_preference_data(rows, tokenizer, "pairs")
    resources = {"reference": str(model_dir), "better_template": BETTER, "worse_template": WORSE}
    cache = (
        tmp_path
        / f"pairs.jsonl.contrastive-{preference_data.token_rewards_fingerprint('contrastive', resources, data)}.jsonl"
    )
    chosen, rejected, unscored = preference_data.pair_token_rewards(
        "contrastive", resources, data, cache, progress=False
    )
    assert unscored == []
    stored = [json.loads(line) for line in cache.read_text().splitlines()]
    assert len(stored) == 2 and stored[0]["chosen"]["rewarder"] == "contrastive"

    direct = build_rewarder("contrastive", **resources).score(PROMPTS, RESPONSES)
    for i in range(2):
        # same tokenizer: the rewards sit on the response tokens; the trailing EOS position gets 0
        assert chosen[i][:-1].tolist() == pytest.approx(direct.token_rewards(i), abs=1e-6)
        assert float(chosen[i][-1]) == 0.0
        assert data.chosen[i].input_ids[-1] == tokenizer.eos_token_id

    def no_model(*args, **kwargs):
        raise AssertionError("the cache should be read without building the rewarder")

    monkeypatch.setattr(preference_data, "build_rewarder", no_model)
    again = preference_data.pair_token_rewards("contrastive", resources, data, cache, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(again[0] + again[1], chosen + rejected))


def test_long_response_is_cut_in_the_revision_prompt_only(tokenizer):
    """Over the context (128 here) the copy inside the revision prompts is shortened to the
    longest prefix that fits both; the scored response keeps all its tokens."""
    model = tiny_causal_lm("gpt2", tokenizer, seed=12)
    rewarder = build_rewarder(
        "contrastive", reference=model, tokenizer=tokenizer, better_template=BETTER, worse_template=WORSE
    )
    prompt, text = PROMPTS[0], " No." + " Hello world!" * 8
    assert len(tokenizer(BETTER.format(prompt=prompt, response=text) + text)["input_ids"]) > 128
    out = rewarder.score([prompt], [text])
    k = rewarder.copy_length(prompt, text, 128)
    fits = [
        max(len(tokenizer(t.format(prompt=prompt, response=text[:n]) + text)["input_ids"]) for t in (BETTER, WORSE))
        <= 128
        for n in (k, k + 1)
    ]
    assert 0 < k < len(text) and fits == [True, False]
    better = naive_response_logprobs(model, tokenizer, BETTER.format(prompt=prompt, response=text[:k]), text)
    worse = naive_response_logprobs(model, tokenizer, WORSE.format(prompt=prompt, response=text[:k]), text)
    assert out.token_rewards(0) == pytest.approx(
        [1 / (1 + math.exp(w - b)) - 0.5 for b, w in zip(better, worse)], abs=1e-5
    )


def test_responses_a_rewarder_cannot_score_get_zero_and_are_reported(tmp_path, tokenizer):
    import tokenreward.preference_data as preference_data

    model = tiny_causal_lm("gpt2", tokenizer, seed=12)  # 128 positions
    rows = [{"prompt": PROMPTS[0], "chosen": RESPONSES[0], "rejected": " No." + " Hello world!" * 12}]
    data = preference_data.prepare_preference_data(rows, tokenizer, "pairs")
    resources = {"reference": model, "tokenizer": tokenizer, "better_template": BETTER, "worse_template": WORSE}
    chosen, rejected, unscored = preference_data.pair_token_rewards("contrastive", resources, data, progress=False)
    assert [(u["row"], u["side"]) for u in unscored] == [(0, "rejected")]
    assert "even without its copy of the response" in unscored[0]["reason"]
    assert rejected[0].abs().max() == 0 and chosen[0].abs().max() > 0
