"""RED on ten causal architectures against Hugging Face's own pooled score of every prefix,
in left- and right-padded batches; a model whose pooled score is not its head's is refused;
a bf16 reward model's token rewards come from a float32 head."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tokenreward import build_rewarder
from tokenreward.encoding import encode_pairs
from tokenreward.models import prefix_scores
from tokenreward.testing import TINY_ARCHITECTURES, tiny_reward_model, train_tokenizer

PROMPTS = ["What is 17 + 25?", "Name a capital city.", "Say hi."]
RESPONSES = [" The answer is 42.", " The capital of France is Paris, hello world!", " Hello!"]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer()


def hf_score(model, ids: list[int]) -> float:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0, 0].item()


@pytest.mark.parametrize("arch", list(TINY_ARCHITECTURES))
def test_red_equals_per_prefix_rescoring(arch, tokenizer):
    model = tiny_reward_model(arch, tokenizer)
    out = build_rewarder("red", reward_model=model, tokenizer=tokenizer, device="cpu").score(PROMPTS, RESPONSES)
    for i, (prompt, response) in enumerate(zip(PROMPTS, RESPONSES)):
        enc = tokenizer(prompt + response, return_offsets_mapping=True)
        ids = enc["input_ids"]
        ends = [p for p, (_, e) in enumerate(enc["offset_mapping"]) if e > len(prompt)]
        prefix = [hf_score(model, ids[: p + 1]) for p in ends]
        s0 = hf_score(model, ids[: ends[0]])
        expected = torch.tensor(prefix) - torch.tensor([s0] + prefix[:-1])
        torch.testing.assert_close(torch.tensor(out.token_rewards(i)), expected, atol=1e-4, rtol=0)
        assert out.sequence_rewards[i].item() == pytest.approx(hf_score(model, ids), abs=1e-4)


@pytest.mark.parametrize("arch", list(TINY_ARCHITECTURES))
def test_prefix_scores_of_a_left_padded_batch(arch, tokenizer):
    """Left padding: every real position of every row scores its own prefix."""
    model = tiny_reward_model(arch, tokenizer)
    rows = [tokenizer(p + r)["input_ids"] for p, r in zip(PROMPTS, RESPONSES)]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :], mask[i, width - len(r) :] = torch.tensor(r), 1
    with torch.no_grad():
        scores = prefix_scores(model, ids, mask)
    for i, r in enumerate(rows):
        got = scores[i, width - len(r) :]
        expected = torch.tensor([hf_score(model, r[: p + 1]) for p in range(len(r))])
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


class PooledElsewhere(nn.Module):
    """A sequence classifier whose pooled score is NOT its score module at the last token
    (it scores the mean of the hidden states), as a custom architecture might."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.config = inner, inner.config
        self.score = inner.score

    @property
    def base_model(self):
        return self.inner.base_model

    def get_input_embeddings(self):
        return self.inner.get_input_embeddings()

    def forward(self, input_ids, attention_mask, **kwargs):
        hidden = self.inner.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        per_position = self.score(hidden)
        pooled = per_position.mean(1)

        class Out:
            logits = pooled

        return Out()


def test_a_model_whose_pooled_score_is_not_its_head_is_refused(tokenizer):
    model = PooledElsewhere(tiny_reward_model("llama", tokenizer))
    rewarder = build_rewarder("red", reward_model=model, tokenizer=tokenizer, device="cpu")
    with pytest.raises(
        ValueError, match="PooledElsewhere: its pooled score is not its score head's output at the last token"
    ):
        rewarder.score(PROMPTS, RESPONSES)


def test_bf16_reward_model_rewards_are_float32_head_differences(tokenizer):
    model = tiny_reward_model("llama", tokenizer)
    with torch.no_grad():
        model.score.bias = None
        model.score.weight.mul_(4.0)  # scores of order 10, where bf16's step is 0.06
    model = model.to(torch.bfloat16)
    out = build_rewarder("red", reward_model=model, tokenizer=tokenizer, device="cpu", keep_sum=True).score(
        PROMPTS, RESPONSES
    )
    enc = encode_pairs(tokenizer, PROMPTS, RESPONSES, 128, pad_token_id=tokenizer.pad_token_id)
    with torch.no_grad():
        hidden = model.base_model(input_ids=enc.input_ids, attention_mask=enc.attention_mask).last_hidden_state
        exact = hidden.float() @ model.score.weight.float().t()  # the float32 head on the same bf16 hidden states
    largest_gap, bf16_gap = 0.0, 0.0
    for i in range(len(PROMPTS)):
        s = exact[i, :, 0].double()
        ends, start = enc.token_ends(i), enc.prompt_end(i)
        before = torch.cat([s[start].reshape(1), s[ends][:-1]])
        diffs = s[ends] - before
        expected = diffs.clone()
        expected[-1] += s[start]  # keep_sum
        got = torch.tensor(out.token_rewards(i), dtype=torch.float64)
        largest_gap = max(largest_gap, float((got - expected).abs().max()))
        assert got.sum().item() == pytest.approx(
            s[enc.last_positions[i]].item(), abs=1e-5
        )  # the sum identity in float32
        bf16_head_diffs = s[ends].bfloat16().double() - before.bfloat16().double()  # what a bf16 head would give
        bf16_gap = max(bf16_gap, float((bf16_head_diffs - diffs).abs().max()))
    assert largest_gap < 1e-3
    assert bf16_gap > 1e-2  # the test would catch a bf16 head
    assert exact.abs().max() > 4.0
