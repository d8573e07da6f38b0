"""The world's shrinking-batch sampler against `tokenreward.generation` (the same Gumbel-max
law and per-row seeds, a batch that never shrinks) and against cache-free greedy decoding."""

from __future__ import annotations

import functools

import torch

from tokenreward.generation import encode_prompt, generate
from tokenreward.worldbuild.sampling import sample_ids

PROMPTS = [
    "What is 17 + 25?",
    "The capital of France is Paris. The capital of",
    "Hello",
    "Tell me one fact about owls.",
]


def strip_eos(rows, eos_id):
    return [row[:-1] if row and row[-1] == eos_id else row for row in rows]


def test_sampled_rows_equal_the_full_batch_generator(causal_lm, tokenizer):
    ids = [encode_prompt(tokenizer, p) for p in PROMPTS]
    seeds = [(7, i) for i in range(len(ids))]
    ours = sample_ids(causal_lm, ids, tokenizer.eos_token_id, tokenizer.pad_token_id, 24, greedy=False, seeds=seeds)
    theirs = generate(causal_lm, tokenizer, PROMPTS, max_new_tokens=24, do_sample=True, generator_seed=seeds)
    assert ours == strip_eos(theirs.response_ids, tokenizer.eos_token_id)
    one_by_one = [
        sample_ids(causal_lm, [row], tokenizer.eos_token_id, tokenizer.pad_token_id, 24, False, [seed])[0]
        for row, seed in zip(ids, seeds)
    ]
    assert one_by_one == ours


def test_greedy_rows_equal_decoding_without_a_cache(causal_lm, tokenizer):
    eos = tokenizer.eos_token_id
    ids = [encode_prompt(tokenizer, p) for p in PROMPTS]
    ours = sample_ids(causal_lm, ids, eos, tokenizer.pad_token_id, 10, greedy=True)
    causal_lm.eval()
    for row, got in zip(ids, ours):
        sequence, expected = list(row), []
        with torch.no_grad():
            for _ in range(10):
                token = int(causal_lm(input_ids=torch.tensor([sequence])).logits[0, -1].argmax())
                if token == eos:
                    break
                expected.append(token)
                sequence.append(token)
        assert got == expected


def test_finished_rows_leave_the_batch(causal_lm, tokenizer):
    """A row that ends early stops being decoded: the forward passes see fewer rows."""
    eos = tokenizer.eos_token_id
    ids = [encode_prompt(tokenizer, p) for p in PROMPTS]
    with torch.no_grad():
        causal_lm.eval()
        first = [int(causal_lm(input_ids=torch.tensor([row])).logits[0, -1].argmax()) for row in ids]
    # make the first prompt's greedy first token the EOS by biasing that token's logit
    rows_seen = []
    original = causal_lm.forward

    @functools.wraps(original)  # keeps the forward's signature (the cache argument's name is read from it)
    def counting(*args, **kwargs):
        rows_seen.append(kwargs["input_ids"].shape[0])
        out = original(*args, **kwargs)
        if len(rows_seen) == 1:
            out.logits[0, -1, eos] = out.logits[0, -1].max() + 1.0
        return out

    causal_lm.forward = counting
    try:
        ours = sample_ids(causal_lm, ids, eos, tokenizer.pad_token_id, 5, greedy=True)
    finally:
        causal_lm.forward = original
    assert ours[0] == [] and first[1:] == [r[0] if r else eos for r in ours[1:]]
    assert rows_seen[0] == len(ids) and all(n <= len(ids) - 1 for n in rows_seen[1:])
