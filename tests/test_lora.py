"""LoRA in the trainers (`tokenreward.lora`): the flags, the adapters against PEFT's own objects,
the reference read through disabled adapters against a separately loaded base model, the
final adapter folder (PEFT- and tokenreward-loadable, merged logits equal adapter-on-base
logits, much smaller than the model), `--merge`, `--keep-checkpoints`, and a frozen bf16
`--reference` beside a float32 LoRA policy. The kill-and-resume and two-process runs of the
LoRA trainers are in tests/test_harness.py (`*+lora`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tokenreward.cli import main
from tokenreward.jsonl import write_jsonl
from tokenreward.testing import tiny_causal_lm, tiny_reward_model, train_tokenizer

PAIRS = [
    {"prompt": f"Question {k}: what is {k} + {k}?", "chosen": f" It is {2 * k}.", "rejected": f" It is {2 * k + 1}."}
    for k in range(8)
]
LORA = ["--lora-r", "4", "--lora-alpha", "8"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    tokenizer = train_tokenizer()
    for name, model in (("policy", tiny_causal_lm("llama", tokenizer)), ("rm", tiny_reward_model("llama", tokenizer))):
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    write_jsonl(root / "sft.jsonl", [{"prompt": p["prompt"], "completion": p["chosen"]} for p in PAIRS])
    write_jsonl(root / "pairs.jsonl", PAIRS)
    write_jsonl(root / "prompts.jsonl", [{"prompt": p["prompt"]} for p in PAIRS])
    return root


def sft(folders: Path, out: Path, *flags: str) -> list[str]:
    return ["train", "sft", "--data", str(folders / "sft.jsonl"), "--policy", str(folders / "policy"),
            "--batch-size", "2", "--save-every", "1", "--out", str(out), "--no-progress", *flags]  # fmt: skip


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--lora-alpha", "8"],
            "--lora-alpha 8.0: LoRA options with --lora-r 0 (full fine-tuning); pass --lora-r R > 0",
        ),
        (["--merge", "--lora-dropout", "0.1"], "--lora-dropout 0.1, --merge: LoRA options with --lora-r 0"),
        (["--lora-r", "-1"], "--lora-r must be at least 0, got -1"),
        (["--lora-r", "4", "--lora-alpha", "0"], "--lora-alpha must be greater than 0"),
        (["--lora-r", "4", "--lora-dropout", "1"], "--lora-dropout must be less than 1.0, got 1.0"),
        (["--lora-r", "4", "--lora-target-modules", ","], "--lora-target-modules ',': names no module"),
        (["--lora-r", "4", "--lora-target-modules", "no_such_proj"], "--lora-target-modules no_such_proj:"),
        (["--keep-checkpoints", "0"], "--keep-checkpoints must be at least 1, got 0"),
    ],
)
def test_bad_lora_flags_are_one_line_errors(folders, tmp_path, capsys, flags, message):
    assert main(sft(folders, tmp_path / "run", *flags)) == 2
    err = capsys.readouterr().err.strip()  # (Hugging Face's weight-loading bar may come before the error)
    assert message in err.splitlines()[-1] and "Traceback" not in err, err


@pytest.mark.parametrize("trainer", ["ppo", "rloo", "figa"])
def test_lora_dropout_is_refused_where_models_stay_in_eval_mode(trainer, folders, tmp_path, capsys):
    args = ["train", trainer, "--policy", str(folders / "policy"), "--out", str(tmp_path / "run"), "--lora-r", "4",
            "--lora-dropout", "0.1"]  # fmt: skip
    assert main(args) == 2
    assert "--lora-dropout 0.1: " in capsys.readouterr().err.splitlines()[-1]


def test_adapters_are_peft_lora_with_the_given_settings(folders):
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer

    from tokenreward.lora import add_adapters, trainable_parameters
    from tokenreward.models import load_causal_lm, scalar_head_from_lm
    from tokenreward.trainers.sft import SFTConfig

    config = SFTConfig(data="", policy="", lora_r=4, lora_alpha=8.0, lora_target_modules="q_proj,v_proj")
    model = add_adapters(load_causal_lm(str(folders / "policy")), config, "CAUSAL_LM", seed=3)
    assert isinstance(model, PeftModel)
    layers = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, LoraLayer)}
    assert layers == {"q_proj", "v_proj"}
    first = next(m for m in model.modules() if isinstance(m, LoraLayer))
    assert first.r["default"] == 4 and first.scaling["default"] == pytest.approx(2.0)
    assert torch.equal(first.lora_B["default"].weight, torch.zeros_like(first.lora_B["default"].weight))
    assert {id(p) for p in trainable_parameters(model)} == {id(p) for n, p in model.named_parameters() if "lora_" in n}
    again = add_adapters(load_causal_lm(str(folders / "policy")), config, "CAUSAL_LM", seed=3)
    assert torch.equal(first.lora_A["default"].weight, next(m for m in again.modules() if isinstance(m, LoraLayer)).lora_A["default"].weight)  # fmt: skip
    full = SFTConfig(data="", policy="")
    head = add_adapters(scalar_head_from_lm(folders / "policy"), SFTConfig(data="", policy="", lora_r=2), "SEQ_CLS")
    assert any(n.endswith("score.modules_to_save.default.weight") and p.requires_grad for n, p in head.named_parameters())  # fmt: skip
    plain = load_causal_lm(str(folders / "policy"))
    assert add_adapters(plain, full, "CAUSAL_LM") is plain


def test_a_token_classification_head_trains_in_full_beside_the_adapters(folders):
    """PEFT's all-linear would put an adapter on a token-classification head; it trains in full instead."""
    from peft.tuners.lora import LoraLayer

    from tokenreward.lora import add_adapters
    from tokenreward.rewarders.tlcr import load_discriminator
    from tokenreward.trainers.sft import SFTConfig

    model = add_adapters(load_discriminator(folders / "policy"), SFTConfig(data="", policy="", lora_r=2), "TOKEN_CLS")
    adapted = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, LoraLayer)}
    assert {"q_proj", "v_proj", "down_proj"} <= adapted and not adapted & {"score", "classifier"}
    trained = [n for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n]
    assert trained and all(".modules_to_save.default." in n for n in trained), trained


def test_reference_through_disabled_adapters_equals_the_base_model(folders):
    """After training moved the adapters, the policy's base (adapters off) gives the log-probs
    of a separately loaded base model; with adapters on it does not."""
    from tokenreward.generation import Batch, response_logprobs
    from tokenreward.lora import BaseModelView, add_adapters
    from tokenreward.models import load_causal_lm
    from tokenreward.trainers.sft import SFTConfig

    policy = add_adapters(
        load_causal_lm(str(folders / "policy")), SFTConfig(data="", policy="", lora_r=4), "CAUSAL_LM"
    )
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5, generator=torch.Generator().manual_seed(len(name)))
    base = load_causal_lm(str(folders / "policy"))
    ids = torch.tensor([[0, 0, 5, 9, 14, 3, 7], [4, 8, 15, 16, 23, 42, 11]])
    mask = (torch.arange(7) >= torch.tensor([[2], [0]])).long()
    positions = torch.tensor([[4, 5, 6], [4, 5, 6]])
    batch = Batch(ids, mask, positions, ids.gather(1, positions), torch.ones_like(positions, dtype=torch.bool))
    expected = response_logprobs(base, batch, 1.0)
    view = BaseModelView(policy)
    assert torch.allclose(response_logprobs(view, batch, 1.0), expected, atol=1e-5, rtol=0)
    assert not torch.allclose(response_logprobs(policy, batch, 1.0), expected, atol=1e-3)
    view.eval().requires_grad_(False)
    assert all(p.requires_grad for n, p in policy.named_parameters() if "lora_" in n)  # the view froze nothing


def test_final_adapter_loads_merged_and_is_small(folders, tmp_path):
    from peft import PeftModel

    from tokenreward.models import load_causal_lm

    out = tmp_path / "run"
    assert main(sft(folders, out, *LORA, "--learning-rate", "1e-2", "--keep-checkpoints", "3")) == 0
    final = out / "final"
    assert (final / "adapter_config.json").is_file() and (final / "tokenizer.json").is_file()
    assert not (final / "config.json").exists()
    steps = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert steps == ["step-2", "step-3", "step-4"]  # 8 records / 2 per step, the newest 3 kept
    assert {p.name for p in (out / "checkpoints" / "step-4" / "model").iterdir()} == {
        "adapter_config.json",
        "adapter_model.safetensors",
        "README.md",
    }
    adapter = (final / "adapter_model.safetensors").stat().st_size
    model = (folders / "policy" / "model.safetensors").stat().st_size
    assert adapter < model / 5, (adapter, model)
    ids = torch.tensor([[3, 14, 15, 92, 65, 35]])
    on_base = PeftModel.from_pretrained(load_causal_lm(str(folders / "policy")), str(final)).eval()
    with torch.no_grad():
        expected = on_base(input_ids=ids).logits
        merged = load_causal_lm(str(final)).eval()
        assert not any("lora" in n for n, _ in merged.named_parameters())
        assert torch.allclose(merged(input_ids=ids).logits, expected, atol=1e-5, rtol=0)
        base = load_causal_lm(str(folders / "policy")).eval()
        assert not torch.allclose(base(input_ids=ids).logits, expected, atol=1e-3)  # the adapter learned something

    again = tmp_path / "again"  # LoRA on top of the first adapter: its base is that adapter folder
    assert main(sft(folders, again, *LORA, "--learning-rate", "1e-2", "--policy", str(final))) == 0
    assert json.loads((again / "final" / "adapter_config.json").read_text())["base_model_name_or_path"] == str(final)
    with torch.no_grad():
        stacked = PeftModel.from_pretrained(load_causal_lm(str(final)), str(again / "final")).eval()
        expected_stacked = stacked(input_ids=ids).logits
        assert torch.allclose(load_causal_lm(str(again / "final"))(input_ids=ids).logits, expected_stacked, atol=1e-5)

    merged_out = tmp_path / "merged"
    assert main(sft(folders, merged_out, *LORA, "--learning-rate", "1e-2", "--merge")) == 0
    assert (merged_out / "final" / "config.json").is_file()
    assert not (merged_out / "final" / "adapter_config.json").exists()
    with torch.no_grad():
        plain = load_causal_lm(str(merged_out / "final")).eval()
        assert torch.allclose(plain(input_ids=ids).logits, expected, atol=1e-5, rtol=0)


def test_reward_model_adapter_loads_with_its_trained_head(folders, tmp_path):
    from peft import PeftModel

    from tokenreward.models import load_reward_model, scalar_head_from_lm

    out = tmp_path / "rm"
    args = ["train", "reward-model", "--data", str(folders / "pairs.jsonl"), "--model", str(folders / "policy"),
            "--batch-size", "4", "--out", str(out), "--no-progress", *LORA, "--learning-rate", "1e-2"]  # fmt: skip
    assert main(args) == 0
    saved = json.loads((out / "final" / "adapter_config.json").read_text())
    assert "score" in saved["modules_to_save"]
    ids = torch.tensor([[3, 14, 15, 92, 65, 35], [7, 7, 1, 2, 3, 4]])
    on_base = PeftModel.from_pretrained(scalar_head_from_lm(folders / "policy"), str(out / "final")).eval()
    with torch.no_grad():
        expected = on_base(input_ids=ids).logits
        merged = load_reward_model(str(out / "final"))
        assert merged.config.pad_token_id is not None
        assert torch.allclose(merged(input_ids=ids).logits, expected, atol=1e-5, rtol=0)


def test_ppo_lora_with_a_bf16_reference_and_kept_checkpoints(folders, tmp_path):
    """A float32 LoRA policy (and critic) beside a frozen bf16 `--reference`; `--keep-checkpoints 1`."""
    out = tmp_path / "ppo"
    args = ["train", "ppo", "--policy", str(folders / "policy"), "--reward-model", str(folders / "rm"),
            "--reference", str(folders / "policy"), "--dtype", "bfloat16", "--prompts", str(folders / "prompts.jsonl"),
            "--steps", "2", "--batch-size", "2", "--mini-batch-size", "2", "--ppo-epochs", "1",
            "--max-new-tokens", "4", "--save-every", "1", "--keep-checkpoints", "1",
            "--out", str(out), "--no-progress", *LORA]  # fmt: skip
    assert main(args) == 0
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-2"]
    saved = {p.name for p in (out / "checkpoints" / "step-2").iterdir()}
    assert {"policy", "critic", "state.pt"} <= saved
    assert (out / "checkpoints" / "step-2" / "critic" / "adapter_model.safetensors").is_file()
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(torch.isfinite(torch.tensor(r["kl"])) for r in rows)
    assert (out / "final" / "adapter_config.json").is_file()


def test_gradient_checkpointing_keeps_the_lora_losses(folders, tmp_path):
    """Activations recomputed in the backward pass still reach the adapters (frozen embeddings
    give the checkpointed blocks inputs without gradients): the same losses, step after step."""
    losses = []
    for flags in ([], ["--gradient-checkpointing"]):
        out = tmp_path / ("gc" if flags else "plain")
        assert main(sft(folders, out, *LORA, "--learning-rate", "1e-2", *flags)) == 0
        losses.append([json.loads(line)["loss"] for line in (out / "log.jsonl").read_text().splitlines()])
    assert losses[0] == pytest.approx(losses[1], abs=1e-5)
    assert losses[0][-1] < losses[0][0]


def test_tdpo_reads_its_reference_distributions_through_disabled_adapters(folders, tmp_path, monkeypatch):
    """At step 1 the adapters are zero, so the policy is its base: the implicit rewards are 0 and
    the sequence KL to the reference (the same model with adapters off) is 0 up to rounding."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "tdpo"
    args = ["train", "tdpo1", "--data", str(folders / "pairs.jsonl"), "--policy", str(folders / "policy"),
            "--steps", "2", "--batch-size", "2", "--learning-rate", "1e-2", "--out", str(out), "--no-progress", *LORA]  # fmt: skip
    assert main(args) == 0
    first, second = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert first["reward_chosen"] == first["reward_rejected"] == 0.0
    assert abs(first["seqkl_chosen"]) < 1e-4 and abs(first["seqkl_rejected"]) < 1e-4
    assert second["seqkl_chosen"] > 1e-3  # the adapters moved the policy away from its base
