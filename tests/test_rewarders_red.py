"""RED against Hugging Face's own pooled score of every prefix, re-run separately."""

from __future__ import annotations

import re

import pytest
import torch

from tokenreward import build_rewarder
from tokenreward.align import offsets_from_ids
from tokenreward.testing import tiny_causal_lm, tiny_config, tiny_reward_model, train_tokenizer

PROMPTS = ["What is 17 + 25?", "Name a capital city."]
RESPONSES = [" The answer is 42.", " The capital of France is Paris, hello world!"]
CHAT_TEMPLATE = "{% for m in messages %}<bos>{{ m['role'] }}: {{ m['content'] }}<eos>{% endfor %}"


def hf_score(model, ids: list[int]) -> float:
    """The model's own pooled score of one unpadded sequence."""
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0, 0].item()


def response_token_ends(tokenizer, text: str, start: int) -> tuple[list[int], list[int]]:
    """All input ids of `text`, and the positions of the tokens ending inside the response."""
    enc = tokenizer(text, return_offsets_mapping=True)
    return enc["input_ids"], [p for p, (s, e) in enumerate(enc["offset_mapping"]) if e > start]


def red(model, tokenizer, **options):
    return build_rewarder("red", reward_model=model, tokenizer=tokenizer, device="cpu", **options)


def test_red_equals_differences_of_prefix_scores(reward_model, tokenizer):
    out = red(reward_model, tokenizer).score(PROMPTS, RESPONSES)
    for i, (prompt, response) in enumerate(zip(PROMPTS, RESPONSES)):
        ids, positions = response_token_ends(tokenizer, prompt + response, len(prompt))
        prefix = [hf_score(reward_model, ids[: p + 1]) for p in positions]
        s0 = hf_score(reward_model, ids[: positions[0]])
        expected = torch.tensor(prefix) - torch.tensor([s0] + prefix[:-1])
        got = torch.tensor(out.token_rewards(i))
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
        assert out.sequence_rewards[i].item() == pytest.approx(hf_score(reward_model, ids), abs=1e-5)
        assert "".join(out.tokens(i)) == response
        assert got.sum().item() == pytest.approx(prefix[-1] - s0, abs=1e-4)


def test_keep_sum_and_beta_c(reward_model, tokenizer):
    plain = red(reward_model, tokenizer).score(PROMPTS, RESPONSES)
    kept = red(reward_model, tokenizer, keep_sum=True).score(PROMPTS, RESPONSES)
    mixed = red(reward_model, tokenizer, beta_c=0.3, keep_sum=True).score(PROMPTS, RESPONSES)
    for i, (prompt, response) in enumerate(zip(PROMPTS, RESPONSES)):
        ids, positions = response_token_ends(tokenizer, prompt + response, len(prompt))
        full, s0 = hf_score(reward_model, ids), hf_score(reward_model, ids[: positions[0]])
        assert sum(kept.token_rewards(i)) == pytest.approx(full, abs=1e-4)
        assert sum(mixed.token_rewards(i)) == pytest.approx(full, abs=1e-4)
        # Eq. 7 with the s_0 correction on the last token: 0.3 r~ + 0.7 R [t=T] + 0.3 s_0 [t=T]
        expected = 0.3 * torch.tensor(plain.token_rewards(i))
        expected[-1] += 0.7 * full + 0.3 * s0
        torch.testing.assert_close(torch.tensor(mixed.token_rewards(i)), expected, atol=1e-4, rtol=0)


def test_beta_c_zero_is_sparse(tokenizer):
    model = tiny_reward_model("gpt2", tokenizer)
    out = red(model, tokenizer, beta_c=0.0).score(PROMPTS, RESPONSES)
    for i, (prompt, response) in enumerate(zip(PROMPTS, RESPONSES)):
        row = out.token_rewards(i)
        assert row[:-1] == [0.0] * (len(row) - 1)
        assert row[-1] == pytest.approx(hf_score(model, tokenizer(prompt + response)["input_ids"]), abs=1e-5)


def test_mini_batches_and_padding_do_not_change_rewards(tokenizer):
    model = tiny_reward_model("llama", tokenizer)
    prompts, responses = PROMPTS * 3, [r[: 8 + 5 * k] for k, r in enumerate(RESPONSES * 3)]
    together = red(model, tokenizer, batch_size=8).score(prompts, responses)
    one_by_one = red(model, tokenizer, batch_size=1).score(prompts, responses)
    torch.testing.assert_close(together.rewards, one_by_one.rewards, atol=1e-5, rtol=0)
    assert torch.equal(together.mask, one_by_one.mask)


def test_policy_tokenizer_mismatch_keeps_sum(tokenizer, other_tokenizer):
    """Policy tokens (another vocabulary, EOS included) get score differences at RM boundaries."""
    model = tiny_reward_model("qwen2", tokenizer)
    policy_offsets = []
    for response in RESPONSES:
        ids = other_tokenizer(response)["input_ids"] + [other_tokenizer.eos_token_id]
        text, offsets = offsets_from_ids(other_tokenizer, ids)
        assert text == response
        policy_offsets.append(offsets)
    out = red(model, tokenizer, keep_sum=True).score(PROMPTS, RESPONSES, align_to=policy_offsets)
    for i, (prompt, response) in enumerate(zip(PROMPTS, RESPONSES)):
        enc = tokenizer(prompt + response, return_offsets_mapping=True)
        ids = enc["input_ids"]
        rm_ends = {e - len(prompt): p for p, (s, e) in enumerate(enc["offset_mapping"]) if e > len(prompt)}
        first = min(rm_ends.values())

        def score_at(char_end: int) -> float:
            """Prefix score at the last RM boundary at or before `char_end` (s_0 before any)."""
            inside = [p for e, p in rm_ends.items() if e <= char_end]
            return hf_score(model, ids[: max(inside) + 1] if inside else ids[:first])

        expected = [
            score_at(e) - score_at(s if k == 0 else policy_offsets[i][k - 1][1])
            for k, (s, e) in enumerate(policy_offsets[i])
        ]
        # keep_sum puts s_0 back on the last RM token, which lands on the first policy token reaching the end
        # (before the policy's EOS, whose span is empty and gets 0)
        expected[next(k for k, (_, e) in enumerate(policy_offsets[i]) if e == len(response))] += score_at(0)
        assert expected[-1] == 0.0
        assert out.offsets[i] == policy_offsets[i]
        torch.testing.assert_close(torch.tensor(out.token_rewards(i)), torch.tensor(expected), atol=1e-4, rtol=0)
        assert sum(out.token_rewards(i)) == pytest.approx(hf_score(model, ids), abs=1e-4)


def test_coarser_policy_tokens_sum_their_rm_tokens(tokenizer):
    model = tiny_reward_model("gpt2", tokenizer)
    words = [[(m.start(), m.end()) for m in re.finditer(r"\s*\S+", r)] for r in RESPONSES]
    fine = red(model, tokenizer).score(PROMPTS, RESPONSES)
    coarse = red(model, tokenizer).score(PROMPTS, RESPONSES, align_to=words)
    for i in range(len(RESPONSES)):
        naive = [
            sum(r for (_, e), r in zip(fine.offsets[i], fine.token_rewards(i)) if s < e <= t) for s, t in words[i]
        ]
        torch.testing.assert_close(torch.tensor(coarse.token_rewards(i)), torch.tensor(naive), atol=1e-5, rtol=0)


def test_conversational_prompt_with_chat_template():
    tokenizer = train_tokenizer(chat_template=CHAT_TEMPLATE)
    model = tiny_reward_model("llama", tokenizer)
    prompt = [{"role": "user", "content": "What is 17 + 25?"}]
    response = " The answer is 42."
    out = red(model, tokenizer, keep_sum=True).score([prompt], [[{"role": "assistant", "content": response}]])
    before = "<bos>user: What is 17 + 25?<eos><bos>assistant: "
    text = before + response + "<eos>"
    enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    ids = enc["input_ids"]
    ends = [p for p, (s, e) in enumerate(enc["offset_mapping"]) if len(before) < e <= len(before) + len(response)]
    prefix = [hf_score(model, ids[: p + 1]) for p in ends[:-1]] + [hf_score(model, ids)]  # <eos> joins the last token
    s0 = hf_score(model, ids[: ends[0]])
    expected = torch.tensor(prefix) - torch.tensor([s0] + prefix[:-1])
    expected[-1] += s0
    assert "".join(out.tokens(0)) == response
    torch.testing.assert_close(torch.tensor(out.token_rewards(0)), expected, atol=1e-4, rtol=0)
    assert out.sequence_rewards[0].item() == pytest.approx(hf_score(model, ids), abs=1e-5)


def test_cost_model_combination(tokenizer, other_tokenizer):
    reward = tiny_reward_model("gpt2", tokenizer, seed=1)
    cost = tiny_reward_model("llama", tokenizer, seed=2)
    both = build_rewarder(
        "red", reward_model=reward, tokenizer=tokenizer, cost_model=cost, cost_tokenizer=tokenizer, device="cpu"
    )
    r = red(reward, tokenizer).score(PROMPTS, RESPONSES)
    c = red(cost, tokenizer).score(PROMPTS, RESPONSES)
    out = both.score(PROMPTS, RESPONSES)
    torch.testing.assert_close(out.rewards, 0.5 * (r.rewards - c.rewards), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.sequence_rewards, 0.5 * (r.sequence_rewards - c.sequence_rewards))


# ---- bad input: each a clear error naming the problem ----


def test_empty_response_is_refused(tokenizer):
    with pytest.raises(ValueError, match="response 1 is empty"):
        red(tiny_reward_model("gpt2", tokenizer), tokenizer).score(PROMPTS, [RESPONSES[0], ""])


def test_response_longer_than_context(tokenizer):
    model = tiny_reward_model("gpt2", tokenizer)  # 128 positions
    with pytest.raises(ValueError, match="longer than the model's context of 128"):
        red(model, tokenizer).score(["Q:"], [" hello world" * 30])


def test_models_without_scalar_head(tokenizer, tmp_path):
    from transformers import AutoModelForSequenceClassification

    two_way = AutoModelForSequenceClassification.from_config(tiny_config("llama", len(tokenizer), 0, num_labels=2))
    with pytest.raises(ValueError, match="2-way head"):
        red(two_way, tokenizer)
    lm = tiny_causal_lm("gpt2", tokenizer)
    with pytest.raises(ValueError, match="no scalar score head"):
        red(lm, tokenizer)
    lm.save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")
    with pytest.raises(ValueError, match="GPT2LMHeadModel checkpoint without a trained score head"):
        build_rewarder("red", reward_model=str(tmp_path / "lm"), device="cpu")


def test_missing_pad_token(tokenizer):
    model = tiny_reward_model("qwen2", tokenizer)
    no_pad = train_tokenizer()
    no_pad.pad_token = None
    with pytest.raises(ValueError, match="tokenizer has no pad token"):
        red(model, no_pad).score(PROMPTS, RESPONSES)
    model.config.pad_token_id = None
    with pytest.raises(ValueError, match="no pad_token_id"):
        red(model, tokenizer)


def test_tokenizer_without_offsets(tokenizer):
    from transformers import ByT5Tokenizer

    with pytest.raises(ValueError, match="gives no character offsets"):
        red(tiny_reward_model("gpt2", tokenizer), ByT5Tokenizer()).score(PROMPTS, RESPONSES)


def test_offsets_that_cannot_be_aligned(tokenizer):
    rewarder = red(tiny_reward_model("gpt2", tokenizer), tokenizer)
    backwards = [[(0, 10), (10, 18), (5, 8)]]
    with pytest.raises(ValueError, match="before the previous token's end"):
        rewarder.score(PROMPTS[:1], RESPONSES[:1], align_to=backwards)
    short = [[(0, 4), (4, 10)]]
    with pytest.raises(ValueError, match="do not cover the same text"):
        rewarder.score(PROMPTS[:1], RESPONSES[:1], align_to=short)


def test_tokenizer_of_another_model(tokenizer, other_tokenizer):
    model = tiny_reward_model("gpt2", other_tokenizer)  # 270 ids; `tokenizer` has 300
    with pytest.raises(ValueError, match="outside the reward model's vocabulary"):
        red(model, tokenizer).score(["Hello"], [" world ü"])


def test_non_causal_model_is_refused(tokenizer):
    from transformers import BertConfig, BertForSequenceClassification

    cfg = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=1,
        pad_token_id=0,
    )
    with pytest.raises(ValueError, match="not causal"):
        red(BertForSequenceClassification(cfg).eval(), tokenizer)


def test_nan_reward_is_refused(tokenizer):
    model = tiny_reward_model("llama", tokenizer)
    with torch.no_grad():
        model.get_input_embeddings().weight[tokenizer.convert_tokens_to_ids("!")] = float("nan")
    with pytest.raises(FloatingPointError, match=r"reward nan \(not finite\) at response 1"):
        red(model, tokenizer).score(PROMPTS, RESPONSES)  # only the second response has a "!"
    with torch.no_grad():
        model.get_input_embeddings().weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="non-finite hidden states"):
        red(model, tokenizer)
