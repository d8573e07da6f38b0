"""`train segment-reward-model`: its pair scores against the `segment` rewarder's sequence scores,
a few steps of learning, the normaliser written next to the model and read back, exact resume,
and bad input as one-line errors."""

from __future__ import annotations

import json
import random

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from tokenreward import build_rewarder
from tokenreward.cli import main
from tokenreward.jsonl import write_jsonl
from tokenreward.rewarders._location_normaliser import LocationNormaliser
from tokenreward.rewarders.segment import SEGMENT_FILE
from tokenreward.testing import crash_on_call, tiny_causal_lm, tiny_reward_model
from tokenreward.trainers import segment_reward_model as srm

#: about the median next-token entropy of the tiny random models (ln 300 = 5.70), so responses
#: fall into several segments
THRESHOLD = 5.6975


def toy_pairs(n: int) -> list[dict]:
    return [
        {"prompt": f"What is {k} + {k}?", "chosen": f" Thank you. It is {2 * k}.", "rejected": f" You are stupid. {k}"}
        for k in range(1, n + 1)
    ]


def varied_pairs(n: int) -> list[dict]:
    """Pairs of random words of one length: every relative position has varied segment rewards."""
    rng = random.Random(0)
    words = "the cat sat on a mat while dogs ran far away from home and birds sang".split()
    return [
        {
            "prompt": f"Say {k}.",
            "chosen": " " + " ".join(rng.choices(words, k=6)),
            "rejected": " " + " ".join(rng.choices(words, k=6)),
        }
        for k in range(n)
    ]


def config(out, **overrides) -> srm.SegmentRewardModelConfig:
    settings = dict(epochs=1, batch_size=4, learning_rate=2e-3, save_every=2, progress=False)
    return srm.SegmentRewardModelConfig(
        data="", model="", out=out, entropy_threshold=THRESHOLD, **{**settings, **overrides}
    )


@torch.no_grad()
def test_pair_scores_are_the_rewarders_sequence_scores(tokenizer):
    model, reference = tiny_reward_model("llama", tokenizer), tiny_causal_lm("llama", tokenizer)
    pairs = toy_pairs(3)
    chosen, rejected, counts = srm.segment_pair_scores(model, reference, tokenizer, pairs, THRESHOLD)
    rewarder = build_rewarder(
        "segment", reward_model=model, reference=reference, tokenizer=tokenizer, entropy_threshold=THRESHOLD
    )
    prompts = [p["prompt"] for p in pairs] * 2
    scored = rewarder.score(prompts, [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs])
    torch.testing.assert_close(torch.cat([chosen, rejected]), scored.sequence_rewards, atol=1e-5, rtol=0)
    assert any(1 < c < len(scored.tokens(i)) for i, c in enumerate(counts))


def test_learns_a_separable_preference_in_few_steps(tokenizer, tmp_path):
    pairs = toy_pairs(16)
    reference = tiny_causal_lm("llama", tokenizer)
    before = srm.segment_accuracy(tiny_reward_model("llama", tokenizer), reference, tokenizer, pairs, THRESHOLD)
    model = srm.train(config(tmp_path, epochs=2), tiny_reward_model("llama", tokenizer), reference, tokenizer, pairs)
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == list(range(1, 9)) and log[-1]["loss"] < log[0]["loss"]
    assert all(row["segments"] > 1 for row in log)
    assert srm.segment_accuracy(model, reference, tokenizer, pairs, THRESHOLD) == 1.0 > before


def test_cli_writes_the_normaliser_the_rewarder_reads(tokenizer, tmp_path, capsys):
    from tokenreward.models import load_reward_model

    base = tmp_path / "base"
    reference = tiny_causal_lm("llama", tokenizer)
    reference.save_pretrained(base)
    tokenizer.save_pretrained(base)
    pairs = varied_pairs(16)
    threshold = 0.0  # every token its own segment: the authors' token-level variant, many rewards per position
    write_jsonl(tmp_path / "pairs.jsonl", pairs)
    args = ["train", "segment-reward-model", "--data", str(tmp_path / "pairs.jsonl"), "--model", str(base)]
    options = ["--entropy-threshold", repr(threshold), "--lr", "1e-3", "--no-progress", "--eval-data", args[3]]
    assert main([*args, *options, "--out", str(tmp_path / "out")]) == 0
    assert "held-out pairwise accuracy" in capsys.readouterr().out
    final = tmp_path / "out" / "final"
    saved = json.loads((final / SEGMENT_FILE).read_text())
    refit = srm.fit_normaliser(load_reward_model(str(final)), reference, tokenizer, pairs, threshold, 16, seed=0)
    assert saved["entropy_threshold"] == threshold
    assert list(saved["normaliser"].values()) == pytest.approx(list(refit.to_json().values()), abs=1e-4)
    rewarder = build_rewarder("segment", reward_model=str(final), reference=str(base))
    assert rewarder.threshold == threshold and rewarder.normaliser == LocationNormaliser(**saved["normaliser"])
    assert rewarder.normaliser != LocationNormaliser()
    # a threshold above every entropy leaves one segment per response: nothing to fit, said on stderr
    # (and a LoRA run: its adapter folder is a reward model the rewarder loads)
    one = ["--entropy-threshold", "100", "--lora-r", "4", "--no-progress", "--out", str(tmp_path / "one")]
    assert main([*args, *one]) == 0
    assert "no location normaliser fitted" in capsys.readouterr().err
    final = tmp_path / "one" / "final"
    assert json.loads((final / SEGMENT_FILE).read_text())["normaliser"] is None
    assert (final / "adapter_config.json").is_file()
    rewarder = build_rewarder("segment", reward_model=str(final), reference=str(base))
    assert rewarder.normaliser == LocationNormaliser() and rewarder.threshold == 100.0
    scored = rewarder.score([pairs[0]["prompt"]], [pairs[0]["chosen"]])
    row = scored.token_rewards(0)  # one segment spread evenly: R / T on each token
    assert row == pytest.approx([float(scored.sequence_rewards[0]) / len(row)] * len(row), abs=1e-6)


def test_dtype_loads_the_frozen_reference_in_it_and_the_trained_model_stays_float32(tokenizer, tmp_path, monkeypatch):
    base = tmp_path / "base"
    tiny_causal_lm("llama", tokenizer).save_pretrained(base)
    tokenizer.save_pretrained(base)
    write_jsonl(tmp_path / "pairs.jsonl", toy_pairs(4))
    loaded = []
    real_load = srm.load_causal_lm
    monkeypatch.setattr(srm, "load_causal_lm", lambda *a, **k: loaded.append(real_load(*a, **k)) or loaded[-1])
    args = ["train", "segment-reward-model", "--data", str(tmp_path / "pairs.jsonl"), "--model", str(base)]
    options = ["--dtype", "bfloat16", "--normaliser-pairs", "0", "--no-progress", "--out", str(tmp_path / "out")]
    assert main([*args, *options]) == 0
    assert [next(model.parameters()).dtype for model in loaded] == [torch.bfloat16]
    trained = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "out" / "final"))
    assert next(trained.parameters()).dtype == torch.float32


def test_resume_after_a_crash_ends_with_the_same_weights(tokenizer, tmp_path, monkeypatch):
    pairs = toy_pairs(12)
    reference = tiny_causal_lm("llama", tokenizer)
    done = srm.train(config(tmp_path / "a"), tiny_reward_model("llama", tokenizer), reference, tokenizer, pairs)
    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(srm, "bradley_terry_loss", crash_on_call(srm.bradley_terry_loss, 3))
        srm.train(config(tmp_path / "b"), tiny_reward_model("llama", tokenizer), reference, tokenizer, pairs)
    resumed = srm.train(
        config(tmp_path / "b", resume=True), tiny_reward_model("llama", tokenizer, seed=9), reference, tokenizer, pairs
    )
    for (name, a), (_, b) in zip(done.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


def test_bad_input_is_a_one_line_error(tokenizer, tmp_path, capsys):
    base = tmp_path / "base"
    tiny_causal_lm("llama", tokenizer).save_pretrained(base)
    tokenizer.save_pretrained(base)
    args = ["train", "segment-reward-model", "--model", str(base), "--no-progress"]
    assert main([*args, "--data", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "a")]) == 2
    assert "--data " in (err := capsys.readouterr().err) and "no such file" in err
    write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "a", "chosen": " b"}])
    assert main([*args, "--data", str(tmp_path / "bad.jsonl"), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert "lacks rejected" in err and len(err.splitlines()) == 1
    assert main([*args, "--data", str(tmp_path / "bad.jsonl"), "--entropy-threshold", "-1"]) == 2
    assert "entropy" in capsys.readouterr().err
