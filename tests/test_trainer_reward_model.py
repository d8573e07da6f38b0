"""The Bradley-Terry reward-model trainer: its loss against a naive formula, its scores against
Hugging Face's own forward, learning a separable toy preference, exact resume, and the CLI."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch

from tokenreward.cli import main
from tokenreward.jsonl import write_jsonl
from tokenreward.testing import crash_on_call, tiny_causal_lm, tiny_reward_model
from tokenreward.trainers import reward_model as rm


def toy_pairs(n, seed):
    """Chosen replies thank the user, rejected ones insult them; the rest is shared noise."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        a, b = rng.randint(1, 99), rng.randint(1, 99)
        prompt = f"What is {a} + {b}?"
        tail = f" The answer is {a + b}."
        pairs.append(
            {"prompt": prompt, "chosen": " Thank you for asking." + tail, "rejected": " You are stupid." + tail}
        )
    return pairs


def test_loss_matches_naive_formula():
    chosen = torch.tensor([1.0, -0.5, 3.0, 0.0])
    rejected = torch.tensor([0.0, 0.5, -1.0, 0.0])
    naive = sum(math.log(1 + math.exp(-(c - r))) for c, r in zip(chosen.tolist(), rejected.tolist())) / 4
    assert float(rm.bradley_terry_loss(chosen, rejected)) == pytest.approx(naive, rel=1e-6)


@torch.no_grad()
def test_scores_equal_hugging_face_forward_one_by_one(reward_model, tokenizer):
    pairs = toy_pairs(3, seed=1)
    chosen, rejected = rm.score_pairs(reward_model, tokenizer, pairs, torch.device("cpu"))
    for i, pair in enumerate(pairs):
        for text, got in ((pair["chosen"], chosen[i]), (pair["rejected"], rejected[i])):
            ids = tokenizer(pair["prompt"] + text, return_tensors="pt")
            expected = reward_model(**ids).logits[0, 0]
            assert float(got) == pytest.approx(float(expected), abs=1e-4)


def test_reward_model_from_a_causal_lm_keeps_its_backbone(tokenizer):
    lm = tiny_causal_lm("llama", tokenizer)
    model = rm.reward_model_from(lm, tokenizer)
    assert model.config.pad_token_id == tokenizer.pad_token_id
    for (name, a), (_, b) in zip(lm.base_model.state_dict().items(), model.base_model.state_dict().items()):
        assert torch.equal(a, b), name


def test_learns_a_separable_preference(tokenizer, tmp_path):
    model = tiny_reward_model("gpt2", tokenizer)
    held_out = toy_pairs(40, seed=2)
    before = rm.pairwise_accuracy(model, tokenizer, held_out)
    model = rm.train_reward_model(
        model, tokenizer, toy_pairs(96, seed=3), tmp_path, epochs=3, batch_size=16, lr=3e-3, progress=False
    )
    assert rm.pairwise_accuracy(model, tokenizer, held_out) == 1.0
    assert before < 1.0
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(log) == 18 and log[-1]["loss"] < log[0]["loss"]


@torch.no_grad()
def test_accuracy_against_oracle_scores_skips_ties(reward_model, tokenizer):
    pairs = toy_pairs(6, seed=4)
    for k, pair in enumerate(pairs):
        pair["chosen_score"], pair["rejected_score"] = (1.0, 0.0) if k % 2 else (0.0, 1.0)
    pairs[0]["chosen_score"] = pairs[0]["rejected_score"] = 0.5
    chosen, rejected = rm.score_pairs(reward_model, tokenizer, pairs, torch.device("cpu"))
    expected = [(c > r) == (p["chosen_score"] > p["rejected_score"]) for c, r, p in zip(chosen, rejected, pairs)][1:]
    assert rm.pairwise_accuracy(reward_model, tokenizer, pairs, against="oracle") == pytest.approx(sum(expected) / 5)


def test_resume_after_a_crash_ends_with_the_same_weights(tokenizer, tmp_path, monkeypatch):
    pairs = toy_pairs(48, seed=5)
    settings = dict(epochs=2, batch_size=8, lr=1e-3, save_every=2, seed=0, progress=False)
    reference = rm.train_reward_model(
        tiny_reward_model("gpt2", tokenizer), tokenizer, pairs, tmp_path / "a", **settings
    )

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(rm, "bradley_terry_loss", crash_on_call(rm.bradley_terry_loss, 8))
        rm.train_reward_model(tiny_reward_model("gpt2", tokenizer), tokenizer, pairs, tmp_path / "b", **settings)
    resumed = rm.train_reward_model(
        tiny_reward_model("gpt2", tokenizer, seed=9), tokenizer, pairs, tmp_path / "b", resume=True, **settings
    )
    for (name, a), (_, b) in zip(reference.state_dict().items(), resumed.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), name
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 13))


def test_cli_trains_saves_and_reports_held_out_accuracy(tokenizer, tmp_path, capsys):
    base = tmp_path / "base"
    tiny_causal_lm("gpt2", tokenizer).save_pretrained(base)
    tokenizer.save_pretrained(base)
    write_jsonl(tmp_path / "train.jsonl", toy_pairs(32, seed=6))
    write_jsonl(tmp_path / "eval.jsonl", toy_pairs(8, seed=7))
    args = [
        "train",
        "reward-model",
        "--data",
        str(tmp_path / "train.jsonl"),
        "--model",
        str(base),
        "--out",
        str(tmp_path / "out"),
        "--eval-data",
        str(tmp_path / "eval.jsonl"),
        "--lr",
        "3e-3",
        "--epochs",
        "2",
        "--no-progress",
    ]
    assert main(args) == 0
    assert "held-out pairwise accuracy" in capsys.readouterr().out
    from transformers import AutoModelForSequenceClassification

    loaded = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "out" / "final"))
    assert loaded.config.num_labels == 1 and loaded.config.pad_token_id == tokenizer.pad_token_id


def test_bad_input_is_a_clear_error(tokenizer, tmp_path, capsys):
    assert main(["train", "reward-model", "--data", str(tmp_path / "missing.jsonl"), "--model", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(ValueError, match="lacks rejected"):
        rm.pairwise_accuracy(tiny_reward_model("gpt2", tokenizer), tokenizer, [{"prompt": "a", "chosen": " b"}])
