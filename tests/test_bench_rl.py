"""`bench rl` machinery: method names, trainer configs, aggregation over seeds, and whole runs
with a fake registered trainer on the small world (skip, resume, changed settings)."""

from __future__ import annotations

import json
import random
import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tokenreward.bench.rl import RLBenchConfig, aggregate, run
from tokenreward.bench.rl_methods import parse_options, resolve_method, trainer_config
from tokenreward.trainers import register_trainer
from tokenreward.trainers.checkpoints import JsonlLogger, latest_checkpoint, load_checkpoint, save_checkpoint

CALLS: list[tuple[str, int, bool]] = []


@dataclass
class FakeRLConfig:
    out: Path
    world: Path | None = None
    steps: int = 10
    seed: int = 0
    rewarder: str = "sparse"
    resume: bool = False
    speed: float = 0.05
    crash_at: int = 0
    perturb: bool = False
    reward_model: str | None = None


@register_trainer(
    "fakerl", FakeRLConfig, help="test trainer: a logged oracle curve, the SFT policy (optionally perturbed) as final"
)
def fake_rl(config: FakeRLConfig, name: str) -> Path:
    """Logs `oracle_score = speed * step * (2 if red) + noise(seed)`; checkpoints every step;
    raises at `crash_at` (a killed run); `final` is the world's SFT policy, perturbed by the
    seed when `perturb`."""
    from tokenreward.models import load_causal_lm
    from tokenreward.world import open_world

    CALLS.append((config.rewarder, config.seed, config.resume))
    world = open_world(config.world)
    policy = load_causal_lm(world.policy_dir)
    counter = torch.nn.Linear(1, 1)
    start = load_checkpoint(config.out, {"counter": counter})[0] if config.resume else 0
    logger = JsonlLogger(config.out / "log.jsonl", resume_step=start, tensorboard=False)
    for step in range(start + 1, config.steps + 1):
        if step == config.crash_at:
            raise RuntimeError("killed")
        noise = random.Random(1000 * config.seed + step).gauss(0, 0.01)
        rate = config.speed * (2 if config.rewarder == "red" else 1)
        logger.log({"step": step, "reward": 0.0, "kl": 0.001 * step, "oracle_score": rate * step + noise})
        save_checkpoint(config.out, step, {"counter": counter})
    if config.perturb:
        generator = torch.Generator().manual_seed(config.seed)
        with torch.no_grad():
            for p in policy.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=generator))
    policy.save_pretrained(config.out / "final")
    return config.out / "final"


@dataclass
class FakeCheckpointedConfig:
    out: Path
    world: Path | None = None
    steps: int = 4
    seed: int = 0
    rewarder: str = "sparse"
    save_every: int = 50
    keep_checkpoints: int = 2


@register_trainer("fakeckpt", FakeCheckpointedConfig, help="test trainer: the SFT policy drifting each step")
def fake_checkpointed(config: FakeCheckpointedConfig, name: str) -> Path:
    """Adds `0.02 * noise(seed, rewarder)` to the SFT policy's weights every step (so its KL
    grows along training), checkpointing the policy every `save_every` steps and at the end."""
    from tokenreward.models import load_causal_lm
    from tokenreward.world import open_world

    policy = load_causal_lm(open_world(config.world).policy_dir)
    generator = torch.Generator().manual_seed(config.seed + (100 if config.rewarder == "red" else 0))
    noise = [torch.randn(p.shape, generator=generator) for p in policy.parameters()]
    logger = JsonlLogger(config.out / "log.jsonl", tensorboard=False)
    for step in range(1, config.steps + 1):
        with torch.no_grad():
            for p, n in zip(policy.parameters(), noise):
                p.add_(0.02 * n)
        logger.log({"step": step, "kl": 0.01 * step, "oracle_score": 0.1 * step})
        if step % config.save_every == 0 or step == config.steps:
            save_checkpoint(config.out, step, {"policy": policy}, keep=config.keep_checkpoints)
    policy.save_pretrained(config.out / "final")
    return config.out / "final"


@dataclass
class NoSeedConfig:
    out: Path
    world: Path | None = None
    steps: int = 1


@register_trainer("noseedrl", NoSeedConfig)
def no_seed(config: NoSeedConfig, name: str) -> Path:
    raise AssertionError("never run")


def test_method_names_resolve_through_the_registries():
    assert (resolve_method("fakerl").trainer, resolve_method("fakerl").rewarder) == ("fakerl", None)
    m = resolve_method("fakerl-red")
    assert (m.name, m.trainer, m.rewarder) == ("fakerl-red", "fakerl", "red")
    assert resolve_method("fakerl-uniform").rewarder == "uniform"
    with pytest.raises(ValueError, match="unknown method 'fakerl-nope'.*rewarders:.*red"):
        resolve_method("fakerl-nope")
    with pytest.raises(ValueError, match="unknown method 'nothing'.*trainers:.*fakerl"):
        resolve_method("nothing")


def test_trainer_config_sets_the_contract_fields_and_typed_options(tmp_path):
    options = parse_options(["speed=0.5", "perturb=true", "crash-at=3"])
    cfg = trainer_config(resolve_method("fakerl-red"), tmp_path / "w", 7, 2, tmp_path / "o", options, resume=True)
    assert cfg == FakeRLConfig(
        out=tmp_path / "o",
        world=tmp_path / "w",
        steps=7,
        seed=2,
        rewarder="red",
        resume=True,
        speed=0.5,
        crash_at=3,
        perturb=True,
    )
    plain = trainer_config(resolve_method("fakerl"), tmp_path, 1, 0, tmp_path, {"perturb": "false"}, resume=False)
    assert plain.rewarder == "sparse" and plain.perturb is False and plain.resume is False
    with pytest.raises(ValueError, match="speed"):
        trainer_config(resolve_method("fakerl"), tmp_path, 1, 0, tmp_path, {"speed": "fast"}, resume=False)
    with pytest.raises(ValueError, match="lacks the field.*seed"):
        trainer_config(resolve_method("noseedrl"), tmp_path, 1, 0, tmp_path, {}, resume=False)
    with pytest.raises(ValueError, match="lacks the field.*rewarder"):
        trainer_config(resolve_method("noseedrl-red"), tmp_path, 1, 0, tmp_path, {}, resume=False)
    with pytest.raises(ValueError, match="expects NAME=VALUE"):
        parse_options(["speed"])


def synthetic_eval(seed: int, oracle: float, greedy: float) -> dict:
    return {
        "sampled": {"oracle_score": oracle, "kl": 0.01 * seed, "length": 20 + seed, "defect_rate": 0.5},
        "greedy": {"oracle_score": greedy, "kl": 0.0, "length": 30, "defect_rate": 0.25},
    }


def synthetic_run(seed: int, curve: list[float], oracle: float) -> dict:
    log = [{"step": 10 * (k + 1), "oracle_score": v, "kl": 0.1} for k, v in enumerate(curve)]
    return {
        "seed": seed,
        "log": log,
        "eval": synthetic_eval(seed, oracle, -oracle),
        "done": {"train_seconds": 1.0 + seed},
    }


def test_options_go_only_to_the_trainers_that_use_them(tmp_path):
    """One option list for every run: the critic's settings reach ppo (gae) but not rloo, `gamma`
    reaches simpo but not dpo, and a run refused for them would otherwise stop the benchmark."""
    options = {"critic_learning_rate": "0.003", "gamma": "0.5"}
    ppo = trainer_config(resolve_method("ppo-red"), tmp_path, 1, 0, tmp_path / "p", options, resume=False)
    rloo = trainer_config(resolve_method("rloo-red"), tmp_path, 1, 0, tmp_path / "r", options, resume=False)
    assert (ppo.critic_learning_rate, ppo.gamma) == (0.003, 0.5)
    assert (rloo.critic_learning_rate, rloo.gamma) == (1e-4, 1.0)  # the defaults: nothing was given
    simpo = trainer_config(resolve_method("simpo"), tmp_path, 1, 0, tmp_path / "s", options, resume=False)
    dpo = trainer_config(resolve_method("dpo"), tmp_path, 1, 0, tmp_path / "d", options, resume=False)
    assert (simpo.gamma, dpo.gamma) == (0.5, 1.0)


def test_aggregate_matches_a_naive_computation(tmp_path):
    rng = random.Random(5)
    curves = {
        name: [[rng.uniform(0, 1) + 0.1 * k * (1 + i) for k in range(8)] for i in range(3)] for name in ("a", "b")
    }
    curves["b"][2] = curves["b"][2][:2]  # a run that logged fewer points than the window
    runs = {name: [synthetic_run(i, c, 0.3 + 0.1 * i) for i, c in enumerate(cs)] for name, cs in curves.items()}
    runs["b"][1]["eval"]["sampled"]["oracle_score"] = 0.9
    sft_runs = [{"seed": i, "eval": synthetic_eval(i, 0.1 * i, -2.0)} for i in range(3)]
    config = RLBenchConfig(out=tmp_path, methods=["fakerl-sparse", "fakerl-red"], seeds=3, window=3, baseline="a")
    methods = [resolve_method("fakerl-sparse"), resolve_method("fakerl-red")]
    methods = [type(m)(name, m.trainer, m.rewarder) for m, name in zip(methods, ("a", "b"))]
    results = aggregate(methods, runs, sft_runs, config)

    def smoothed(values, window=3):
        """(step, trailing mean) for every point with a full window."""
        return [
            (10 * (k + 1), statistics.fmean(values[k - window + 1 : k + 1])) for k in range(window - 1, len(values))
        ]

    target = statistics.fmean(smoothed(c)[-1][1] for c in curves["a"])
    assert results["target_oracle_score"] == pytest.approx(target)
    for name in ("a", "b"):
        entry = results["methods"][name]
        scores = [r["eval"]["sampled"]["oracle_score"] for r in runs[name]]
        assert entry["oracle_score"]["mean"] == pytest.approx(statistics.fmean(scores))
        assert entry["oracle_score"]["std"] == pytest.approx(statistics.stdev(scores))
        greedy = [r["eval"]["greedy"]["oracle_score"] for r in runs[name]]
        assert entry["greedy_oracle_score"]["mean"] == pytest.approx(statistics.fmean(greedy))
        assert entry["length"]["values"] == [20, 21, 22]
        expected_steps = [next((step for step, v in smoothed(c) if v >= target), None) for c in curves[name]]
        assert [r["steps_to_target"] for r in entry["runs"]] == expected_steps
        reached = [s for s in expected_steps if s is not None]
        assert entry["steps_to_target"]["reached"] == len(reached) and entry["steps_to_target"]["of"] == 3
        if reached:
            assert entry["steps_to_target"]["mean"] == pytest.approx(statistics.fmean(reached))
    assert results["methods"]["b"]["runs"][2]["steps_to_target"] is None
    assert results["sft"]["oracle_score"]["mean"] == pytest.approx(0.1)
    assert results["sft"]["greedy_oracle_score"]["values"] == [-2.0, -2.0, -2.0]


EVAL_PROMPTS = 4


def bench_config(out: Path, small_world, **overrides) -> RLBenchConfig:
    settings = dict(
        out=out,
        methods=["fakerl-sparse", "fakerl-red"],
        seeds=2,
        steps=6,
        world=Path(small_world.root),
        eval_prompts=EVAL_PROMPTS,
        window=2,
        samples=2,
        heatmap_rewarder="sparse",
        baseline="fakerl-sparse",
    )
    settings.update(overrides)
    return RLBenchConfig(**settings)


def test_bench_trains_evaluates_and_skips_finished_runs(small_world, tmp_path):
    from tokenreward.evaluation import evaluate_policy
    from tokenreward.models import load_causal_lm

    CALLS.clear()
    out = tmp_path / "bench"
    results = json.loads(run(bench_config(out, small_world, trainer_options=["perturb=true"])).read_text())
    assert sorted(CALLS) == [("red", 0, False), ("red", 1, False), ("sparse", 0, False), ("sparse", 1, False)]

    # the final policies were evaluated on the held-out prompts, each with its own seed, KL to the SFT policy
    reference = load_causal_lm(small_world.policy_dir).eval()
    sft = [
        evaluate_policy(
            load_causal_lm(small_world.policy_dir).eval(),
            small_world,
            split="test",
            reference=reference,
            n=EVAL_PROMPTS,
            greedy=False,
            seed=seed,
        )["oracle_score"]
        for seed in (0, 1)
    ]
    assert results["sft"]["oracle_score"]["values"] == pytest.approx(sft)
    red_run = results["methods"]["fakerl-red"]["runs"][1]
    final = load_causal_lm(out / "fakerl-red" / "seed-1" / "final").eval()
    for greedy, prefix in ((False, ""), (True, "greedy_")):
        direct = evaluate_policy(
            final, small_world, split="test", reference=reference, n=EVAL_PROMPTS, greedy=greedy, seed=1
        )
        for key in ("oracle_score", "kl", "length"):
            assert red_run[prefix + key] == pytest.approx(direct[key])
    assert red_run["kl"] != pytest.approx(0.0)

    # the fake curves: red climbs twice as fast, so it reaches sparse's final (smoothed) score about half-way
    logs = {
        m: [
            [json.loads(line) for line in (out / m / f"seed-{s}" / "log.jsonl").read_text().splitlines()]
            for s in (0, 1)
        ]
        for m in ("fakerl-sparse", "fakerl-red")
    }
    finals = [statistics.fmean(r["oracle_score"] for r in log[-2:]) for log in logs["fakerl-sparse"]]
    target = statistics.fmean(finals)
    assert results["target_oracle_score"] == pytest.approx(target)
    expected = []
    for log in logs["fakerl-red"]:
        scores = [r["oracle_score"] for r in log]
        expected.append(
            next(k + 1 for k in range(1, len(scores)) if statistics.fmean(scores[k - 1 : k + 1]) >= target)
        )
    assert [r["steps_to_target"] for r in results["methods"]["fakerl-red"]["runs"]] == expected
    assert max(expected) < 6
    for name in ("curves.png", "report.html", "samples.json"):
        assert (out / name).stat().st_size > 0
    report = (out / "report.html").read_text()
    assert "fakerl-red" in report and "tokenreward-heatmap" in report

    # a second call keeps every finished run; a deleted done marker re-runs that run only
    CALLS.clear()
    again = json.loads(run(bench_config(out, small_world, trainer_options=["perturb=true"])).read_text())
    assert CALLS == [] and again["methods"] == results["methods"]
    (out / "fakerl-sparse" / "seed-1" / "done.json").unlink()
    shutil.rmtree(out / "fakerl-sparse" / "seed-1" / "checkpoints")
    run(bench_config(out, small_world, trainer_options=["perturb=true"]))
    assert CALLS == [("sparse", 1, False)]

    # other settings for a finished run are refused, naming what changed
    with pytest.raises(ValueError, match="steps: 6 -> 8"):
        run(bench_config(out, small_world, steps=8, trainer_options=["perturb=true"]))


def test_killed_run_resumes_from_its_checkpoint(small_world, tmp_path):
    CALLS.clear()
    out = tmp_path / "bench"
    config = bench_config(out, small_world, methods=["fakerl-red"], seeds=1, trainer_options=["crash_at=4"])
    with pytest.raises(RuntimeError, match="killed"):
        run(config)
    assert latest_checkpoint(out / "fakerl-red" / "seed-0").name == "step-3"
    assert not (out / "fakerl-red" / "seed-0" / "done.json").exists()
    config.trainer_options = []
    run(config)
    assert CALLS == [("red", 0, False), ("red", 0, True)]
    done = json.loads((out / "fakerl-red" / "seed-0" / "done.json").read_text())
    assert done["resumed"] is True
    steps = [
        json.loads(line)["step"] for line in (out / "fakerl-red" / "seed-0" / "log.jsonl").read_text().splitlines()
    ]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_a_real_run_killed_before_its_first_checkpoint_starts_again_and_ends_as_unbroken(small_world, tmp_path):
    """A real trainer's folder holding a started run with no checkpoint (run.json, a partial log)
    is trained again from step 0 with the trainer's --resume, to the same final policy."""
    from tokenreward.models import load_causal_lm

    config = bench_config(tmp_path / "bench", small_world, methods=["rloo"], seeds=1, steps=2, eval_every=0)
    config.trainer_options = ["batch_size=2", "mini_batch_size=4"]
    run(config)
    run_dir = tmp_path / "bench" / "rloo" / "seed-0"
    unbroken = {k: v.clone() for k, v in load_causal_lm(run_dir / "final").state_dict().items()}
    for name in ("done.json", "done", "final", "checkpoints"):  # as if killed during step 1
        path = run_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    log = run_dir / "log.jsonl"
    log.write_text(log.read_text().splitlines()[0] + "\n")
    run(config)
    assert json.loads((run_dir / "done.json").read_text())["resumed"] is True
    again = load_causal_lm(run_dir / "final").state_dict()
    assert all(torch.equal(again[k], v) for k, v in unbroken.items())
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2]


def naive_reading(curve: list[tuple[int, float, float]], kl: float) -> float | None:
    """The score where the KL first reaches `kl`, linear in KL from the point before."""
    for (_, kl_a, score_a), (_, kl_b, score_b) in zip(curve, curve[1:]):
        if kl_b >= kl:
            return score_a + (score_b - score_a) * (kl - kl_a) / (kl_b - kl_a)
    return None


def test_policies_saved_along_training_are_compared_at_the_baselines_final_kl(small_world, tmp_path):
    from tokenreward.evaluation import evaluate_policy
    from tokenreward.models import load_causal_lm

    out = tmp_path / "bench"
    methods = ["fakeckpt-sparse", "fakeckpt-red"]
    config = bench_config(out, small_world, methods=methods, baseline=methods[0], steps=4, eval_every=2, seeds=1)
    results = json.loads(run(config).read_text())
    reference = load_causal_lm(small_world.policy_dir).eval()
    curves: dict[str, list] = {}
    for method in methods:
        for seed in (0,):
            run_dir = out / method / f"seed-{seed}"
            assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step-2", "step-4"]
            middle = evaluate_policy(
                load_causal_lm(run_dir / "checkpoints" / "step-2" / "policy").eval(),
                small_world,
                split="test",
                reference=reference,
                n=EVAL_PROMPTS,
                greedy=False,
                seed=seed,
            )
            final = results["methods"][method]["runs"][seed]
            sft = results["sft"]["runs"][seed]["oracle_score"]
            curve = [(0, 0.0, sft), (2, middle["kl"], middle["oracle_score"]), (4, final["kl"], final["oracle_score"])]
            assert 0 < curve[1][1] < curve[2][1]  # the drift moves the policy away step by step
            curves.setdefault(method, []).append(curve)
    kl = min(curve[-1][1] for curve in curves[methods[0]])
    assert results["matched_kl"]["kl"] == pytest.approx(kl)
    for method in methods:
        expected = [v for v in (naive_reading(c, kl) for c in curves[method]) if v is not None]
        got = results["matched_kl"]["methods"][method]
        assert got["values"] == pytest.approx(expected) and got["reached"] == len(expected) and got["of"] == 1
    red_reaches = naive_reading(curves["fakeckpt-red"][0], kl) is not None
    assert set(results["comparisons_matched_kl"]) == ({"fakeckpt-red"} if red_reaches else set())
    assert (out / "frontier.png").read_bytes()[:4] == b"\x89PNG"
    assert "Score against KL" in (out / "report.html").read_text()
    # the logged KL (trailing mean of 2 steps) where the red run first reaches the sparse runs' final logged score
    red = results["methods"]["fakeckpt-red"]
    assert [r["steps_to_target"] for r in red["runs"]] == [4]
    assert red["steps_to_target"]["kl"]["values"] == pytest.approx([0.035])


def test_bad_benchmark_input_is_refused_before_training(small_world, tmp_path):
    CALLS.clear()
    with pytest.raises(ValueError, match="unknown method 'ppo-nothing'"):
        run(bench_config(tmp_path, small_world, methods=["fakerl-red", "ppo-nothing"]))
    with pytest.raises(ValueError, match="not a setting of any"):
        run(bench_config(tmp_path, small_world, trainer_options=["learning_rat=1"]))
    with pytest.raises(ValueError, match="cannot set steps"):
        run(bench_config(tmp_path, small_world, trainer_options=["steps=3"]))
    with pytest.raises(ValueError, match="cannot set save_every: bench rl keeps a policy every --eval-every"):
        run(bench_config(tmp_path, small_world, trainer_options=["save_every=3"]))
    with pytest.raises(ValueError, match="distinct"):
        run(bench_config(tmp_path, small_world, methods=["fakerl-red", "fakerl-red"]))
    with pytest.raises(FileNotFoundError):
        run(bench_config(tmp_path, small_world, world=tmp_path / "no-world"))
    assert CALLS == []


def test_a_fixed_eval_seed_gives_every_policy_the_same_draws(small_world, tmp_path):
    from tokenreward.evaluation import evaluate_policy
    from tokenreward.models import load_causal_lm

    out = tmp_path / "bench"
    results = json.loads(
        run(bench_config(out, small_world, trainer_options=["perturb=true"], eval_seed=5)).read_text()
    )
    reference = load_causal_lm(small_world.policy_dir).eval()
    sft = evaluate_policy(
        load_causal_lm(small_world.policy_dir).eval(),
        small_world,
        split="test",
        reference=reference,
        n=EVAL_PROMPTS,
        greedy=False,
        seed=5,
    )
    assert results["eval_seed"] == 5 and results["sft"]["oracle_score"]["values"] == pytest.approx(
        [sft["oracle_score"]]
    )
    for seed in (0, 1):
        final = load_causal_lm(out / "fakerl-red" / f"seed-{seed}" / "final").eval()
        direct = evaluate_policy(
            final, small_world, split="test", reference=reference, n=EVAL_PROMPTS, greedy=False, seed=5
        )
        assert results["methods"]["fakerl-red"]["runs"][seed]["oracle_score"] == pytest.approx(direct["oracle_score"])
        assert json.loads((out / "fakerl-red" / f"seed-{seed}" / "eval.json").read_text())["settings"]["seed"] == 5


def test_parallel_workers_keep_one_thread_through_the_trainers_thread_setting(monkeypatch):
    """The trainer's `configure_threads` reads OMP_NUM_THREADS; a bench worker sets it to 1, so
    two workers on two cores do not run two threads each."""
    import torch

    from tokenreward.bench.rl import _worker_setup
    from tokenreward.trainers.harness import configure_threads

    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    try:
        assert configure_threads() == 8  # unset: every core to the one process
        monkeypatch.setenv("OMP_NUM_THREADS", "")  # restored by monkeypatch after the worker sets it
        _worker_setup()
        assert configure_threads() == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
        from transformers.utils import logging as hf_logging

        hf_logging.enable_progress_bar()


def test_an_empty_sampled_response_gets_no_heatmap_and_the_report_says_so(small_world):
    from tokenreward.bench.rl_evaluation import score_samples
    from tokenreward.rewards import build_rewarder
    from tokenreward.viz.report import samples_section

    prompt = small_world.prompts("test")[0]["prompt"]
    samples = {"collapsed": [{"prompt": prompt, "response": "", "oracle_score": -1.0}]}
    samples["fluent"] = [{"prompt": prompt, "response": " 12 + 30 = 42.", "oracle_score": 0.5}]
    scored = score_samples(small_world, samples, "red")
    assert scored["collapsed"][0]["record"] is None
    alone = build_rewarder("red", small_world.resources()).score([prompt], [" 12 + 30 = 42."]).records()[0]
    assert scored["fluent"][0]["record"]["tokens"] == alone["tokens"]
    assert scored["fluent"][0]["record"]["rewards"] == pytest.approx(alone["rewards"], abs=1e-6)
    html = samples_section(scored)
    assert html.count("(an empty response)") == 1 and html.count("tokenreward-heatmap") == 1


def test_a_given_reward_model_replaces_the_worlds_in_training_heatmaps_and_the_record(small_world, tmp_path, capsys):
    from transformers import AutoModelForSequenceClassification

    from tokenreward.cli import main
    from tokenreward.testing import hf_reward_score

    folder = tmp_path / "negated-rm"  # the world's reward model with its head negated: other scores
    model = AutoModelForSequenceClassification.from_pretrained(str(small_world.reward_model_dir))
    with torch.no_grad():
        model.score.weight.neg_()
    model.save_pretrained(folder)
    shutil.copytree(small_world.tokenizer_dir, folder, dirs_exist_ok=True)
    out, record = tmp_path / "bench", tmp_path / "results.md"
    argv = ["bench", "rl", "--out", str(out), "--world", str(small_world.root), "--methods", "fakerl-sparse"]
    argv += ["--seeds", "1", "--steps", "2", "--eval-prompts", str(EVAL_PROMPTS), "--samples", "2"]
    argv += ["--eval-every", "0", "--reward-model", str(folder), "--record", str(record)]
    assert main(argv) == 0
    done = json.loads((out / "fakerl-sparse" / "seed-0" / "done.json").read_text())
    assert done["config"]["reward_model"] == str(folder.resolve())
    line = f"{folder} (--reward-model, in place of the world's)"
    assert json.loads((out / "results.json").read_text())["reward_model"] == line
    assert f"reward model: {line}" in " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    text = record.read_text()
    assert f"--reward-model {folder}" in text and f"reward model: {line}." in text
    for sample in json.loads((out / "samples.json").read_text())["fakerl-sparse"]:
        own = hf_reward_score(folder, sample["prompt"], sample["response"])
        assert own != pytest.approx(
            hf_reward_score(small_world.reward_model_dir, sample["prompt"], sample["response"])
        )
        assert sample["record"]["sequence_reward"] == pytest.approx(own, abs=1e-5)
    # refused in one line: a setting that would bypass the record, a folder that is no model
    refused = [["--trainer-options", f"reward_model={folder}"], ["--reward-model", str(tmp_path / "nothing")]]
    for extra, message in zip(refused, ("pass --reward-model", "is not a model folder")):
        assert main([*argv[:-4], *extra]) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(ValueError, match="fakeckpt train with no reward model setting"):
        run(bench_config(tmp_path / "b", small_world, methods=["fakeckpt"], reward_model=str(folder)))
