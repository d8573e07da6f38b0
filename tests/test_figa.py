"""FIGA: the weighted loss against a naive loop, the CE against Hugging Face's own LM loss, and
the trainer (raises the revision's likelihood, lowers the penalised tokens', resumes exactly)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from tokenreward.labels import label_pair
from tokenreward.losses.figa import figa_loss, figa_weights
from tokenreward.testing import tiny_causal_lm, train_tokenizer
from tokenreward.trainers.figa import FigaConfig, add_eos, pair_batches, run, token_ce
from tokenreward.trainers.harness import derive_seed


def naive_figa(rev_ce, rev_pos, rej_ce, rej_neg, alpha=1.0, beta=0.5, low=0.6, high=1.0):
    total, count = 0.0, 0
    for b in range(rev_ce.shape[0]):
        for t in range(rev_ce.shape[1]):
            if rev_pos[b][t]:
                total += alpha * float(rev_ce[b][t])
                count += 1
        for t in range(rej_ce.shape[1]):
            if rej_neg[b][t] and low <= float(rej_ce[b][t]) <= high:
                total += -beta * float(rej_ce[b][t])
                count += 1
    return total / count


def test_loss_matches_naive_loop():
    torch.manual_seed(0)
    rev_ce, rej_ce = torch.rand(4, 7) * 2, torch.rand(4, 6) * 1.6
    rej_ce[0, 0], rej_ce[0, 1], rej_ce[0, 2] = 0.6, 1.0, 1.0001  # both gate ends are inside
    rev_pos, rej_neg = torch.rand(4, 7) > 0.5, torch.rand(4, 6) > 0.3
    rej_neg[0, :3] = True
    loss, stats = figa_loss(rev_ce, rev_pos, rej_ce, rej_neg)
    assert float(loss) == pytest.approx(naive_figa(rev_ce, rev_pos, rej_ce, rej_neg), rel=1e-6)
    assert int(stats["positive_tokens"]) == int(rev_pos.sum())
    loss2, _ = figa_loss(rev_ce, rev_pos, rej_ce, rej_neg, alpha=2.0, beta=0.25, ce_low=0.2, ce_high=1.5)
    assert float(loss2) == pytest.approx(naive_figa(rev_ce, rev_pos, rej_ce, rej_neg, 2.0, 0.25, 0.2, 1.5), rel=1e-6)


def test_weights_and_gradients():
    rev_ce = torch.tensor([[0.5, 2.0, 1.0]], requires_grad=True)
    rej_ce = torch.tensor([[0.3, 0.8, 1.5, 0.9]], requires_grad=True)
    rev_pos = torch.tensor([[True, False, True]])
    rej_neg = torch.tensor([[True, True, True, False]])
    w_rev, w_rej = figa_weights(rev_pos, rej_neg, rej_ce)
    assert w_rev.tolist() == [[1.0, 0.0, 1.0]]
    # CE 0.3 and 1.5 fall outside [0.6, 1.0]; the last token is not negative
    assert w_rej.tolist() == [[0.0, -0.5, 0.0, 0.0]]
    loss, _ = figa_loss(rev_ce, rev_pos, rej_ce, rej_neg)
    loss.backward()
    assert rev_ce.grad[0].tolist() == pytest.approx([1 / 3, 0.0, 1 / 3])
    assert rej_ce.grad[0].tolist() == pytest.approx([0.0, -0.5 / 3, 0.0, 0.0])


def test_token_ce_matches_hugging_face_lm_loss(tokenizer):
    model = tiny_causal_lm("qwen2", tokenizer)
    ids = tokenizer("The capital of Peru is Lima.")["input_ids"]
    batch = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long)}
    with torch.no_grad():
        ce = token_ce(model, batch)
        hf_loss = model(input_ids=batch["input_ids"], labels=batch["input_ids"]).loss
    assert ce[0, 0] == 0
    assert float(ce[0, 1:].mean()) == pytest.approx(float(hf_loss), rel=1e-5)


def test_add_eos_after_each_row():
    batch = {
        "input_ids": torch.tensor([[5, 6, 7], [5, 8, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1], [1, 1, 0]]),
        "targets": torch.tensor([[0.0, 0.5, 1.0], [0.0, 1.0, 0.0]]),
        "mask": torch.tensor([[False, True, True], [False, True, False]]),
    }
    out = add_eos(batch, eos_token_id=2, pad_token_id=0)
    assert out["input_ids"].tolist() == [[5, 6, 7, 2], [5, 8, 2, 0]]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert out["targets"].tolist() == [[0.0, 0.5, 1.0, 1.0], [0.0, 1.0, 1.0, 0.0]]
    assert out["mask"].tolist() == [[False, True, True, True], [False, True, True, False]]


PAIRS = [
    (f"Tell me about the {thing}.", f" The {thing} is {bad} today.", f" The {thing} is {good} today.")
    for thing, bad, good in [
        ("weather", "awful", "lovely"),
        ("garden", "rotten", "splendid"),
        ("soup", "useless", "pleasant"),
        ("river", "horrid", "lovely"),
        ("lamp", "awful", "helpful"),
        ("movie", "rotten", "pleasant"),
    ]
]


@pytest.fixture(scope="module")
def figa_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("figa")
    tokenizer = train_tokenizer([t for pair in PAIRS for t in pair], vocab_size=320)
    policy = root / "policy"
    tiny_causal_lm("llama", tokenizer).save_pretrained(policy)
    tokenizer.save_pretrained(policy)
    labels = root / "labels.jsonl"
    labels.write_text("".join(json.dumps(label_pair(tokenizer, *pair)) + "\n" for pair in PAIRS))
    return policy, labels, tokenizer


def weighted_ce(policy_dir, labels, tokenizer):
    """Mean CE of the positive revision tokens (with EOS) and of the negative rejected tokens."""
    from transformers import AutoModelForCausalLM

    from tokenreward.labels import read_labels

    model = AutoModelForCausalLM.from_pretrained(policy_dir).eval()
    revision, rejected = pair_batches(tokenizer, read_labels(labels), "labels", 128)
    with torch.no_grad():
        rev, rej = token_ce(model, revision), token_ce(model, rejected)
    positive = revision["mask"] & (revision["targets"] == 1.0)
    negative = rejected["mask"] & (rejected["targets"] == 0.0)
    return float(rev[positive].mean()), float(rej[negative].mean())


def test_trainer_learns_revisions_and_resumes_exactly(figa_setup, tmp_path):
    policy, labels, tokenizer = figa_setup
    settings = dict(
        labels=labels, policy=policy, steps=6, batch_size=3, learning_rate=1e-2, save_every=2, progress=False
    )
    run(FigaConfig(out=tmp_path / "full", **settings))
    before_pos, before_neg = weighted_ce(policy, labels, tokenizer)
    after_pos, after_neg = weighted_ce(tmp_path / "full" / "final", labels, tokenizer)
    assert after_pos < before_pos - 0.5  # the revisions' new tokens became likely
    log = [json.loads(line) for line in (tmp_path / "full" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 7)) and "oracle_score" not in log[0]
    # resume from the step-4 checkpoint: the same final weights as the unbroken run
    shutil.copytree(tmp_path / "full" / "checkpoints" / "step-4", tmp_path / "cut" / "checkpoints" / "step-4")
    (tmp_path / "cut" / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log[:5]))
    run(FigaConfig(out=tmp_path / "cut", resume=True, **settings))
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "full" / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "final" / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    resumed_log = [json.loads(line) for line in (tmp_path / "cut" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in resumed_log] == list(range(1, 7))
    assert resumed_log[-1]["loss"] == pytest.approx(log[-1]["loss"], abs=0)


def test_trainer_refuses_to_overwrite_a_run(figa_setup, tmp_path):
    policy, labels, _ = figa_setup
    settings = dict(labels=labels, policy=policy, steps=1, batch_size=2, progress=False)
    run(FigaConfig(out=tmp_path / "run", **settings))
    with pytest.raises(ValueError, match="pass --resume"):
        run(FigaConfig(out=tmp_path / "run", **settings))
    run(FigaConfig(out=tmp_path / "other", resume=True, **settings))  # --resume of an empty folder starts the run
    assert [json.loads(line)["step"] for line in (tmp_path / "other" / "log.jsonl").read_text().splitlines()] == [1]


def test_on_the_world_logs_the_oracle_score_of_its_samples(small_world, tmp_path):
    """With a world, FIGA trains on its pairs' oracle revisions (here a slice, via --labels)
    and logs the oracle grade of seeded samples; the last one is the final policy's."""
    from tokenreward.generation import generate
    from tokenreward.labels import labels_from_world
    from tokenreward.models import load_causal_lm, load_tokenizer
    from tokenreward.world.oracle import grade

    tokenizer = load_tokenizer(small_world.tokenizer_dir)
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps(r) + "\n" for r in labels_from_world(small_world, tokenizer)[:8]))
    config = FigaConfig(
        out=tmp_path / "run",
        world=small_world.root,
        labels=labels,
        steps=2,
        batch_size=4,
        learning_rate=1e-3,
        eval_every=1,
        eval_prompts=4,
        max_new_tokens=8,
        progress=False,
    )
    run(config)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all("oracle_score" in r for r in log)
    prompts = small_world.prompts("rl")[:4]
    final = load_causal_lm(tmp_path / "run" / "final").eval()
    with torch.no_grad():
        texts = generate(
            final,
            tokenizer,
            [p["prompt"] for p in prompts],
            8,
            do_sample=True,
            generator_seed=derive_seed(0, "evaluation"),
        ).texts
    expected = sum(grade(p, t).score for p, t in zip(prompts, texts)) / len(prompts)
    assert log[-1]["oracle_score"] == pytest.approx(expected, abs=1e-9)
