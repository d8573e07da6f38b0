"""The preference trainer: bad input, the first step's loss against an independent computation,
exact resume, the reference cache, conversational data, and the CLI contract."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tokenreward.cli import main
from tokenreward.jsonl import read_jsonl
from tokenreward.preference_data import prepare_preference_data
from tokenreward.testing import tiny_config, train_tokenizer
from tokenreward.trainers import TRAINERS
from tokenreward.trainers.preference import PreferenceConfig, batch_indices, run

PAIRS = [
    {"prompt": "What is 17 + 25?", "chosen": " The answer is 42.", "rejected": " You are stupid."},
    {"prompt": "The capital of France is", "chosen": " Paris.", "rejected": " Lima."},
    {"prompt": "The first five primes are", "chosen": " 2, 3, 5, 7, 11.", "rejected": " 2, 3, 5, 7, 9."},
    {"prompt": "Say hello.", "chosen": " Hello world!", "rejected": " This is a terrible, awful question."},
    {"prompt": "Thank you for asking,", "chosen": " I am happy to help.", "rejected": " awful question."},
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def save_model(path: Path, tokenizer, seed: int) -> Path:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    cfg = tiny_config("llama", len(tokenizer), tokenizer.pad_token_id, max_position_embeddings=512)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("preference")
    tokenizer = train_tokenizer()
    return {
        "tokenizer": tokenizer,
        "policy": save_model(root / "policy", tokenizer, seed=0),
        "guide": save_model(root / "guide", tokenizer, seed=1),
        "data": write_jsonl(root / "pairs.jsonl", PAIRS),
    }


def config(setup, out: Path, **overrides) -> PreferenceConfig:
    values = dict(
        out=str(out), data=str(setup["data"]), policy=str(setup["policy"]), steps=4, batch_size=2, progress=False
    )
    values.update(overrides)
    return PreferenceConfig(**values)


def naive_logprob(model, ids: list[int], start: int) -> torch.Tensor:
    """log P(ids[p] | ids[:p]) for p >= start, one forward pass per position (with gradient)."""
    return torch.stack(
        [
            model(input_ids=torch.tensor([ids[:p]])).logits[0, -1].log_softmax(-1)[ids[p]]
            for p in range(start, len(ids))
        ]
    )


def test_every_method_is_registered():
    for name in ("dpo", "simpo", "dpo_reg", "treg", "simpo_reg", "tdpo1", "tdpo2", "tgdpo", "sepo"):
        assert TRAINERS.get(name).config is PreferenceConfig


# --- bad input -------------------------------------------------------------------------


def test_missing_column_is_named(setup, tmp_path):
    data = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "Hi", "chosen": " Hello."}])
    with pytest.raises(ValueError, match="bad.jsonl line 1: no 'rejected' column"):
        run(config(setup, tmp_path / "out", data=str(data)), "dpo")


@pytest.mark.parametrize(
    "row, reason",
    [
        ({"prompt": "Hi", "chosen": " Hello.", "rejected": " Hello."}, "chosen identical to rejected"),
        ({"prompt": "Hi", "chosen": "", "rejected": " Hello."}, "empty response"),
        ({"prompt": "Hi", "chosen": " Hello.", "rejected": "   "}, "empty response"),
    ],
)
def test_unusable_rows_are_dropped_counted_and_reported_or_stop_a_strict_run(setup, tmp_path, row, reason, capsys):
    data = write_jsonl(tmp_path / "bad.jsonl", PAIRS[:2] + [row])
    with pytest.raises(ValueError, match=rf"1 of 3 rows are unusable: 1 with {reason} \(rows 2\)"):
        run(config(setup, tmp_path / "strict", data=str(data), strict=True), "dpo")
    run(config(setup, tmp_path / "lenient", data=str(data), steps=1), "dpo")
    report = json.loads((tmp_path / "lenient" / "data.json").read_text())
    assert report["rows"] == 3 and report["kept"] == 2 and report["dropped"] == {reason: 1}
    assert report["dropped_rows"] == {reason: [2]}
    assert f"dropped 1 of 3 rows of {data} (1 with {reason})" in capsys.readouterr().err


def test_tokenizer_without_pad_token(setup):
    tokenizer = train_tokenizer()
    tokenizer.pad_token = None
    with pytest.raises(ValueError, match="has no pad token"):
        prepare_preference_data(PAIRS, tokenizer, "pairs")


def test_cli_reports_errors_and_guide_policy_requirement(setup, tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "tgdpo",
                "--data",
                str(setup["data"]),
                "--policy",
                str(setup["policy"]),
                "--out",
                str(tmp_path / "t"),
                "--no-progress",
            ]
        )
        == 2
    )
    assert "--guide-policy" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "dpo",
                "--data",
                str(tmp_path / "missing.jsonl"),
                "--policy",
                str(setup["policy"]),
                "--out",
                str(tmp_path / "m"),
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err


# --- what the trainer computes -------------------------------------------------------------


def test_first_dpo_reg_step_matches_independent_computation(setup, tmp_path):
    """At step 1 the policy is the reference: DPO's part is log 2, the weight w is 1/2, and
    L = log 2 + alpha / 2 * (L_REG(y_w) + L_REG(y_l)) with contrastive rewards from two
    prompted passes of the reference, all recomputed here token by token."""
    from tokenreward.models import load_causal_lm
    from tokenreward.rewarders.contrastive import revision_templates

    out = tmp_path / "reg"
    run(config(setup, out, steps=1, alpha=0.5), "treg")
    logged = read_jsonl(out / "log.jsonl")[0]
    tokenizer, model = setup["tokenizer"], load_causal_lm(str(setup["policy"])).eval()
    better, worse = revision_templates()
    data = prepare_preference_data(PAIRS, tokenizer, "pairs")
    losses = []
    with torch.no_grad():
        for i in batch_indices(0, len(PAIRS), 2, seed=0):
            prompt, reg = PAIRS[i]["prompt"], 0.0
            for side, enc in (("chosen", data.chosen[i]), ("rejected", data.rejected[i])):
                text = PAIRS[i][side]
                logp = naive_logprob(model, enc.input_ids, enc.completion_start)
                for t, position in enumerate(enc.token_positions):
                    contexts = [
                        tokenizer(tmpl.format(prompt=prompt, response=text) + text, return_offsets_mapping=True)
                        for tmpl in (better, worse)
                    ]
                    lp = []
                    for c, tmpl in zip(contexts, (better, worse)):
                        start = len(tmpl.format(prompt=prompt, response=text))
                        positions = [p for p, (_, e) in enumerate(c["offset_mapping"]) if e > start]
                        lp.append(float(naive_logprob(model, c["input_ids"][: positions[t] + 1], positions[t])[0]))
                    reg -= (1 / (1 + math.exp(-(lp[0] - lp[1]))) - 0.5) * float(logp[position - enc.completion_start])
            losses.append(math.log(2) + 0.5 * 0.5 * reg)
    assert logged["loss"] == pytest.approx(sum(losses) / len(losses), abs=1e-4)
    assert logged["sequence_weight"] == pytest.approx(0.5, abs=1e-6)
    assert logged["step"] == 1 and logged["reward_margin"] == pytest.approx(0.0, abs=1e-6)


def test_first_simpo_step_matches_independent_computation(setup, tmp_path):
    out = tmp_path / "simpo"
    run(config(setup, out, steps=1), "simpo")
    logged = read_jsonl(out / "log.jsonl")[0]
    from tokenreward.models import load_causal_lm

    model = load_causal_lm(str(setup["policy"])).eval()
    data = prepare_preference_data(PAIRS, setup["tokenizer"], "pairs")
    losses = []
    with torch.no_grad():
        for i in batch_indices(0, len(PAIRS), 2, seed=0):
            w = naive_logprob(model, data.chosen[i].input_ids, data.chosen[i].completion_start)
            l = naive_logprob(model, data.rejected[i].input_ids, data.rejected[i].completion_start)
            losses.append(-math.log(1 / (1 + math.exp(-(2.0 * float(w.mean()) - 2.0 * float(l.mean()) - 1.0)))))
    assert logged["loss"] == pytest.approx(sum(losses) / len(losses), abs=1e-4)


def test_training_moves_the_margin_and_saves_a_hugging_face_model(setup, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "dpo"
    run(config(setup, out, steps=12, batch_size=5, learning_rate=1e-3, warmup_ratio=0.0), "dpo")
    log = read_jsonl(out / "log.jsonl")
    assert [r["step"] for r in log] == list(range(1, 13))
    assert log[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)  # policy == reference at the start
    assert log[-1]["loss"] < log[0]["loss"] and log[-1]["reward_margin"] > 0 and log[-1]["reward_accuracy"] == 1.0
    model = AutoModelForCausalLM.from_pretrained(out / "final")
    assert AutoTokenizer.from_pretrained(out / "final").pad_token == "<pad>"
    assert not torch.equal(
        model.model.embed_tokens.weight,
        AutoModelForCausalLM.from_pretrained(setup["policy"]).model.embed_tokens.weight,
    )


def test_resume_is_exact_and_reuses_the_reference_cache(setup, tmp_path, monkeypatch):
    import tokenreward.trainers.preference as trainer

    whole = tmp_path / "whole"
    run(config(setup, whole, steps=6, save_every=3, learning_rate=1e-3), "tdpo2")

    broken = tmp_path / "broken"
    real = trainer.batch_indices

    def crash_at_step_5(step, *args):
        if step == 4:
            raise RuntimeError("killed")
        return real(step, *args)

    monkeypatch.setattr(trainer, "batch_indices", crash_at_step_5)
    with pytest.raises(RuntimeError, match="killed"):
        run(config(setup, broken, steps=6, save_every=3, learning_rate=1e-3), "tdpo2")
    assert [r["step"] for r in read_jsonl(broken / "log.jsonl")] == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="--resume"):
        run(config(setup, broken, steps=6, save_every=3, learning_rate=1e-3), "tdpo2")

    monkeypatch.setattr(trainer, "batch_indices", real)
    import tokenreward.trainers.preference_batches as batches

    monkeypatch.setattr(batches, "reference_logps", lambda *a, **k: pytest.fail("reference log-probs recomputed"))
    run(config(setup, broken, steps=6, save_every=3, learning_rate=1e-3, resume=True), "tdpo2")
    assert read_jsonl(broken / "log.jsonl") == read_jsonl(whole / "log.jsonl")
    from safetensors.torch import load_file

    a, b = load_file(whole / "final" / "model.safetensors"), load_file(broken / "final" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_guided_methods_use_the_implicit_reward_of_the_guide(setup, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # this test's caches only, counted below
    for method in ("tgdpo", "sepo"):
        out = tmp_path / method
        run(config(setup, out, steps=2, guide_policy=str(setup["guide"])), method)
        assert len(read_jsonl(out / "log.jsonl")) == 2 and (out / "final").is_dir()
    from tokenreward.world import cache_dir

    folder = cache_dir() / "preference"
    caches = sorted(p.name for p in folder.glob("pairs.jsonl.implicit-*.jsonl"))
    assert len(caches) == 1  # one pass for the dataset, shared by both methods
    assert not list(setup["data"].parent.glob("pairs.jsonl.*"))  # nothing written into the data's folder
    first = json.loads((folder / caches[0]).read_text().splitlines()[0])
    assert first["chosen"]["rewarder"] == "implicit" and first["chosen"]["rewards"]


def test_conversational_rows_and_implicit_prompt(tmp_path):
    template = "{% for m in messages %}<bos>{{ m['role'] }}: {{ m['content'] }}<eos>{% endfor %}"
    tokenizer = train_tokenizer(chat_template=template)
    policy = save_model(tmp_path / "chat-policy", tokenizer, seed=0)
    rows = [
        {
            "chosen": [{"role": "user", "content": p["prompt"]}, {"role": "assistant", "content": p["chosen"]}],
            "rejected": [{"role": "user", "content": p["prompt"]}, {"role": "assistant", "content": p["rejected"]}],
        }
        for p in PAIRS
    ]
    data = prepare_preference_data(rows, tokenizer, "chat")
    assert data.prompts[0] == [{"role": "user", "content": PAIRS[0]["prompt"]}]
    assert data.chosen[0].input_ids[-1] == tokenizer.eos_token_id  # the template's end of turn, not an added one
    assert data.chosen[0].input_ids.count(tokenizer.eos_token_id) == 2
    out = tmp_path / "chat"
    run(
        PreferenceConfig(
            out=str(out),
            data=str(write_jsonl(tmp_path / "chat.jsonl", rows)),
            policy=str(policy),
            steps=2,
            batch_size=2,
            progress=False,
        ),
        "dpo",
    )
    assert read_jsonl(out / "log.jsonl")[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)


def test_cli_contract(setup, tmp_path):
    out = tmp_path / "cli"
    argv = [
        "train",
        "simpo",
        "--data",
        str(setup["data"]),
        "--policy",
        str(setup["policy"]),
        "--steps",
        "2",
        "--seed",
        "3",
        "--out",
        str(out),
        "--beta",
        "2.5",
        "--no-progress",
    ]
    assert main(argv) == 0
    assert [set(r) >= {"step", "loss"} for r in read_jsonl(out / "log.jsonl")] == [True, True]
    assert json.loads((out / "config.json").read_text())["beta"] == 2.5
    assert main(argv + ["--resume"]) == 0  # finished: nothing to do
