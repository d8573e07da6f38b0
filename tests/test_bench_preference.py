"""`bench preference`: the win rate, and one tiny end-to-end run on the small world."""

from __future__ import annotations

import json
import random

import pytest

from tokenreward.bench.preference import PreferenceBenchConfig, paired_differences, run, win_rate


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
        trainer_options=["batch_size=2", "eval_every=0", "progress=false"],
    )
    run(config)
    results = json.loads((out / "results.json").read_text())
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
