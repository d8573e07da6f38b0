"""`bench rl --reward verifiable`: methods with their own estimator (`TRAINER-REWARDER:ESTIMATOR`),
training and held-out prompts of the verifiable families, and the accuracy as the held-out score."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from tokenreward.bench.rl import RLBenchConfig, run
from tokenreward.bench.rl_methods import Method, resolve_method, trainer_config
from tokenreward.jsonl import read_jsonl
from tokenreward.world.oracle import canonical_answer, oracle_reward, verifiable_families


@pytest.fixture
def right_every_other(monkeypatch, small_world):
    """Held-out evaluations in which every second response is the canonical (right) answer: the
    small world's SFT policy is never right, and an accuracy of 0 everywhere would prove nothing."""
    import dataclasses

    import tokenreward.evaluation as evaluation
    from tokenreward.generation import Generations

    original = evaluation.generate

    def generate(policy, tokenizer, prompts, *args, **kwargs):
        out = original(policy, tokenizer, prompts, *args, **kwargs)
        return Generations(
            [
                dataclasses.replace(g, text=canonical_answer(small_world.prompt_record(p))) if i % 2 else g
                for i, (p, g) in enumerate(zip(prompts, out))
            ]
        )

    monkeypatch.setattr(evaluation, "generate", generate)


def test_a_method_names_its_estimator_after_a_colon(tmp_path):
    method = resolve_method("rloo-verifiable:gtpo")
    assert method == Method("rloo-verifiable:gtpo", "rloo", "verifiable", "gtpo")
    assert resolve_method("rloo:ktae") == Method("rloo:ktae", "rloo", None, "ktae")
    config = trainer_config(method, tmp_path, 3, 1, tmp_path / "run", {"estimator": "rloo_token"}, resume=False)
    assert (config.estimator, config.rewarder, config.steps, config.seed) == ("gtpo", "verifiable", 3, 1)
    with pytest.raises(ValueError, match="unknown estimator 'gtpoo'; known: .*grpo_s"):
        resolve_method("rloo-verifiable:gtpoo")
    with pytest.raises(ValueError, match="trainer 'dpo' cannot be driven .* lacks the field\\(s\\) estimator"):
        trainer_config(resolve_method("dpo:gtpo"), tmp_path, 1, 0, tmp_path / "d", {}, resume=False)


def test_the_verifiable_evaluation_is_the_oracles_accuracy_on_the_verifiable_families(small_world, right_every_other):
    from tokenreward.evaluation import evaluate_policy

    families = [f for f in small_world.families if f in verifiable_families()]
    result = evaluate_policy(
        small_world.policy_dir,
        small_world,
        n=8,
        greedy=False,
        seed=3,
        families=families,
        reward="verifiable",
        max_new_tokens=16,
    )
    expected_prompts = [r for r in small_world.prompts("test") if r["family"] in families][:8]
    assert [s["prompt"] for s in result["samples"]] == [r["prompt"] for r in expected_prompts]
    verdicts = [oracle_reward(r, s["response"], "verifiable") for r, s in zip(expected_prompts, result["samples"])]
    assert [s["oracle_score"] for s in result["samples"]] == verdicts and 0 < sum(verdicts) < len(verdicts)
    assert result["oracle_score"] == pytest.approx(statistics.fmean(verdicts))


def test_bench_rl_compares_estimators_on_the_verifiable_reward(small_world, tmp_path, right_every_other):
    methods = ["rloo-verifiable:grpo_return", "rloo-verifiable:gtpo"]
    options = ["batch_size=2", "samples_per_prompt=2", "mini_batch_size=4", "max_new_tokens=12", "kl_in=loss"]
    config = RLBenchConfig(
        out=tmp_path / "bench",
        methods=methods,
        baseline=methods[0],
        reward="verifiable",
        seeds=1,
        steps=2,
        eval_every=1,
        eval_prompts=6,
        window=1,
        samples=1,
        world=Path(small_world.root),
        heatmap_rewarder="verifiable",
        trainer_options=[*options, "kl_estimator=k3"],
    )
    results = json.loads(run(config).read_text())
    families = [f for f in small_world.families if f in verifiable_families()]
    index = {r["prompt"]: r for r in small_world.prompts("test")}
    assert results["reward"] == "verifiable"
    sft = json.loads((config.out / "sft" / "eval-seed-0.json").read_text())["sampled"]
    assert {s["family"] for s in sft["samples"]} <= set(families)
    accuracy = statistics.fmean(oracle_reward(index[s["prompt"]], s["response"], "verifiable") for s in sft["samples"])
    assert 0 < accuracy < 1 and results["sft"]["oracle_score"]["mean"] == pytest.approx(accuracy)
    for name in methods:
        run_dir = config.out / name / "seed-0"
        done = json.loads((run_dir / "done.json").read_text())
        assert done["config"]["estimator"] == name.split(":")[1] and done["config"]["prompt_families"] == families
        log = read_jsonl(run_dir / "log.jsonl")
        # the rewarder's reward is the oracle's 1/0, which the trainer also logs as the rollouts' accuracy
        assert [r["reward"] for r in log] == pytest.approx([r["oracle_accuracy"] for r in log])
        final = json.loads((run_dir / "eval.json").read_text())["sampled"]
        verdicts = [oracle_reward(index[s["prompt"]], s["response"], "verifiable") for s in final["samples"]]
        assert results["methods"][name]["oracle_score"]["mean"] == pytest.approx(statistics.fmean(verdicts))
        assert results["matched_kl"]["methods"][name]["of"] == 1
    with pytest.raises(ValueError, match="method 'dpo' cannot train on the verifiable families only"):
        run(RLBenchConfig(**{**config.__dict__, "methods": ["dpo"], "trainer_options": [], "out": tmp_path / "d"}))
