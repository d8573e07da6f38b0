"""`bench credit`: its statistics against naive computations, and a run on the small world."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch

from tokenreward.bench.credit import auroc, auroc_within, average_ranks, credit_metrics, rewarder_names, spearman, top1
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


def test_baselines_always_included_and_unknown_names_refused():
    assert rewarder_names(["red"])[-2:] == ["uniform", "random"]
    with pytest.raises(ValueError, match="unknown rewarder"):
        rewarder_names(["no-such-rewarder"])


def test_bench_credit_on_the_small_world(small_world, tmp_path, capsys):
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
        ]
    )
    assert code == 0
    results = json.loads(out.read_text())
    assert set(results) == {"red", "abc", "sparse", "uniform", "random"}
    for metrics in results.values():
        assert set(metrics) >= {"auroc", "spearman", "top1", "ms_per_1k"}
        assert 0.0 <= metrics["auroc"] <= 1.0 and metrics["ms_per_1k"] > 0 and metrics["cpu_ms_per_1k"] > 0
    # uniform gives every token of a response the same reward: no preference inside a response
    assert results["uniform"]["auroc_within"] == pytest.approx(0.5)
    assert "AUROC" in capsys.readouterr().out


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
