"""tokenreward's TRL trainers with a `peft_config`, as TRL's own take it: only the adapters (and
`modules_to_save`) train, the base weights stay bitwise, the reference is the base with the adapters
disabled, and with a TRL peer (DPOTrainer, GRPOTrainer) the logged numbers are TRL's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM
from trl import DPOConfig, DPOTrainer, GRPOConfig, GRPOTrainer

from tokenreward.integrations.trl import (
    SePOConfig,
    SePOTrainer,
    TDPOConfig,
    TDPOTrainer,
    TokenRewardGRPOTrainer,
    TRegDPOConfig,
    TRegDPOTrainer,
)
from tokenreward.rewards import build_rewarder
from tokenreward.testing import tiny_config, tiny_reward_model

PAIRS = [
    {"prompt": "What is 17 + 25?", "chosen": " It is 42.", "rejected": " I do not know."},
    {"prompt": "The capital of France is", "chosen": " Paris.", "rejected": " a cheese, I think."},
]
PROMPTS = ["What is 17 + 25?", "The capital of France is"]
GROUP = 4
LOGGED = ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected")


def lora(random_adapters: bool = True) -> LoraConfig:
    """LoRA on the attention projections plus a trained copy of the final norm; `random_adapters`
    starts B away from zero, so the policy differs from its base from the first step."""
    return LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["q_proj", "v_proj"],
        modules_to_save=["norm"],
        init_lora_weights=not random_adapters,
        task_type="CAUSAL_LM",
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory, tok) -> dict[str, str]:
    root = tmp_path_factory.mktemp("trl-peft")
    paths = {}
    for name, seed in (("policy", 0), ("guide", 2)):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(
            tiny_config("llama", len(tok), tok.pad_token_id, max_position_embeddings=512)
        )
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
        paths[name] = str(root / name)
    return paths


def base_weights(path: str) -> dict[str, torch.Tensor]:
    return AutoModelForCausalLM.from_pretrained(path).state_dict()


def base_name(peft_name: str) -> str | None:
    """The base model's name of a PeftModel parameter; None for an adapter's own parameter."""
    if ".lora_" in peft_name or ".modules_to_save." in peft_name:
        return None
    name = peft_name.removeprefix("base_model.model.")
    return name.replace(".base_layer.", ".").replace(".original_module.", ".")


def assert_only_adapters_moved(model, base: dict[str, torch.Tensor], adapters_before: dict[str, torch.Tensor]):
    """Every base weight is bitwise the saved one; every trainable (adapter) parameter moved."""
    for name, param in model.named_parameters():
        key = base_name(name)
        if key is None:
            assert param.requires_grad, name
            assert not torch.equal(param.detach(), adapters_before[name]), f"{name} did not train"
        else:
            assert not param.requires_grad and torch.equal(param.detach(), base[key]), name
    assert any(".modules_to_save." in name for name in adapters_before)
    assert any(".lora_B." in name for name in adapters_before)


def trainable(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def dpo_args(config_class, out: Path, **overrides):
    values = {
        "output_dir": str(out),
        "per_device_train_batch_size": len(PAIRS),
        "report_to": [],
        "max_length": None,
        "use_cpu": True,
        "bf16": False,
        "save_strategy": "no",
        "max_steps": 2,
        "logging_steps": 1,
        "learning_rate": 1e-2,
        "seed": 0,
    }
    return config_class(**{**values, **overrides})


def logged(trainer) -> list[dict]:
    return [{k: h[k] for k in LOGGED if k in h} for h in trainer.state.log_history if "loss" in h]


def test_treg_alpha_zero_with_lora_is_trl_dpo_with_lora(tmp_path, tok, models):
    """T-REG with alpha = 0 is DPO: with the same LoRA config and seed, TRL's DPOTrainer logs the
    same numbers for 2 steps and trains the same adapters; the base weights stay bitwise."""
    trainers = []
    for trainer_class, config_class, extra in (
        (TRegDPOTrainer, TRegDPOConfig, {"alpha": 0.0}),
        (DPOTrainer, DPOConfig, {}),
    ):
        torch.manual_seed(0)  # LoRA's initialisation
        trainer = trainer_class(
            model=models["policy"],
            args=dpo_args(config_class, tmp_path / config_class.__name__, **extra),
            train_dataset=Dataset.from_list(PAIRS),
            processing_class=tok,
            peft_config=lora(),
        )
        assert trainer.ref_model is None  # the reference is the base, adapters disabled
        before = trainable(trainer.model)
        trainer.train()
        assert_only_adapters_moved(trainer.model, base_weights(models["policy"]), before)
        trainers.append(trainer)
    ours, theirs = trainers
    assert len(logged(ours)) == 2 and set(logged(ours)[0]) == set(LOGGED)
    for a, b in zip(logged(ours), logged(theirs)):
        assert a == pytest.approx(b, abs=1e-5)
    assert logged(ours)[0]["rewards/margins"] != 0.0  # adapters start away from zero: policy != reference
    for (name, a), (_, b) in zip(ours.model.named_parameters(), theirs.model.named_parameters()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0, msg=name)


@pytest.mark.parametrize("method", ["dpo_reg", "sepo"])
def test_token_rewards_read_the_base_with_adapters_disabled(tmp_path, tok, models, method):
    """The token rewarder's reference (contrastive for T-REG, implicit for SePO) is the base model:
    the token columns equal those of a full-model trainer given a fresh copy of the base as
    `ref_model`, though the adapters start away from zero."""
    trainer_class, config_class, extra = {
        "dpo_reg": (TRegDPOTrainer, TRegDPOConfig, {}),
        "sepo": (SePOTrainer, SePOConfig, {"guide_policy": models["guide"]}),
    }[method]
    torch.manual_seed(0)
    with_lora = trainer_class(
        model=models["policy"],
        args=dpo_args(config_class, tmp_path / "lora", **extra),
        train_dataset=Dataset.from_list(PAIRS),
        processing_class=tok,
        peft_config=lora(),
    )
    full = trainer_class(
        model=models["policy"],
        ref_model=AutoModelForCausalLM.from_pretrained(models["policy"]),
        args=dpo_args(config_class, tmp_path / "full", **extra),
        train_dataset=Dataset.from_list(PAIRS),
        processing_class=tok,
    )
    for column in ("chosen_token_rewards", "rejected_token_rewards"):
        ours, expected = with_lora.train_dataset[column], full.train_dataset[column]
        assert any(any(v != 0.0 for v in row) for row in expected)
        for a, b in zip(ours, expected):
            assert a == pytest.approx(b, abs=1e-6)
    before = trainable(with_lora.model)
    with_lora.train()
    assert len(logged(with_lora)) == 2
    assert_only_adapters_moved(with_lora.model, base_weights(models["policy"]), before)


def test_tdpo_with_lora_reads_the_given_reference(tmp_path, tok, models):
    """TDPO's KL needs the reference's logits: with a `ref_model` beside the LoRA policy its first
    loss is the full-model trainer's on the same policy (the adapters start at zero) and reference."""
    losses = []
    for adapters in (lora(random_adapters=False), None):
        torch.manual_seed(0)
        trainer = TDPOTrainer(
            model=models["policy"],
            ref_model=AutoModelForCausalLM.from_pretrained(models["guide"]),
            args=dpo_args(TDPOConfig, tmp_path / str(adapters is None)),
            train_dataset=Dataset.from_list(PAIRS),
            processing_class=tok,
            **({"peft_config": adapters} if adapters else {}),
        )
        with torch.no_grad():
            losses.append(float(trainer.compute_loss(trainer.model, next(iter(trainer.get_train_dataloader())))))
        if adapters is not None:
            before = trainable(trainer.model)
            trainer.train()
            assert_only_adapters_moved(trainer.model, base_weights(models["policy"]), before)
    assert losses[0] == pytest.approx(losses[1], abs=1e-6)
    assert abs(losses[0] - 0.6931471805599453) > 1e-3


def test_tdpo_with_lora_and_no_reference_is_refused(tmp_path, tok, models):
    with pytest.raises(ValueError, match="TDPOTrainer with PEFT adapters needs a ref_model"):
        TDPOTrainer(
            model=models["policy"],
            args=dpo_args(TDPOConfig, tmp_path),
            train_dataset=Dataset.from_list(PAIRS),
            processing_class=tok,
            peft_config=lora(),
        )


def grpo_args(out: Path) -> GRPOConfig:
    return GRPOConfig(
        output_dir=str(out),
        per_device_train_batch_size=2 * GROUP,
        num_generations=GROUP,
        max_completion_length=4,
        report_to=[],
        beta=0.04,  # the KL term reads the reference: the base, adapters disabled
        use_cpu=True,
        bf16=False,
        save_strategy="no",
        logging_steps=1,
        max_steps=2,
        learning_rate=1e-2,
        seed=0,
    )


def test_grpo_with_lora_is_trl_grpo_with_lora(tmp_path, tok, models):
    """Sparse token rewards give TRL's advantages, so with the same LoRA config and seed the run
    logs TRL's loss, reward and KL for 2 steps; only the adapters train."""
    reward_model = tiny_reward_model("llama", tok, seed=3)
    sparse = build_rewarder("sparse", reward_model=reward_model, tokenizer=tok, device="cpu")

    def reward_model_score(prompts, completions, **kwargs):
        return sparse.score(prompts, [c if c.strip() else " " for c in completions]).sequence_rewards.tolist()

    runs = []
    for name in ("ours", "trl"):
        torch.manual_seed(0)
        common = {
            "args": grpo_args(tmp_path / name),
            "train_dataset": Dataset.from_list([{"prompt": p} for p in PROMPTS]),
            "processing_class": tok,
            "peft_config": lora(),
        }
        if name == "ours":
            trainer = TokenRewardGRPOTrainer(models["policy"], sparse, **common)
        else:
            trainer = GRPOTrainer(models["policy"], reward_funcs=[reward_model_score], **common)
        before = trainable(trainer.model)
        torch.manual_seed(0)
        trainer.train()
        assert_only_adapters_moved(trainer.model, base_weights(models["policy"]), before)
        runs.append([h for h in trainer.state.log_history if "loss" in h])
    ours, theirs = runs
    assert len(ours) == 2
    for a, b in zip(ours, theirs):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
        assert a["reward"] == pytest.approx(b["reward"], abs=1e-5)
        assert a["kl"] == pytest.approx(b["kl"], abs=1e-6)
    assert ours[-1]["kl"] > 0.0  # the adapters start away from zero: policy != base
