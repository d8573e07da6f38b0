"""ABC against the final-token attention row computed from Hugging Face's `output_attentions`."""

from __future__ import annotations

import pytest
import torch

from tokenreward import build_rewarder
from tokenreward.testing import tiny_reward_model, train_tokenizer

PROMPTS = ["What is 17 + 25?", "Name a capital city."]
RESPONSES = [" The answer is 42.", " The capital of France is Paris, hello world!"]


def expected_abc(model, ids: list[int], positions: list[int], beta: float) -> tuple[torch.Tensor, float]:
    """Naive ABC of one unpadded sequence: eager attention, last layer, mean over heads, last row."""
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), output_attentions=True)
    score = out.logits[0, 0].item()
    row = out.attentions[-1][0].mean(dim=0)[len(ids) - 1]
    share = torch.tensor([row[p].item() for p in positions])
    share = share / share.sum()
    rewards = beta * share * score
    rewards[-1] += (1 - beta) * score
    return rewards, score


def test_abc_follows_final_token_attention(reward_model, tokenizer):
    reward_model.set_attn_implementation("eager")
    out = build_rewarder("abc", reward_model=reward_model, tokenizer=tokenizer, device="cpu").score(PROMPTS, RESPONSES)
    for i, (prompt, response) in enumerate(zip(PROMPTS, RESPONSES)):
        enc = tokenizer(prompt + response, return_offsets_mapping=True)
        positions = [p for p, (_, e) in enumerate(enc["offset_mapping"]) if e > len(prompt)]
        expected, score = expected_abc(reward_model, enc["input_ids"], positions, 0.8)
        got = torch.tensor(out.token_rewards(i))
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
        assert got.sum().item() == pytest.approx(score, abs=1e-5)
        assert out.sequence_rewards[i].item() == pytest.approx(score, abs=1e-5)


def test_beta_one_is_proportional_to_attention(tokenizer):
    model = tiny_reward_model("qwen2", tokenizer).eval()
    model.set_attn_implementation("eager")
    out = build_rewarder("abc", reward_model=model, tokenizer=tokenizer, beta=1.0, device="cpu").score(
        PROMPTS[:1], RESPONSES[:1]
    )
    enc = tokenizer(PROMPTS[0] + RESPONSES[0], return_offsets_mapping=True)
    positions = [p for p, (_, e) in enumerate(enc["offset_mapping"]) if e > len(PROMPTS[0])]
    expected, score = expected_abc(model, enc["input_ids"], positions, 1.0)
    got = torch.tensor(out.token_rewards(0))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    assert torch.equal(torch.argsort(got / score), torch.argsort(expected / score))


def test_template_tokens_after_the_response_get_no_column():
    tokenizer = train_tokenizer(chat_template="{% for m in messages %}{{ m['content'] }}<eos>{% endfor %}")
    model = tiny_reward_model("llama", tokenizer)
    out = build_rewarder("abc", reward_model=model, tokenizer=tokenizer, device="cpu").score(
        [[{"role": "user", "content": "Q?"}]], [" yes, 42"]
    )
    enc = tokenizer("Q?<eos> yes, 42<eos>", return_offsets_mapping=True, add_special_tokens=False)
    ids = enc["input_ids"]
    positions = [
        p for p, (s, e) in enumerate(enc["offset_mapping"]) if s >= len("Q?<eos>") and e <= len("Q?<eos> yes, 42")
    ]
    assert positions[-1] == len(ids) - 2  # the final <eos> is where the score is read, not a response column
    expected, score = expected_abc(model, ids, positions, 0.8)
    torch.testing.assert_close(torch.tensor(out.token_rewards(0)), expected, atol=1e-5, rtol=1e-4)
    assert "".join(out.tokens(0)) == " yes, 42"


def test_beta_out_of_range(tokenizer):
    with pytest.raises(ValueError, match="beta must lie in"):
        build_rewarder("abc", reward_model=tiny_reward_model("gpt2", tokenizer), tokenizer=tokenizer, beta=1.5)
