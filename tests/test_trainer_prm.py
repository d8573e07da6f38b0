"""`train prm`: its labels against TRL's stepwise rule done by hand, its loss against a naive
cross-entropy loop, learning a separable step label, exact resume, LoRA, and bad rows named by
file, line and field."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch

from tokenreward.cli import main
from tokenreward.jsonl import write_jsonl
from tokenreward.rewards import build_rewarder
from tokenreward.testing import crash_on_call, tiny_causal_lm, tiny_config
from tokenreward.trainers import prm

GOOD, BAD = "Thank you for asking.", "You are stupid."


def stepwise(n: int, seed: int) -> list[dict]:
    """Two or three steps; a step is good unless it insults the user."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(1, 99), rng.randint(1, 99)
        steps = [f"{a} + {b} is {a + b}."] + [rng.choice([GOOD, BAD]) for _ in range(rng.randint(1, 2))]
        rows.append({"prompt": f"What is {a} + {b}?", "completions": steps, "labels": [s != BAD for s in steps]})
    return rows


def config(out: Path, **changes) -> prm.PrmConfig:
    values = dict(data="", model="", out=out, epochs=2, batch_size=8, learning_rate=3e-3, progress=False)
    return prm.PrmConfig(**{**values, **changes})


def model_of(tokenizer, seed: int = 0):
    """A tiny two-label token classifier (what `train prm` builds from a causal LM)."""
    from transformers import AutoModelForTokenClassification

    torch.manual_seed(seed)
    config = tiny_config("gpt2", len(tokenizer), tokenizer.pad_token_id, num_labels=2)
    return AutoModelForTokenClassification.from_config(config)


def test_labels_sit_on_each_steps_separator_as_in_trls_stepwise_rule(tokenizer):
    records = stepwise(3, seed=1)
    input_ids, _, labels = prm.batch_tensors(tokenizer, records, "\n", None)
    for i, record in enumerate(records):
        text = record["prompt"] + "".join(step + "\n" for step in record["completions"])
        encoded = tokenizer(text, return_offsets_mapping=True)
        newlines = [k for k, char in enumerate(text) if char == "\n"]
        spans = encoded["offset_mapping"]
        expected = [-100] * len(spans)
        for char, label in zip(newlines, record["labels"]):
            expected[next(t for t, (s, e) in enumerate(spans) if s <= char < e)] = int(label)
        n = len(encoded["input_ids"])
        assert input_ids[i, :n].tolist() == encoded["input_ids"]
        assert labels[i, :n].tolist() == expected and torch.all(labels[i, n:] == -100)


@torch.no_grad()
def test_loss_is_the_mean_cross_entropy_of_the_labelled_steps(tokenizer):
    model, records = model_of(tokenizer).eval(), stepwise(4, seed=2)
    loss, metrics = prm.step_loss(model, tokenizer, records, "\n", torch.device("cpu"))
    input_ids, attention_mask, labels = prm.batch_tensors(tokenizer, records, "\n", None)
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    terms, right = [], 0
    for i in range(len(records)):
        for t in range(labels.shape[1]):
            if labels[i, t] != -100:
                z = logits[i, t].tolist()
                terms.append(math.log(sum(math.exp(v) for v in z)) - z[int(labels[i, t])])
                right += int(z[1] > z[0]) == int(labels[i, t])
    assert len(terms) == sum(len(r["labels"]) for r in records)
    assert float(loss) == pytest.approx(sum(terms) / len(terms), rel=1e-5)
    assert metrics["accuracy"] == pytest.approx(right / len(terms))


def test_learns_to_score_insults_low_and_the_prm_rewarder_reads_it(tokenizer, tmp_path):
    model = prm.train(config(tmp_path, epochs=6), model_of(tokenizer), tokenizer, stepwise(48, seed=3))
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(log) == 36 and log[-1]["loss"] < 0.6 * log[0]["loss"] and log[-1]["accuracy"] == 1.0
    rewarder = build_rewarder("prm", reward_model=model, tokenizer=tokenizer, device="cpu")
    held_out = stepwise(12, seed=4)
    result = rewarder.score([r["prompt"] for r in held_out], ["\n".join(r["completions"]) for r in held_out])
    for record, scores in zip(held_out, result.step_scores):
        assert [s > 0.5 for s in scores] == record["labels"]


def test_resume_after_a_crash_ends_with_the_same_weights(tokenizer, tmp_path, monkeypatch):
    records = stepwise(32, seed=5)
    settings = dict(save_every=2, epochs=2)
    reference = prm.train(config(tmp_path / "a", **settings), model_of(tokenizer), tokenizer, records)
    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(prm, "step_loss", crash_on_call(prm.step_loss, 6))
        prm.train(config(tmp_path / "b", **settings), model_of(tokenizer), tokenizer, records)
    resumed = prm.train(
        config(tmp_path / "b", resume=True, **settings), model_of(tokenizer, seed=9), tokenizer, records
    )
    for (name, a), (_, b) in zip(reference.state_dict().items(), resumed.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), name
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))


def cli(tmp_path: Path, data: Path, *extra: str) -> int:
    return main(
        ["train", "prm", "--data", str(data), "--model", str(tmp_path / "base"), "--out", str(tmp_path / "out")]
        + ["--no-progress", *extra]
    )


def test_cli_with_lora_saves_an_adapter_the_rewarder_loads(tokenizer, tmp_path):
    tiny_causal_lm("gpt2", tokenizer).save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    write_jsonl(tmp_path / "train.jsonl", stepwise(16, seed=6))
    flags = ["--lora-r", "4", "--lr", "1e-2", "--batch-size", "8", "--step-separator", "\\n"]  # as a shell passes '\n'
    assert cli(tmp_path, tmp_path / "train.jsonl", *flags) == 0
    assert json.loads((tmp_path / "out" / "run.json").read_text())["step_separator"] == "\n"
    final = tmp_path / "out" / "final"
    assert (final / "adapter_config.json").is_file()
    rewarder = build_rewarder("prm", reward_model=str(final), device="cpu")
    assert rewarder.kind == "token-classification"
    scores = rewarder.score(["What is 1 + 2?"], [f"1 + 2 is 3.\n{GOOD}"]).step_scores[0]
    assert len(scores) == 2 and all(0.0 < s < 1.0 for s in scores)


@pytest.mark.parametrize(
    "row, message",
    [
        ({"prompt": "p", "completions": ["a"]}, "line 2: lacks labels"),
        ({"prompt": "p", "completions": "a", "labels": [True]}, "line 2: field completions must be a non-empty list"),
        ({"prompt": "p", "completions": ["a", " "], "labels": [True, False]}, "line 2: field completions, step 1 is"),
        (
            {"prompt": "p", "completions": ["a\nb"], "labels": [True]},
            "line 2: field completions, step 0 contains the step",
        ),
        ({"prompt": "p", "completions": ["a"], "labels": [1]}, "line 2: field labels must be a list of true/false"),
        (
            {"prompt": "p", "completions": ["a", "b"], "labels": [True]},
            "line 2: field labels has 1 entries for 2 steps",
        ),
    ],
)
def test_bad_rows_are_one_line_errors_naming_file_line_and_field(tmp_path, capsys, row, message):
    data = tmp_path / "bad.jsonl"
    write_jsonl(data, [stepwise(1, seed=7)[0], row])
    assert cli(tmp_path, data) == 2
    err = capsys.readouterr().err.strip()
    assert f"{data} {message}" in err and len(err.splitlines()) == 1
