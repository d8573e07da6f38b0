"""`sparse` and `uniform` against the model's own score of each unpadded pair."""

from __future__ import annotations

import pytest
import torch

from tokenreward import build_rewarder

PROMPTS = ["What is 17 + 25?", "Name a capital city.", "Hi"]
RESPONSES = [" The answer is 42.", " The capital of France is Paris, hello world!", " Hello!"]


def own_scores(model, tokenizer) -> list[float]:
    with torch.no_grad():
        return [
            model(input_ids=torch.tensor([tokenizer(p + r)["input_ids"]])).logits[0, 0].item()
            for p, r in zip(PROMPTS, RESPONSES)
        ]


def test_sparse_puts_the_score_on_the_last_token(reward_model, tokenizer):
    out = build_rewarder("sparse", reward_model=reward_model, tokenizer=tokenizer, device="cpu").score(
        PROMPTS, RESPONSES
    )
    for i, score in enumerate(own_scores(reward_model, tokenizer)):
        row = out.token_rewards(i)
        assert len(row) == len(
            tokenizer(RESPONSES[i])["input_ids"]
        )  # the tiny tokenizer splits prompt|response cleanly
        assert row[:-1] == [0.0] * (len(row) - 1)
        assert row[-1] == pytest.approx(score, abs=1e-5)
        assert out.sequence_rewards[i].item() == pytest.approx(score, abs=1e-5)


def test_uniform_spreads_the_score(reward_model, tokenizer):
    out = build_rewarder("uniform", reward_model=reward_model, tokenizer=tokenizer, device="cpu").score(
        PROMPTS, RESPONSES
    )
    for i, score in enumerate(own_scores(reward_model, tokenizer)):
        row = torch.tensor(out.token_rewards(i))
        torch.testing.assert_close(row, torch.full_like(row, score / len(row)), atol=1e-6, rtol=1e-5)


def test_sparse_on_policy_tokens_lands_on_the_last_real_token(reward_model, tokenizer):
    words = [[(0, 4), (4, len(RESPONSES[0])), (len(RESPONSES[0]), len(RESPONSES[0]))]]  # last: an EOS, empty span
    out = build_rewarder("sparse", reward_model=reward_model, tokenizer=tokenizer, device="cpu").score(
        PROMPTS[:1], RESPONSES[:1], align_to=words
    )
    assert out.token_rewards(0) == pytest.approx([0.0, own_scores(reward_model, tokenizer)[0], 0.0], abs=1e-5)
