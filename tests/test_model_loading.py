"""Loading options (dtype, device, token-budget batches) and their command-line flags."""

from __future__ import annotations

import pytest
import torch

from tokenreward import build_rewarder
from tokenreward.cli import main
from tokenreward.models import ModelLoading, resolve_device
from tokenreward.testing import tiny_reward_model, train_tokenizer

PROMPTS = ["Q: hi.", "What is 17 + 25?", "Name a capital city.", "Say hello."]
RESPONSES = [" The answer is 42 and the capital of France is Paris.", " 42.", " Paris, hello world!", " Hello!"]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer()


def test_cuda_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="device=cuda: CUDA is not available on this machine"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="device=gpu0: not a torch device"):
        ModelLoading(device="gpu0")


def test_score_command_refuses_cuda_without_cuda(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = main(
        [
            "score",
            "--rewarder",
            "uniform",
            "--reward-model",
            "x",
            "--prompt",
            "a",
            "--response",
            "b",
            "--device",
            "cuda",
        ]
    )
    assert code == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_dtype_option_casts_a_loaded_model(tokenizer):
    loading = ModelLoading(dtype="bfloat16", device="cpu")
    rewarder = build_rewarder(
        "red", reward_model=tiny_reward_model("llama", tokenizer), tokenizer=tokenizer, loading=loading
    )
    assert next(rewarder.model.parameters()).dtype == torch.bfloat16
    assert rewarder.score(PROMPTS, RESPONSES).rewards.dtype == torch.float32


def test_token_budget_batches_are_length_sorted_and_give_the_same_rewards(tokenizer):
    model = tiny_reward_model("gpt2", tokenizer)
    plain = build_rewarder("red", reward_model=model, tokenizer=tokenizer, device="cpu", batch_size=8)
    budget = build_rewarder(
        "red",
        reward_model=model,
        tokenizer=tokenizer,
        batch_size=8,
        loading=ModelLoading(device="cpu", max_batch_tokens=40),
    )
    lengths = [budget.input_length(p, r) for p, r in zip(PROMPTS, RESPONSES)]
    groups = budget.batches(PROMPTS, RESPONSES)
    assert sorted(i for g in groups for i in g) == list(range(len(PROMPTS)))
    for group in groups:
        longest = max(lengths[i] for i in group)
        assert len(group) == 1 or len(group) * longest <= 40
        assert [lengths[i] for i in group] == sorted((lengths[i] for i in group), reverse=True)
    assert len(groups) > 1
    expected, got = plain.score(PROMPTS, RESPONSES), budget.score(PROMPTS, RESPONSES)
    assert got.responses == expected.responses and got.offsets == expected.offsets
    torch.testing.assert_close(got.rewards, expected.rewards, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.sequence_rewards, expected.sequence_rewards, atol=1e-5, rtol=0)
