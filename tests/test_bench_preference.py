"""`bench preference`: the win rate, tiny end-to-end runs on the small world, the comparison at matched KL."""

from __future__ import annotations

import json
import random
import shutil
import statistics

import pytest
import torch

from tokenreward.bench.preference import EVAL, PreferenceBenchConfig, paired_differences, run, win_rate
from tokenreward.errors import UserInputError


def test_win_rate_counts_ties_as_half():
    rng = random.Random(0)
    a = [rng.choice([0.0, 0.5, 1.0]) for _ in range(200)]
    b = [rng.choice([0.0, 0.5, 1.0]) for _ in range(200)]
    wins = ties = 0
    for x, y in zip(a, b):
        wins += x > y
        ties += x == y
    assert win_rate(a, b) == pytest.approx((wins + ties / 2) / 200)
    assert win_rate(a, a) == 0.5
    with pytest.raises(ValueError, match="same, non-zero number"):
        win_rate([1.0], [])


def test_differences_to_dpo_pair_runs_by_seed():
    runs = {
        "dpo": [{"seed": 0, "oracle_score": 1.0}, {"seed": 1, "oracle_score": 3.0}],
        "dpo_reg": [{"seed": 1, "oracle_score": 2.0}, {"seed": 0, "oracle_score": 4.0}],
    }
    got = paired_differences(runs, "dpo", ["oracle_score"])
    assert list(got) == ["dpo_reg"]
    assert got["dpo_reg"]["oracle_score"]["mean"] == pytest.approx(((4.0 - 1.0) + (2.0 - 3.0)) / 2)
    assert got["dpo_reg"]["oracle_score"]["std"] == pytest.approx(2.0**1.5)  # sample std of (3, -1)


@pytest.mark.slow
def test_bench_trains_guide_first_evaluates_and_skips_finished_runs(small_world, tmp_path, capsys):
    out = tmp_path / "bench"
    config = PreferenceBenchConfig(
        out=out,
        methods=["tgdpo"],
        seeds=1,
        steps=2,
        world=small_world.root,
        eval_prompts=4,
        examples=2,
        eval_every=0,
        trainer_options=["batch_size=2", "eval_every=0", "progress=false"],
    )
    run(config)
    results = json.loads((out / "results.json").read_text())
    assert not (out / "dpo" / "seed-0" / "checkpoints" / "step-1").exists()  # --eval-every 0: no policy kept
    curve = hand_curve(out, "dpo", 0, [])  # the held-out curve: the SFT policy, then the final policy
    assert results["frontier"]["methods"]["dpo"]["seeds"] == [[list(point) for point in curve]]
    assert list(results["methods"]) == ["dpo", "tgdpo"]  # the DPO guide is trained first
    guide = json.loads((out / "tgdpo" / "seed-0" / "config.json").read_text())["guide_policy"]
    assert guide == str((out / "dpo" / "seed-0" / "final").resolve())
    evaluation = json.loads((out / "dpo" / "seed-0" / "preference-eval.json").read_text())
    sft = json.loads((out / "sft" / "seed-0" / "preference-eval.json").read_text())
    scores = [s["oracle_score"] for s in evaluation["greedy"]["samples"]]
    sft_scores = [s["oracle_score"] for s in sft["greedy"]["samples"]]
    assert len(scores) == 4
    assert results["methods"]["dpo"]["win_rate"]["mean"] == pytest.approx(win_rate(scores, sft_scores))
    assert results["methods"]["dpo"]["oracle_score"]["mean"] == pytest.approx(evaluation["greedy"]["oracle_score"])
    assert "| dpo |" in (out / "results.md").read_text()
    page = (out / "token-rewards.html").read_text()
    assert page.count("true credit (the world)") == 2 and "implicit of tgdpo (seed 0)" in page

    (out / "results.json").unlink()
    capsys.readouterr()
    run(config)  # finished runs are kept, not retrained
    assert "finished earlier" in capsys.readouterr().err
    assert json.loads((out / "results.json").read_text())["methods"] == results["methods"]


def test_trainer_options_cannot_set_the_checkpoints_the_bench_keeps(tmp_path):
    config = PreferenceBenchConfig(out=tmp_path / "b", methods=["dpo"], steps=10, trainer_options=["save_every=3"])
    with pytest.raises(
        UserInputError, match="cannot set save_every: bench preference keeps a policy every --eval-every"
    ):
        run(config)


def hand_curve(out, method: str, seed: int, steps: list[int]) -> list[tuple[float, float]]:
    """(KL, score) of the run's sampled held-out evaluations read back from its files: the SFT
    policy of its seed at KL 0, the policies saved at `steps`, the final policy."""
    run_dir = out / method / f"seed-{seed}"
    sft = json.loads((out / "sft" / f"seed-{seed}" / EVAL).read_text())["sampled"]
    saved = [json.loads((run_dir / "evals" / f"step-{s}.json").read_text())["sampled"] for s in steps]
    final = json.loads((run_dir / EVAL).read_text())["sampled"]
    return [(0.0, sft["oracle_score"])] + [(e["kl"], e["oracle_score"]) for e in [*saved, final]]


def hand_reading(curve: list[tuple[float, float]], kl: float) -> float | None:
    for (kl_a, score_a), (kl_b, score_b) in zip(curve, curve[1:]):
        if kl_b >= kl:  # the first segment whose end reaches kl (kl > 0 = the SFT point's KL)
            return score_a + (score_b - score_a) * (kl - kl_a) / (kl_b - kl_a)
    return None


@pytest.mark.slow
def test_bench_reads_every_method_at_dpos_final_kl_and_resumes_exactly(small_world, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "bench"
    config = PreferenceBenchConfig(
        out=out,
        methods=["dpo", "simpo"],
        seeds=2,
        steps=4,
        eval_every=2,
        world=small_world.root,
        eval_prompts=4,
        credit=False,
        examples=0,
        trainer_options=["batch_size=2", "eval_every=0", "progress=false", "learning_rate=1e-3"],
    )
    run(config)
    results = json.loads((out / "results.json").read_text())
    curves = {m: [hand_curve(out, m, s, [2]) for s in (0, 1)] for m in ("dpo", "simpo")}
    kl = min(curve[-1][0] for curve in curves["dpo"])
    assert kl > 0 and results["matched_kl"]["kl"] == pytest.approx(kl)
    table = (out / "results.md").read_text()
    for method, method_curves in curves.items():
        values = [v for v in (hand_reading(c, kl) for c in method_curves) if v is not None]
        got = results["matched_kl"]["methods"][method]
        assert got["values"] == pytest.approx(values) and (got["reached"], got["of"]) == (len(values), 2)
        if len(values) == 2:
            assert f"| {method} | {statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f} | 2/2 |" in table
    assert results["frontier"]["methods"]["simpo"]["seeds"] == [[list(p) for p in c] for c in curves["simpo"]]
    assert (out / "frontier.png").read_bytes()[:4] == b"\x89PNG"

    run_dir = out / "dpo" / "seed-1"  # killed after its step-2 checkpoint: the bench resumes it exactly
    weights = load_file(run_dir / "final" / "model.safetensors")
    for path in ("final", "checkpoints/step-4", "evals"):
        shutil.rmtree(run_dir / path)
    for path in ("done", "done.json", EVAL):
        (run_dir / path).unlink()
    run(config)
    assert json.loads((run_dir / "done.json").read_text())["resumed"] is True
    resumed = load_file(run_dir / "final" / "model.safetensors")
    assert all(torch.equal(resumed[k], weights[k]) for k in weights) and resumed.keys() == weights.keys()
    assert json.loads((out / "results.json").read_text())["matched_kl"] == results["matched_kl"]
