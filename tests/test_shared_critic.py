"""`--critic-init shared`: the PPO critic as a value head on the policy's own transformer."""

from __future__ import annotations

import json

import pytest
import torch

from tokenreward.generation import generate, make_batch, response_token_stats
from tokenreward.testing import tiny_causal_lm, tiny_reward_model
from tokenreward.trainers.ppo import PPOConfig, run
from tokenreward.trainers.ppo.critic import SharedValueHead

PROMPTS = ["The capital of France is", "Hello world!", "The first five primes are", "You are"]


@pytest.fixture(scope="module")
def files(tmp_path_factory, tokenizer):
    root = tmp_path_factory.mktemp("shared")
    torch.manual_seed(0)
    tiny_causal_lm("gpt2", tokenizer).save_pretrained(root / "policy")
    tokenizer.save_pretrained(root / "policy")
    tiny_reward_model("gpt2", tokenizer).save_pretrained(root / "rm")
    tokenizer.save_pretrained(root / "rm")
    (root / "prompts.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    return root


def shared_config(files, out, **overrides) -> PPOConfig:
    values = dict(
        policy=files / "policy",
        reward_model=files / "rm",
        prompts=files / "prompts.jsonl",
        out=out,
        critic_init="shared",
        steps=2,
        batch_size=4,
        mini_batch_size=4,
        ppo_epochs=1,
        max_new_tokens=6,
        learning_rate=1e-3,
        critic_learning_rate=1e-3,
        progress=False,
    )
    return PPOConfig(**{**values, **overrides})


def test_values_are_the_head_on_the_hidden_state_each_token_is_predicted_from(tokenizer):
    torch.manual_seed(1)
    policy = tiny_causal_lm("gpt2", tokenizer).eval()
    generations = generate(policy, tokenizer, PROMPTS, 5, True, generator_seed=[(0, i) for i in range(len(PROMPTS))])
    batch = make_batch(generations, tokenizer.pad_token_id)
    head = SharedValueHead(policy.config.n_embd)
    with torch.no_grad():
        head.head.weight.normal_()
        head.head.bias.fill_(0.5)
        stats = response_token_stats(policy, batch, 1.0, hidden=True)
        plain = response_token_stats(policy, batch, 1.0)
        values = head(stats.hidden)
        last = policy(input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=True)
    before = last.hidden_states[-1]  # after the final layer norm: what the LM head reads
    for b in range(batch.tokens.shape[0]):
        for t in range(batch.tokens.shape[1]):
            h = before[b, batch.positions[b, t] - 1]
            expected = float(h @ head.head.weight[0].detach() + 0.5)
            assert float(values[b, t]) == pytest.approx(expected, rel=1e-5, abs=1e-5)
    assert torch.equal(stats.logprobs, plain.logprobs)  # reading the hidden states changes no log-prob


def test_the_value_loss_trains_the_policy_through_the_shared_head(files, tmp_path):
    from safetensors.torch import load_file

    finals = {}
    for coef in (0.1, 1.0):
        # the head starts at zero, so the value loss reaches the policy from the second update on
        out = run(shared_config(files, tmp_path / f"coef-{coef}", value_loss_coef=coef), "ppo")
        finals[coef] = load_file(str(out / "final" / "model.safetensors"))
        head = torch.load(out / "checkpoints" / "step-2" / "critic.pt")
        assert head["head.weight"].abs().sum() > 0  # the head trained from zero
    changed = [k for k in finals[0.1] if not torch.equal(finals[0.1][k], finals[1.0][k])]
    assert changed, "the value loss's weight did not reach the policy"


def test_lora_with_a_shared_critic_checkpoints_one_adapter_and_the_head(files, tmp_path):
    out = run(shared_config(files, tmp_path / "lora", lora_r=4, lora_alpha=8.0), "ppo")
    step = out / "checkpoints" / "step-2"
    assert sorted(p.name for p in step.iterdir()) == ["critic.pt", "policy", "state.pt"]
    assert (step / "policy" / "adapter_model.safetensors").is_file()
    head = torch.load(step / "critic.pt")
    assert {k: tuple(v.shape) for k, v in head.items()} == {"head.weight": (1, 32), "head.bias": (1,)}


def test_the_value_loss_weight_is_refused_without_a_shared_critic(files, tmp_path):
    with pytest.raises(ValueError, match=r"--value-loss-coef: only a shared critic uses it \(--critic-init shared\)"):
        shared_config(files, tmp_path / "x", critic_init="policy", value_loss_coef=0.5)
