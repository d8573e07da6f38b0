"""`bench credit`: its statistics against naive computations, and a run on the small world."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch

from tokenreward.bench.credit import (
    auroc_within_by_kind,
    build_rewarders,
    credit_metrics,
    degenerate_reason,
    parse_reward_models,
    rewarder_names,
)
from tokenreward.bench.credit_kinds import defect_kinds
from tokenreward.bench.credit_stats import auroc, auroc_within, average_ranks, spearman, top1
from tokenreward.cli import main
from tokenreward.rewards import TokenRewards


def naive_auroc(scores, labels):
    pos = [s for s, l in zip(scores, labels) if l]
    neg = [s for s, l in zip(scores, labels) if not l]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def naive_ranks(values):
    return [sum(v < x for v in values) + (sum(v == x for v in values) + 1) / 2 for x in values]


def naive_spearman(x, y):
    rx, ry = naive_ranks(x), naive_ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    return cov / math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))


@pytest.mark.parametrize("seed", range(5))
def test_auroc_and_spearman_match_naive_loops_with_ties(seed):
    rng = random.Random(seed)
    scores = [rng.choice([0.0, 0.5, 1.0, 1.5, rng.random()]) for _ in range(60)]
    labels = [rng.random() < 0.3 for _ in scores]
    other = [s + rng.choice([0.0, 1.0, -2.0]) for s in scores]
    assert auroc(scores, labels) == pytest.approx(naive_auroc(scores, labels))
    assert spearman(scores, other) == pytest.approx(naive_spearman(scores, other))
    assert list(average_ranks(scores)) == pytest.approx(naive_ranks(scores))


def test_degenerate_inputs_give_nan():
    assert math.isnan(auroc([1.0, 2.0], [False, False]))
    assert math.isnan(spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))


def test_top1_counts_ties_fractionally():
    rewards = [[0.5, -1.0, 0.2], [0.0, 0.0, 0.0, 0.0], [1.0, 2.0]]
    defects = [[False, True, False], [True, False, False, False], [False, False]]
    assert top1(rewards, defects) == pytest.approx((1.0 + 0.25) / 2)


def test_auroc_within_averages_responses_with_both_classes():
    rewards = [[0.0, -1.0, 0.5], [0.2, 0.1, 0.3], [1.0, 1.0], [0.0, 0.0]]
    defects = [[False, True, False], [True, False, True], [True, True], [False, False]]
    expected = (naive_auroc([0.0, 1.0, -0.5], defects[0]) + naive_auroc([-0.2, -0.1, -0.3], defects[1])) / 2
    assert auroc_within(rewards, defects) == pytest.approx(expected)
    assert auroc_within([[1.0, 1.0, 1.0]], [[True, False, False]]) == pytest.approx(0.5)


def test_credit_metrics_on_a_hand_built_batch():
    text = " 17 + 25 = 47."
    offsets = [(0, 3), (3, 5), (5, 8), (8, 10), (10, 12), (12, 13), (13, 14)]
    perfect = [0.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0]
    result = TokenRewards.from_lists("hand", [text], [offsets], [perfect], [-1.0])
    metrics = credit_metrics(result, [[[12, 13, -1.0]]], seconds=0.007, cpu_seconds=0.0035)
    assert metrics["auroc"] == pytest.approx(1.0) and metrics["top1"] == pytest.approx(1.0)
    assert metrics["spearman"] == pytest.approx(1.0)
    assert metrics["ms_per_1k"] == pytest.approx(1000.0 * 0.007 / 7 * 1000.0)
    assert metrics["cpu_ms_per_1k"] == pytest.approx(1000.0 * 0.0035 / 7 * 1000.0)


def test_auroc_within_by_kind_matches_a_naive_loop():
    # three responses of 5 tokens (offsets 0-2, 2-4, ...): kinds on some tokens, clean tokens elsewhere
    offsets = [[(2 * k, 2 * k + 2) for k in range(5)]] * 3
    rewards = [[0.5, -1.0, 0.2, -0.3, 0.4], [0.1, 0.1, -0.2, 0.3, 0.0], [0.0, 0.6, -0.6, 0.2, 0.2]]
    kinds = [
        [("repeat", 2, 4), ("hostile", 6, 8)],  # token 1 repeat, token 3 hostile
        [("repeat", 0, 4)],  # tokens 0 and 1
        [("hostile", 4, 6), ("hostile", 8, 10)],  # tokens 2 and 4
    ]
    spans = [[[s, e, -1.0] for _, s, e in row] + [[0, 2, 1.0]] for row in kinds]
    got = auroc_within_by_kind(rewards, offsets, kinds, spans)

    def naive(kind):
        values = []
        for row, defects, offs in zip(rewards, kinds, offsets):
            hit = [any(k == kind and s < te and ts < e for k, s, e in defects) for ts, te in offs]
            bad = [any(s < te and ts < e for _, s, e in defects) for ts, te in offs]
            pos = [row[i] for i in range(len(row)) if hit[i]]
            neg = [row[i] for i in range(len(row)) if not bad[i]]
            if pos and neg:
                values.append(naive_auroc([-v for v in pos + neg], [True] * len(pos) + [False] * len(neg)))
        return sum(values) / len(values), len(values)

    assert set(got) == {"repeat", "hostile"}
    for kind in got:
        mean, count = naive(kind)
        assert got[kind]["auroc"] == pytest.approx(mean) and got[kind]["responses"] == count
    # by hand: the first response's repeat token (-1.0) is below its clean ones (0.5, 0.2, 0.4): 1; the second's
    # (0.1, 0.1) are below one of its clean ones (-0.2, 0.3, 0.0) in each of 3 comparisons: 1/3
    assert got["repeat"]["auroc"] == pytest.approx((1.0 + 1 / 3) / 2) and got["hostile"]["responses"] == 2


def test_defect_kinds_come_from_the_oracles_grade(small_world):
    from tokenreward.world.oracle import grade

    records = small_world.responses("test")[:40]
    kinds = defect_kinds(small_world, "test", records)
    prompts = {p["id"]: p for p in small_world.prompts("test")}
    for record, row in zip(records, kinds):
        negative = sorted((s, e) for s, e, c in record["credit_spans"] if c < 0)
        assert sorted((s, e) for _, s, e in row) == negative  # every defect span, each with its kind
        issues = grade(prompts[record["prompt_id"]], record["response"]).issues
        assert {k for k, _, _ in row} == {i.kind for i in issues if any(c < 0 for _, _, c in i.spans)}
    assert sum(bool(row) for row in kinds) > 0


def test_default_set_skips_rewarders_the_worlds_resources_make_degenerate(small_world):
    resources = dict(small_world.resources())
    for name in ("implicit", "rto"):
        assert "same model" in degenerate_reason(name, resources)
    assert degenerate_reason("red", resources) is None
    assert degenerate_reason("implicit", {**resources, "policy": "elsewhere/dpo"}) is None
    built, skipped = build_rewarders(["implicit", "rto", "verifiable", "uniform"], resources, skip_degenerate=True)
    assert list(built) == ["uniform"] and set(skipped) == {"implicit", "rto", "verifiable"}
    assert "right/wrong verdict" in skipped["verifiable"]
    assert "log pi - log ref is 0" in skipped["rto"]


def test_reward_model_labels(tmp_path):
    (tmp_path / "rm-a").mkdir()
    (tmp_path / "b.gguf").write_text("x")
    assert parse_reward_models([str(tmp_path / "rm-a"), f"plain={tmp_path / 'b.gguf'}"]) == {
        "rm-a": str(tmp_path / "rm-a"),
        "plain": str(tmp_path / "b.gguf"),
    }
    with pytest.raises(FileNotFoundError, match="--reward-model x=.*nowhere"):
        parse_reward_models([f"x={tmp_path / 'nowhere'}"])
    with pytest.raises(ValueError, match="label 'rm-a' is given twice"):
        parse_reward_models([str(tmp_path / "rm-a"), f"rm-a={tmp_path / 'b.gguf'}"])


def test_baselines_always_included_and_unknown_names_refused():
    assert rewarder_names(["red"])[-2:] == ["uniform", "random"]
    with pytest.raises(ValueError, match="unknown rewarder"):
        rewarder_names(["no-such-rewarder"])


def test_bench_credit_on_the_small_world(small_world, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # rich's width: the tables unwrapped
    out = tmp_path / "credit.json"
    code = main(
        [
            "bench",
            "credit",
            "--world",
            str(small_world.root),
            "--rewarders",
            "red,abc,sparse",
            "--json",
            str(out),
            "--limit",
            "40",
            "--reward-model",
            f"copy={small_world.reward_model_dir}",
        ]
    )
    assert code == 0
    results = json.loads(out.read_text())
    plain = {"red", "abc", "sparse", "uniform"}
    assert set(results) == plain | {"random"} | {f"{name} [copy]" for name in plain}
    for name in plain:  # the world's reward model named again: the same numbers under its label
        for key in ("auroc", "spearman", "top1", "auroc_within", "auroc_within_by_kind"):
            assert results[f"{name} [copy]"][key] == results[name][key]
    assert results["uniform"]["auroc_within_by_kind"] and all(
        v["auroc"] == pytest.approx(0.5) for v in results["uniform"]["auroc_within_by_kind"].values()
    )
    for metrics in results.values():
        assert set(metrics) >= {"auroc", "spearman", "top1", "ms_per_1k"}
        assert 0.0 <= metrics["auroc"] <= 1.0 and metrics["ms_per_1k"] > 0 and metrics["cpu_ms_per_1k"] > 0
    # uniform gives every token of a response the same reward: no preference inside a response
    assert results["uniform"]["auroc_within"] == pytest.approx(0.5)
    shown = capsys.readouterr().out
    assert "AUROC" in shown and "per defect kind" in shown and "red [copy]" in shown
    kinds = sorted(results["red"]["auroc_within_by_kind"])
    header = next(line for line in shown.splitlines() if "rewarder" in line and kinds[0] in line)
    assert all(kind in header for kind in kinds)


def test_random_rewarder_is_seeded_standard_normal_per_token(small_world):
    from tokenreward import build_rewarder

    records = small_world.responses("test")[:30]
    prompts, responses = [r["prompt"] for r in records], [r["response"] for r in records]
    first = build_rewarder("random", tokenizer=small_world.tokenizer_dir, seed=3)
    a = first.score(prompts, responses)
    b = build_rewarder("random", tokenizer=small_world.tokenizer_dir, seed=3).score(prompts[::-1], responses[::-1])
    c = build_rewarder("random", tokenizer=small_world.tokenizer_dir, seed=4).score(prompts, responses)
    assert a.token_rewards(0) == b.token_rewards(len(records) - 1)  # independent of order and batching
    assert a.token_rewards(0) != c.token_rewards(0)
    values = torch.cat([a.rewards[i, a.mask[i]] for i in range(len(a))])
    assert abs(float(values.mean())) < 0.2 and abs(float(values.std()) - 1.0) < 0.15
    tokens = first.tokenizer(prompts[0] + responses[0])["input_ids"]
    assert len(a.offsets[0]) <= len(tokens)


def test_missing_world_is_a_clear_error(tmp_path, capsys):
    assert main(["bench", "credit", "--world", str(tmp_path / "nowhere")]) == 2
    assert "tokenreward world build" in capsys.readouterr().err
    assert main(["bench", "credit", "--reward-model", f"rm={tmp_path / 'no-rm'}"]) == 2
    assert "--reward-model rm=" in capsys.readouterr().err
