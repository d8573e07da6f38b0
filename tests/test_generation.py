"""KV-cache generation against Hugging Face's own `generate`, per-row seeding, sampling law."""

from __future__ import annotations

import copy

import pytest
import torch

from tokenreward.generation import encode_prompt, generate, next_tokens, row_generators

PROMPTS = ["What is 17 + 25?", "The capital of France is Paris. The capital of", "Hello"]


def hf_greedy(model, tokenizer, prompts, max_new_tokens):
    tok = copy.deepcopy(tokenizer)
    tok.padding_side = "left"
    enc = tok(prompts, return_tensors="pt", padding=True)
    out = model.generate(
        **enc,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    rows = []
    for row in out[:, enc["input_ids"].shape[1] :].tolist():
        rows.append(row[: row.index(tok.eos_token_id) + 1] if tok.eos_token_id in row else row)
    return rows


def test_greedy_matches_hugging_face_generate(causal_lm, tokenizer):
    ours = generate(causal_lm, tokenizer, PROMPTS, max_new_tokens=12, do_sample=False)
    assert ours.response_ids == hf_greedy(causal_lm, tokenizer, PROMPTS, 12)
    for g in ours:
        assert "".join(g.text[s:e] for s, e in g.offsets) == g.text
        assert len(g.offsets) == len(g.response_ids)


def test_generation_stops_at_eos_like_hugging_face(causal_lm, tokenizer):
    greedy = generate(causal_lm, tokenizer, PROMPTS, max_new_tokens=12, do_sample=False)
    stopper = copy.deepcopy(tokenizer)
    # make a token that greedy decoding emits mid-way the EOS, so that rows stop early
    stopper.eos_token = tokenizer.convert_ids_to_tokens(greedy[0].response_ids[3])
    ours = generate(causal_lm, stopper, PROMPTS, max_new_tokens=12, do_sample=False)
    assert ours.response_ids == hf_greedy(causal_lm, stopper, PROMPTS, 12)
    assert ours[0].finished and len(ours[0].response_ids) <= 4
    for g in ours:
        assert g.finished == (g.response_ids[-1] == stopper.eos_token_id)
        assert g.text == stopper.decode(g.response_ids, skip_special_tokens=True)


def test_a_sample_does_not_depend_on_its_batch(tokenizer):
    from tokenreward.testing import tiny_causal_lm

    model = tiny_causal_lm("llama", tokenizer)
    together = generate(model, tokenizer, PROMPTS, max_new_tokens=10, do_sample=True, generator_seed=7)
    again = generate(model, tokenizer, PROMPTS, max_new_tokens=10, do_sample=True, generator_seed=7, batch_size=1)
    assert together.response_ids == again.response_ids
    other = generate(model, tokenizer, PROMPTS, max_new_tokens=10, do_sample=True, generator_seed=8)
    assert other.response_ids != together.response_ids


def test_gumbel_max_sampling_follows_the_tempered_top_k_softmax():
    logits = torch.tensor([2.0, 1.0, 0.5, -1.0, 0.0])
    n = 20000
    generators = row_generators(n, 3, torch.device("cpu"))
    counts = torch.bincount(next_tokens(logits.expand(n, -1), True, 0.7, 0, generators), minlength=5).float() / n
    torch.testing.assert_close(counts, torch.softmax(logits / 0.7, -1), atol=0.012, rtol=0)
    top2 = torch.bincount(next_tokens(logits.expand(n, -1), True, 1.0, 2, generators), minlength=5).float() / n
    expected = torch.zeros(5)
    expected[:2] = torch.softmax(logits[:2], -1)
    torch.testing.assert_close(top2, expected, atol=0.012, rtol=0)


def test_prompt_longer_than_the_context_is_refused(tokenizer):
    from tokenreward.testing import tiny_causal_lm

    model = tiny_causal_lm("gpt2", tokenizer)  # 128 positions
    long_prompt = "The capital of France is Paris. " * 30
    assert len(encode_prompt(tokenizer, long_prompt)) > 128
    with pytest.raises(
        ValueError, match=r"prompt 1 is \d+ tokens; with 8 new tokens it exceeds the policy's context of 128"
    ):
        generate(model, tokenizer, ["Hello", long_prompt], max_new_tokens=8, do_sample=False)
