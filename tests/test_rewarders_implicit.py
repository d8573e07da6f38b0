"""The DPO-implicit token reward and RTO's reward, against per-prefix forward passes."""

from __future__ import annotations

import pytest
import torch

from tokenreward.rewards import REWARDERS, build_rewarder, rewarder_requirements
from tokenreward.testing import tiny_causal_lm, tiny_reward_model

PROMPTS = ["What is 17 + 25?", "The capital of France is"]
RESPONSES = [" The answer is 42.", " Paris. Hello world!"]


def naive_token_logprobs(model, tokenizer, prompt: str, response: str) -> list[float]:
    """log P(token | every token before it), one forward pass per response token, for the
    tokens of prompt+response that cover response characters."""
    enc = tokenizer(prompt + response, return_offsets_mapping=True)
    ids = enc["input_ids"]
    out = []
    with torch.no_grad():
        for p, (start, end) in enumerate(enc["offset_mapping"]):
            if end > len(prompt):
                logits = model(input_ids=torch.tensor([ids[:p]])).logits[0, -1]
                out.append(float(logits.log_softmax(-1)[ids[p]]))
    return out


def test_registered_with_policy_and_reference():
    assert "implicit" in REWARDERS and "rto" in REWARDERS
    assert rewarder_requirements("implicit") == ["policy", "reference"]
    assert rewarder_requirements("rto") == ["policy", "reference", "reward_model"]


def test_implicit_is_log_ratio_per_token(arch, tokenizer):
    policy, reference = tiny_causal_lm(arch, tokenizer, seed=3), tiny_causal_lm(arch, tokenizer, seed=4)
    out = build_rewarder("implicit", policy=policy, reference=reference, tokenizer=tokenizer, device="cpu").score(
        PROMPTS, RESPONSES
    )
    for i, (prompt, response) in enumerate(zip(PROMPTS, RESPONSES)):
        expected = [
            a - b
            for a, b in zip(
                naive_token_logprobs(policy, tokenizer, prompt, response),
                naive_token_logprobs(reference, tokenizer, prompt, response),
            )
        ]
        assert out.token_rewards(i) == pytest.approx(expected, abs=1e-4)
        assert float(out.sequence_rewards[i]) == pytest.approx(sum(expected), abs=1e-4)
        assert "".join(out.tokens(i)) == response


def test_implicit_beta_scales_and_same_model_gives_zero(tokenizer):
    policy, reference = tiny_causal_lm("gpt2", tokenizer, seed=3), tiny_causal_lm("gpt2", tokenizer, seed=4)
    one = build_rewarder("implicit", policy=policy, reference=reference, tokenizer=tokenizer, device="cpu").score(
        PROMPTS, RESPONSES
    )
    half = build_rewarder(
        "implicit", policy=policy, reference=reference, tokenizer=tokenizer, beta=0.5, device="cpu"
    ).score(PROMPTS, RESPONSES)
    assert torch.allclose(half.rewards, 0.5 * one.rewards, atol=1e-6)
    same = build_rewarder("implicit", policy=policy, reference=policy, tokenizer=tokenizer, device="cpu").score(
        PROMPTS, RESPONSES
    )
    assert same.rewards.abs().max() == 0


def test_implicit_folds_template_tokens_into_last_token(tokenizer):
    """With a chat template, the log-ratio of the end-of-turn tokens belongs to the last token,
    so the rewards sum to the log-ratio of everything after the prompt."""
    from tokenreward.testing import train_tokenizer

    template = "{% for m in messages %}<bos>{{ m['role'] }}: {{ m['content'] }}<eos>{% endfor %}"
    tok = train_tokenizer(chat_template=template)
    policy, reference = tiny_causal_lm("llama", tok, seed=5), tiny_causal_lm("llama", tok, seed=6)
    prompt = [{"role": "user", "content": "What is 17 + 25?"}]
    out = build_rewarder("implicit", policy=policy, reference=reference, tokenizer=tok, device="cpu").score(
        [prompt], [" 42."]
    )
    text = tok.apply_chat_template(prompt + [{"role": "assistant", "content": " 42."}], tokenize=False)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    prompt_ids = tok(text[: text.index(" 42.")], add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        lp = [m(input_ids=torch.tensor([ids])).logits[0, :-1].log_softmax(-1) for m in (policy, reference)]
    after = range(len(prompt_ids), len(ids))
    expected = sum(float(lp[0][p - 1, ids[p]] - lp[1][p - 1, ids[p]]) for p in after)
    assert float(out.sequence_rewards[0]) == pytest.approx(expected, abs=1e-4)


def test_implicit_refuses_mismatched_vocabularies(tokenizer, other_tokenizer):
    with pytest.raises(ValueError, match="vocabularies differ"):
        build_rewarder(
            "implicit",
            policy=tiny_causal_lm("gpt2", tokenizer),
            reference=tiny_causal_lm("gpt2", other_tokenizer),
            tokenizer=tokenizer,
        )


def test_rto_clips_implicit_reward_and_adds_clipped_score(tokenizer):
    policy, reference = tiny_causal_lm("qwen2", tokenizer, seed=3), tiny_causal_lm("qwen2", tokenizer, seed=4)
    rm = tiny_reward_model("qwen2", tokenizer, seed=7)
    rto = build_rewarder(
        "rto",
        policy=policy,
        reference=reference,
        reward_model=rm,
        tokenizer=tokenizer,
        beta1=10.0,
        clip=0.3,
        reward_clip=0.2,
        device="cpu",
    )
    out = rto.score(PROMPTS, RESPONSES)
    for i, (prompt, response) in enumerate(zip(PROMPTS, RESPONSES)):
        rho = [
            a - b
            for a, b in zip(
                naive_token_logprobs(policy, tokenizer, prompt, response),
                naive_token_logprobs(reference, tokenizer, prompt, response),
            )
        ]
        enc = tokenizer(prompt + response, return_tensors="pt")
        with torch.no_grad():
            score = float(rm(**enc).logits[0, 0])  # Hugging Face's own sequence score
        expected = [min(max(10.0 * r, -0.3), 0.3) for r in rho]
        expected[-1] += min(max(score, -0.2), 0.2)
        assert out.token_rewards(i) == pytest.approx(expected, abs=1e-4)
        assert float(out.sequence_rewards[i]) == pytest.approx(score, abs=1e-4)
    assert any(abs(10.0 * r) > 0.3 for r in rho) and any(abs(10.0 * r) < 0.3 for r in rho), (
        "the test should exercise the clip"
    )
