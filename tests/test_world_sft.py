"""The SFT trainer the world's policy is trained with: labels, loss against a naive loop,
learning to answer and stop, exact resume, and the CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tokenreward.cli import main
from tokenreward.jsonl import write_jsonl
from tokenreward.testing import crash_on_call, tiny_causal_lm
from tokenreward.trainers import sft

RECORDS = [{"prompt": f"What is {a} + {a}?", "completion": f" The answer is {2 * a}."} for a in range(1, 9)]


def test_labels_cover_the_completion_and_the_eos_only(tokenizer):
    ((ids, labels),) = sft.tokenize_sft(tokenizer, RECORDS[:1], max_length=64)
    prompt_ids = tokenizer(RECORDS[0]["prompt"])["input_ids"]
    full_ids = tokenizer(RECORDS[0]["prompt"] + RECORDS[0]["completion"])["input_ids"]
    assert ids == full_ids + [tokenizer.eos_token_id]
    first = next(k for k, (a, b) in enumerate(zip(prompt_ids + [-1], full_ids)) if a != b)
    assert labels[:first] == [-100] * first and labels[first:] == ids[first:]


def test_loss_matches_a_naive_loop(tokenizer):
    examples = sft.tokenize_sft(tokenizer, RECORDS[:3], max_length=64)
    batch = sft.collate(examples, tokenizer.pad_token_id)
    logits = torch.randn(*batch["input_ids"].shape, len(tokenizer))
    total, count = 0.0, 0
    for i in range(logits.shape[0]):
        for t in range(1, logits.shape[1]):
            label = int(batch["labels"][i, t])
            if label != -100:
                row = logits[i, t - 1]
                total += float(torch.logsumexp(row, 0) - row[label])
                count += 1
    assert float(sft.sft_loss(logits, batch["labels"])) == pytest.approx(total / count, rel=1e-5)


def test_too_long_or_malformed_records_are_refused(tokenizer):
    with pytest.raises(ValueError, match="longer than --max-length 4"):
        sft.tokenize_sft(tokenizer, RECORDS[:1], max_length=4)
    with pytest.raises(ValueError, match="neither prompt/completion nor messages"):
        sft.tokenize_sft(tokenizer, [{"text": "hello"}], max_length=64)


def test_learns_the_completions_and_to_stop(tokenizer, tmp_path):
    model = tiny_causal_lm("gpt2", tokenizer)
    model = sft.train_sft(model, tokenizer, RECORDS, tmp_path, epochs=60, batch_size=8, lr=5e-3, progress=False)
    ids = tokenizer(RECORDS[2]["prompt"], return_tensors="pt")
    out = model.generate(
        **ids,
        max_new_tokens=12,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    generated = out[0, ids["input_ids"].shape[1] :].tolist()
    assert tokenizer.eos_token_id in generated
    assert tokenizer.decode(generated, skip_special_tokens=True) in {r["completion"] for r in RECORDS}
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert log[-1]["loss"] < 0.3 * log[0]["loss"]


def test_resume_after_a_crash_ends_with_the_same_weights(tokenizer, tmp_path, monkeypatch):
    settings = dict(epochs=3, batch_size=4, lr=1e-3, save_every=2, seed=1, progress=False)
    reference = sft.train_sft(tiny_causal_lm("llama", tokenizer), tokenizer, RECORDS, tmp_path / "a", **settings)
    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(sft, "sft_loss", crash_on_call(sft.sft_loss, 4))
        sft.train_sft(tiny_causal_lm("llama", tokenizer), tokenizer, RECORDS, tmp_path / "b", **settings)
    resumed = sft.train_sft(
        tiny_causal_lm("llama", tokenizer, seed=5), tokenizer, RECORDS, tmp_path / "b", resume=True, **settings
    )
    for (name, a), (_, b) in zip(reference.state_dict().items(), resumed.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), name
    log = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 7)) and all(math.isfinite(r["loss"]) for r in log)


def test_cli_writes_a_hugging_face_folder(tokenizer, tmp_path):
    base = tmp_path / "base"
    tiny_causal_lm("gpt2", tokenizer).save_pretrained(base)
    tokenizer.save_pretrained(base)
    write_jsonl(tmp_path / "sft.jsonl", RECORDS)
    assert (
        main(
            [
                "train",
                "sft",
                "--data",
                str(tmp_path / "sft.jsonl"),
                "--model",
                str(base),
                "--out",
                str(tmp_path / "out"),
                "--no-progress",
            ]
        )
        == 0
    )
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(str(tmp_path / "out" / "final")).config.vocab_size == len(tokenizer)
    assert main(["train", "sft", "--data", str(tmp_path / "nope.jsonl"), "--model", str(base)]) == 2


def test_length_grouping_keeps_every_example_once_per_epoch_and_cuts_padding():
    lengths = [5 + (k * 37) % 50 for k in range(96)]
    plain = sft.step_order(96, 8, 2, seed=3)
    grouped = sft.step_order(96, 8, 2, seed=3, lengths=lengths)
    for batches in (plain, grouped):
        for epoch in range(2):
            assert sorted(i for b in batches[epoch * 12 : (epoch + 1) * 12] for i in b) == list(range(96))

    def padded(batches):
        return sum(len(b) * max(lengths[i] for i in b) for b in batches)

    assert padded(grouped) < 0.8 * padded(plain)
    assert grouped == sft.step_order(96, 8, 2, seed=3, lengths=lengths)
