"""The PPO / ReMax / RLOO trainer on tiny models and a tiny prompt file: logs, resume, bad input."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from tokenreward.generation import generate
from tokenreward.jsonl import read_jsonl
from tokenreward.rewards import Rewarder, TokenRewards, build_rewarder
from tokenreward.testing import tiny_causal_lm, tiny_config, tiny_reward_model
from tokenreward.trainers.checkpoints import latest_checkpoint
from tokenreward.trainers.ppo import (
    PPOConfig,
    PPOTrainer,
    ReMaxConfig,
    RLOOConfig,
    policy_token_rewards,
    prepare_prompts,
    run,
)
from tokenreward.trainers.ppo import trainer as ppo_module

PROMPTS = [
    "What is 17 + 25?",
    "The capital of France is",
    "The first five primes are",
    "Thank you for asking,",
    "Samosa is a",
    "Hello world!",
    "The capital of Peru is",
    "You are",
]
FAST = dict(
    steps=2,
    batch_size=4,
    mini_batch_size=4,
    ppo_epochs=1,
    max_new_tokens=6,
    progress=False,
    learning_rate=1e-3,
    critic_learning_rate=1e-3,
)


@pytest.fixture(scope="module")
def files(tmp_path_factory, tokenizer, other_tokenizer):
    """Tiny policy, reward model and prompt file on disk, plus a policy on another tokenizer."""
    root = tmp_path_factory.mktemp("ppo")
    tiny_causal_lm("gpt2", tokenizer).save_pretrained(root / "policy")
    tokenizer.save_pretrained(root / "policy")
    tiny_reward_model("gpt2", tokenizer).save_pretrained(root / "rm")
    tokenizer.save_pretrained(root / "rm")
    long_rm = AutoModelForSequenceClassification.from_config(
        tiny_config("gpt2", len(tokenizer), tokenizer.pad_token_id, num_labels=1, n_positions=512)
    )
    long_rm.save_pretrained(root / "long_rm")
    tokenizer.save_pretrained(root / "long_rm")
    tiny_causal_lm("llama", other_tokenizer).save_pretrained(root / "other_policy")
    other_tokenizer.save_pretrained(root / "other_policy")
    (root / "prompts.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    return root


def config(files, out, cls=PPOConfig, **overrides):
    values = dict(FAST, policy=files / "policy", reward_model=files / "rm", prompts=files / "prompts.jsonl", out=out)
    values.update(overrides)
    for name in cls.unused_settings("ppo", values):  # critic-free: no critic settings
        if name not in overrides:
            values.pop(name, None)
    return cls(**values)


def weights(folder):
    from safetensors.torch import load_file

    return load_file(str(next(Path(folder).glob("*.safetensors"))))


def test_ppo_run_logs_each_step_and_saves_an_updated_policy(files, tmp_path):
    out = run(config(files, tmp_path / "run"), "ppo")
    log = read_jsonl(out / "log.jsonl")
    assert [r["step"] for r in log] == [1, 2]
    for key in ("reward", "kl", "length", "entropy", "value_loss", "policy_loss", "clip_frac", "tokens_generated"):
        assert all(isinstance(r[key], float | int) for r in log), key
    assert log[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # the policy starts as the reference
    assert 1 <= log[0]["length"] <= 6
    final, initial = weights(out / "final"), weights(files / "policy")
    assert set(final) == set(initial)
    assert any(not torch.equal(final[k], initial[k]) for k in final)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    AutoModelForCausalLM.from_pretrained(str(out / "final"))
    AutoTokenizer.from_pretrained(str(out / "final"))


def test_logged_reward_is_the_reward_models_mean_score_of_the_rollout(files, tmp_path, tokenizer, monkeypatch):
    seen = {}
    real = ppo_module.policy_token_rewards

    def spy(rewarder, prompts, generations):
        seen.setdefault("batch", (list(prompts), generations.texts))
        return real(rewarder, prompts, generations)

    monkeypatch.setattr(ppo_module, "policy_token_rewards", spy)
    out = run(config(files, tmp_path / "run", steps=1), "ppo")
    from transformers import AutoModelForSequenceClassification

    rm = AutoModelForSequenceClassification.from_pretrained(str(files / "rm")).eval()
    prompts, texts = seen["batch"]
    with torch.no_grad():
        scores = [rm(**tokenizer(p + t, return_tensors="pt")).logits.item() for p, t in zip(prompts, texts)]
    assert read_jsonl(out / "log.jsonl")[0]["reward"] == pytest.approx(sum(scores) / len(scores), abs=1e-4)


def test_killed_and_resumed_run_ends_with_the_same_weights(files, tmp_path, monkeypatch):
    method, cls = "ppo", PPOConfig
    settings = dict(steps=4, save_every=2, mini_batch_size=2, ppo_epochs=2)
    unbroken = run(config(files, tmp_path / "unbroken", cls, **settings), method)

    real_step = PPOTrainer.step

    def dies_in_step_four(self, step):
        if step == 3:
            raise KeyboardInterrupt("killed")
        return real_step(self, step)

    monkeypatch.setattr(PPOTrainer, "step", dies_in_step_four)
    with pytest.raises(KeyboardInterrupt):
        run(config(files, tmp_path / "broken", cls, **settings), method)
    assert latest_checkpoint(tmp_path / "broken").name == "step-2"
    assert [r["step"] for r in read_jsonl(tmp_path / "broken" / "log.jsonl")] == [1, 2, 3]
    monkeypatch.setattr(PPOTrainer, "step", real_step)
    resumed = run(config(files, tmp_path / "broken", cls, resume=True, **settings), method)

    for name in ("policy", "critic"):
        a, b = weights(unbroken / "checkpoints" / "step-4" / name), weights(resumed / "checkpoints" / "step-4" / name)
        assert all(torch.equal(a[k], b[k]) for k in a), name
    final_a, final_b = weights(unbroken / "final"), weights(resumed / "final")
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)
    strip = lambda log: [{k: v for k, v in r.items() if not k.startswith("time_")} for r in log]  # noqa: E731
    assert strip(read_jsonl(unbroken / "log.jsonl")) == strip(read_jsonl(resumed / "log.jsonl"))


def test_resume_of_an_empty_folder_starts_the_run(files, tmp_path):
    run(config(files, tmp_path / "fresh", resume=True, steps=1), "ppo")
    assert [r["step"] for r in read_jsonl(tmp_path / "fresh" / "log.jsonl")] == [1]


def test_a_finished_run_is_not_overwritten_without_resume(files, tmp_path):
    run(config(files, tmp_path / "run", steps=1), "ppo")
    with pytest.raises(ValueError, match="holds a finished run; pass --resume"):
        run(config(files, tmp_path / "run", steps=1), "ppo")
    with pytest.raises(ValueError, match=r"settings differ from the run's \(kl_coef: 0.02 -> 0.5\)"):
        run(config(files, tmp_path / "run", steps=2, resume=True, kl_coef=0.5), "ppo")


def test_nan_reward_refuses_the_step_and_names_the_batch(files, tmp_path, monkeypatch):
    real_build = ppo_module.build_rewarder

    class PoisonedSecondCall:
        def __init__(self, inner):
            self.inner, self.calls, self.name = inner, 0, inner.name

        def score(self, prompts, responses, align_to=None):
            self.calls += 1
            result = self.inner.score(prompts, responses, align_to=align_to)
            if self.calls == 2:
                result.rewards[1, 0] = float("nan")
            return result

    monkeypatch.setattr(ppo_module, "build_rewarder", lambda *a, **k: PoisonedSecondCall(real_build(*a, **k)))
    trainer = PPOTrainer(config(files, tmp_path / "run", steps=3, save_every=1), "ppo")
    with pytest.raises(
        FloatingPointError,
        match=r"step 2: rewarder 'sparse' gave a non-finite reward on the batch of prompts \[\d+(, \d+)*\].*refused",
    ):
        trainer.train()
    after_step_one = weights(tmp_path / "run" / "checkpoints" / "step-1" / "policy")
    held = trainer.accelerator.unwrap_model(trainer.policy).state_dict()
    assert all(torch.equal(held[k], after_step_one[k]) for k in after_step_one)
    assert [r["step"] for r in read_jsonl(tmp_path / "run" / "log.jsonl")] == [1]


def test_prompts_longer_than_the_context(files, tmp_path, tokenizer):
    long_prompt = "The capital of France is Paris. " * 20
    path = tmp_path / "long.jsonl"
    path.write_text(json.dumps({"prompt": "Hello"}) + "\n" + json.dumps({"prompt": long_prompt}) + "\n")
    with pytest.raises(
        ValueError,
        match=r"1 prompt\(s\) are longer.*prompt 1 is \d+ tokens.*context of 128 minus --max-new-tokens 6 leaves 122.*--truncate-prompts",
    ):
        run(config(files, tmp_path / "a", prompts=path, batch_size=2, mini_batch_size=2), "ppo")
    ids, prompts = prepare_prompts(tokenizer, [{"prompt": "Hello"}, {"prompt": long_prompt}], 6, 128, truncate=True)
    assert len(ids[1]) == 122 and ids[1] == tokenizer(long_prompt)["input_ids"][-122:]
    assert long_prompt.endswith(prompts[1]) and prompts[0] == "Hello"
    # the reward model re-tokenizes prompt + response (a random policy's byte soup can take more
    # tokens), so it gets a longer context here
    cfg = config(
        files,
        tmp_path / "b",
        prompts=path,
        batch_size=2,
        mini_batch_size=2,
        steps=1,
        truncate_prompts=True,
        reward_model=files / "long_rm",
    )
    out = run(cfg, "ppo")
    assert len(read_jsonl(out / "log.jsonl")) == 1


def test_sparse_rewarder_gives_the_classic_layout_on_policy_tokens(tokenizer):
    """Score on the last real generated token (the EOS when the policy stopped), never on padding."""
    policy = tiny_causal_lm("qwen2", tokenizer)
    reward_model = tiny_reward_model("qwen2", tokenizer)
    greedy = generate(policy, tokenizer, PROMPTS, max_new_tokens=8, do_sample=False)
    stopper = copy.deepcopy(tokenizer)
    stopper.eos_token = tokenizer.convert_ids_to_tokens(greedy[0].response_ids[2])
    gens = generate(policy, stopper, PROMPTS, max_new_tokens=8, do_sample=False)
    assert any(g.finished for g in gens) and len({len(g.response_ids) for g in gens}) > 1
    sparse = build_rewarder("sparse", reward_model=reward_model, tokenizer=tokenizer, device="cpu")
    result = policy_token_rewards(sparse, PROMPTS, gens)
    rows, sequence = [torch.tensor(result.token_rewards(i)) for i in range(len(result))], result.sequence_rewards
    assert result.offsets == [g.offsets for g in gens]
    with torch.no_grad():
        for i, (prompt, g) in enumerate(zip(PROMPTS, gens)):
            if not g.text.strip():
                continue
            score = reward_model(**tokenizer(prompt + g.text, return_tensors="pt")).logits.item()
            expected = torch.zeros(len(g.response_ids))
            expected[-1] = score
            torch.testing.assert_close(rows[i], expected, atol=1e-5, rtol=1e-5)
            assert sequence[i].item() == pytest.approx(score, abs=1e-5)


def test_rewarder_on_another_tokenizer_is_aligned_by_offsets(files, tmp_path, other_tokenizer, tokenizer):
    """RED scored with the reward model's tokenizer, re-projected onto the policy's tokens: each
    response keeps its reward total; the trainer runs with such a pair."""
    policy = tiny_causal_lm("llama", other_tokenizer)
    gens = generate(policy, other_tokenizer, PROMPTS, max_new_tokens=8, do_sample=True, generator_seed=0)
    red = build_rewarder("red", reward_model=files / "rm", device="cpu")
    result = policy_token_rewards(red, PROMPTS, gens)
    rows = [torch.tensor(result.token_rewards(i)) for i in range(len(result))]
    own = red.score(PROMPTS, gens.texts)
    for i, g in enumerate(gens):
        assert len(rows[i]) == len(g.response_ids)
        if g.text.strip():
            assert rows[i].sum().item() == pytest.approx(sum(own.token_rewards(i)), abs=1e-4)
    cfg = config(
        files, tmp_path / "mixed", policy=files / "other_policy", rewarder="red", critic_init="policy", steps=1
    )
    assert len(read_jsonl(run(cfg, "ppo") / "log.jsonl")) == 1
    with pytest.raises(ValueError, match="tokenizer .* differs from the policy's"):
        run(config(files, tmp_path / "bad", policy=files / "other_policy", steps=1), "ppo")


def test_remax_and_rloo_train(files, tmp_path):
    remax = read_jsonl(run(config(files, tmp_path / "remax", ReMaxConfig, steps=1), "remax") / "log.jsonl")
    assert "greedy_reward" in remax[0] and "value_loss" not in remax[0]
    rloo = read_jsonl(
        run(config(files, tmp_path / "rloo", RLOOConfig, steps=1, batch_size=2, mini_batch_size=8), "rloo")
        / "log.jsonl"
    )
    assert rloo[0]["tokens_generated"] >= 8  # 2 prompts x 4 samples
    with pytest.raises(ValueError, match="at least 2"):
        run(config(files, tmp_path / "k1", RLOOConfig, samples_per_prompt=1), "rloo")


@pytest.mark.parametrize("estimator", ["gtpo", "grpo_s", "ktae"])
def test_rloo_with_the_verifiable_reward_estimators(files, tmp_path, tokenizer, estimator, monkeypatch):
    """One step with each: the estimator gets the rollout's entropies, token ids and the EOS id."""
    seen = {}
    original = ppo_module.estimate_advantages

    def spy(name, batch, settings):
        seen.update(name=name, batch=batch, settings=settings)
        return original(name, batch, settings)

    monkeypatch.setattr(ppo_module, "estimate_advantages", spy)
    cfg = config(
        files, tmp_path / estimator, RLOOConfig, steps=1, batch_size=2, mini_batch_size=8, estimator=estimator
    )
    log = read_jsonl(run(cfg, "rloo") / "log.jsonl")
    assert len(log) == 1 and "value_loss" not in log[0]
    batch = seen["batch"]
    assert seen["name"] == estimator and seen["settings"].ktae_ignored_token == tokenizer.eos_token_id
    assert batch.entropy.shape == batch.mask.shape and torch.all(batch.entropy[batch.mask] >= 0)
    assert batch.token_ids.shape == batch.mask.shape and batch.token_ids.dtype == torch.long


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(kl_in="loss", kl_estimator="k1"), "zero expected gradient"),
        (dict(mini_batch_size=3), "must divide the 4 responses"),
        (dict(policy=Path("no/such/folder")), "no model folder"),
        (dict(prompts=Path("no/such/prompts.jsonl")), "no file"),
        (dict(rewarder_options=["keep_sum"]), "expects NAME=VALUE"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_message(files, tmp_path, overrides, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        run(config(files, tmp_path / "run", **overrides), "ppo")


def test_a_blank_response_gets_the_lowest_sequence_reward_of_its_batch(files, tokenizer):
    from tokenreward.align import offsets_from_ids
    from tokenreward.generation import Generation, Generations

    texts = ["The capital of France is Paris.", "Hello world!"]
    items = []
    for text in texts:
        ids = tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]
        decoded, offsets = offsets_from_ids(tokenizer, ids)
        items.append(Generation([1], ids, decoded, offsets, True))
    items.append(Generation([1], [tokenizer.eos_token_id], "", [(0, 0)], True))
    sparse = build_rewarder("sparse", reward_model=files / "rm", device="cpu")
    result = policy_token_rewards(sparse, ["Q: ", "Q: ", "Q: "], Generations(items))
    rows, sequence = [torch.tensor(result.token_rewards(i)) for i in range(len(result))], result.sequence_rewards
    scores = sparse.score(["Q: ", "Q: "], texts).sequence_rewards
    assert sequence[2].item() == pytest.approx(min(scores.tolist()), abs=1e-6)
    assert rows[2].tolist() == pytest.approx([min(scores.tolist())], abs=1e-6)
    assert rows[0][-1].item() == pytest.approx(scores[0].item(), abs=1e-5) and rows[0][:-1].abs().sum() == 0


def test_each_pass_over_the_prompts_visits_every_prompt_once():
    from tokenreward.trainers.ppo import step_prompt_indices

    order = [i for step in range(6) for i in step_prompt_indices(8, 4, step, seed=3)]
    assert sorted(order[:8]) == sorted(order[8:16]) == sorted(order[16:]) == list(range(8))
    assert order[:8] != order[8:16]
    assert step_prompt_indices(8, 4, 1, seed=3) == order[4:8]


def test_on_the_world_the_oracle_grades_each_rollout(small_world, tmp_path, monkeypatch):
    from tokenreward.world.oracle import grade

    seen = []
    real = ppo_module.policy_token_rewards

    def spy(rewarder, prompts, generations):
        seen.append((list(prompts), generations.texts))
        return real(rewarder, prompts, generations)

    monkeypatch.setattr(ppo_module, "policy_token_rewards", spy)
    cfg = PPOConfig(out=tmp_path / "run", world=Path(small_world.root), rewarder="red", steps=2, batch_size=4, mini_batch_size=4,
                    max_new_tokens=16, progress=False)  # fmt: skip
    log = read_jsonl(run(cfg, "ppo") / "log.jsonl")
    records = {r["prompt"]: r for r in small_world.prompts("rl")}
    for record, (prompts, texts) in zip(log, seen):
        expected = sum(grade(records[p], t).score for p, t in zip(prompts, texts)) / len(texts)
        assert record["oracle_score"] == pytest.approx(expected, abs=1e-5)


class LetterRewarder(Rewarder):
    """+1 for every letter `e` of the response (a dense reward with an obvious optimum)."""

    name = "letter-e"

    def _score_batch(self, prompts, responses):
        offsets = [[(i, i + 1) for i in range(len(r))] for r in responses]
        rewards = [[float(c == "e") for c in r] for r in responses]
        return TokenRewards.from_lists(self.name, responses, offsets, rewards, [sum(r) for r in rewards])


@pytest.mark.parametrize("method, cls", [("ppo", PPOConfig), ("rloo", RLOOConfig)])
def test_training_raises_the_reward_on_a_toy_task(files, tmp_path, monkeypatch, method, cls):
    monkeypatch.setattr(ppo_module, "build_rewarder", lambda *a, **k: LetterRewarder())
    critic = {"critic_learning_rate": 3e-2} if method == "ppo" else {}  # rloo has no critic
    cfg = config(files, tmp_path / method, cls, steps=25, batch_size=8 if method == "ppo" else 2, mini_batch_size=8,
                 max_new_tokens=8, learning_rate=3e-2, **critic)  # fmt: skip
    rewards = [r["reward"] for r in read_jsonl(run(cfg, method) / "log.jsonl")]
    assert max(rewards[:3]) < 1.0  # a random policy writes few e's in 8 tokens
    assert sum(rewards[-5:]) / 5 > 4.0, rewards


def test_kl_as_a_loss_is_logged_and_kept_out_of_the_reward(files, tmp_path):
    log = read_jsonl(
        run(config(files, tmp_path / "k3", kl_in="loss", kl_estimator="k3", steps=2), "ppo") / "log.jsonl"
    )
    assert all(r["kl_loss"] >= 0 for r in log)
    assert all(r["return"] == pytest.approx(r["reward"], abs=1e-5) for r in log)  # no KL penalty in the reward
