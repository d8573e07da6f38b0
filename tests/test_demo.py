"""`tokenreward demo` end to end on the small world, with a tiny step count."""

from __future__ import annotations

import json

import torch

from tokenreward.cli import main
from tokenreward.commands.demo import credit_record
from tokenreward.models import load_causal_lm


def test_credit_record_sums_the_overlapping_spans():
    record = {
        "rewarder": "red",
        "sequence_reward": 1.0,
        "tokens": ["The", " sum", " is", " 41."],
        "offsets": [[0, 3], [3, 7], [7, 10], [10, 14]],
        "rewards": [0.1, 0.2, 0.3, 0.4],
    }
    spans = [[8, 9, 0.5], [11, 13, -1.0], [12, 14, 0.25]]
    truth = credit_record(record, spans, -0.25)
    expected = []
    for start, end in record["offsets"]:
        expected.append(sum(c for s, e, c in spans if max(s, start) < min(e, end)))
    assert truth["rewards"] == expected == [0.0, 0.0, 0.5, -0.75]
    assert truth["tokens"] == record["tokens"] and truth["rewarder"] == "ground-truth credit"
    assert truth["sequence_reward"] == -0.25


def test_demo_runs_end_to_end_and_reuses_finished_runs(small_world, tmp_path, capsys):
    out = tmp_path / "demo"
    argv = [
        "demo",
        "--world",
        str(small_world.root),
        "--out",
        str(out),
        "--steps",
        "2",
        "--seeds",
        "1",
        "--eval-prompts",
        "4",
        "--heatmaps",
        "2",
    ]
    assert main(argv) == 0
    shown = capsys.readouterr().err
    # a progress line per stage with the time left, and the one-seed verdict
    assert "[8/8] 2 PPO runs and their held-out evaluation" in shown and "left" in shown
    assert "With one seed there is no spread" in shown
    # the result at matched KL (ppo-sparse's final KL) first, then after equal steps with both KLs
    matched = json.loads((out / "results.json").read_text())["matched_kl"]
    assert f"At KL {matched['kl']:.3f} (ppo-sparse's final KL)" in shown and "steps (KL " in shown
    assert shown.index(f"At KL {matched['kl']:.3f}") < shown.index("not matched")
    # the terminal heatmaps: RED's and the ground truth's, on the first held-out responses
    for response in small_world.responses("test")[:2]:
        assert response["response"].split()[0] in shown
        assert f"{response['family']} · oracle score {response['oracle_score']:.2f}" in shown
    assert shown.count("red: sequence reward") == 2 and shown.count("ground-truth credit: sequence reward") == 2

    results = json.loads((out / "results.json").read_text())
    assert list(results["methods"]) == ["ppo-sparse", "ppo-red"]
    assert results["methods"]["ppo-red"]["rewarder"] == "red" and results["steps"] == 2
    sft = load_causal_lm(small_world.policy_dir)
    for method in ("ppo-sparse", "ppo-red"):
        run_dir = out / method / "seed-0"
        steps = [json.loads(line)["step"] for line in (run_dir / "log.jsonl").read_text().splitlines()]
        assert steps == [1, 2]
        trained = load_causal_lm(run_dir / "final")
        changed = any(not torch.equal(a, b) for a, b in zip(trained.state_dict().values(), sft.state_dict().values()))
        assert changed, f"{method}: PPO left the policy unchanged"
        assert results["methods"][method]["runs"][0]["kl"] is not None
    demo = results["demo"]
    assert set(demo["stage_seconds"]) == {"heatmaps", "rl"} and demo["world_built_now"] is False
    assert demo["world_metrics"] == small_world.metrics and demo["total_seconds"] >= demo["stage_seconds"]["rl"] > 0
    report = (out / "report.html").read_text()
    assert report.count('class="tokenreward-heatmap"') == 3 * 3  # SFT + 2 methods, 3 samples each
    assert "<title>ppo-sparse vs ppo-red: held-out oracle score after 2 RL steps, 1 seed</title>" in report
    assert "do not show which method is better" in report
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG" and (out / "frontier.png").read_bytes()[
        :4
    ] == b"\x89PNG"
    assert len(results["frontier"]["methods"]["ppo-red"]["seeds"]) == 1
    # the runs trained and were evaluated in worker processes (two at a time): the same numbers in this one
    from tokenreward.evaluation import evaluate_policy

    final = load_causal_lm(out / "ppo-red" / "seed-0" / "final").eval()
    direct = evaluate_policy(final, small_world, split="test", reference=sft.eval(), n=4, greedy=False, seed=0)
    assert results["methods"]["ppo-red"]["runs"][0]["oracle_score"] == direct["oracle_score"]
    assert "2 runs of 2 steps, 2 at a time" in shown

    # a second demo keeps the finished runs
    marker = out / "ppo-red" / "seed-0" / "done.json"
    before = marker.stat().st_mtime_ns
    assert main(argv) == 0
    assert marker.stat().st_mtime_ns == before
    assert "finished earlier, kept" in capsys.readouterr().err


def test_demo_refuses_bad_input(tmp_path, capsys):
    assert main(["demo", "--steps", "0", "--out", str(tmp_path)]) == 2
    assert "--steps must be at least 1, got 0" in capsys.readouterr().err
    assert main(["demo", "--seeds", "0", "--out", str(tmp_path)]) == 2
    assert "--seeds must be at least 1, got 0" in capsys.readouterr().err
    assert main(["demo", "--world", str(tmp_path / "nowhere"), "--out", str(tmp_path)]) == 2
    assert "no world at" in capsys.readouterr().err
