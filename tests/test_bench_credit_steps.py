"""`bench credit` at step level (`tokenreward.bench.credit_steps`): each step's score and the step
metrics against naive loops over the steps, for token rewarders and for a rewarder with step scores."""

from __future__ import annotations

import json
import random
import re
import shutil
from dataclasses import replace

import pytest
import torch

from tokenreward.bench.credit_steps import step_metrics, step_scores
from tokenreward.rewards import TokenRewards
from tokenreward.world import generate as gen
from tokenreward.world.oracle import step_truth

KINDS = [[], ["wrong_result"], ["wrong_operand"], ["hostile"], ["verbose"], ["wrong_result", "wrong_operand"]]


def naive_auroc(scores, labels):
    pos = [s for s, flag in zip(scores, labels) if flag]
    neg = [s for s, flag in zip(scores, labels) if not flag]
    if not pos or not neg:
        return None
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


def words(text):
    """Tokens: runs of non-space characters with the spaces before them."""
    return [m.span() for m in re.finditer(r"\s*\S+", text)]


def line_spans(text):
    spans, start = [], 0
    for line in text.split("\n"):
        if line.strip():
            spans.append((start, start + len(line)))
        start += len(line) + 1
    return spans


@pytest.fixture(scope="module")
def batch():
    """Multistep responses of every kind (and two arithmetic ones, which have no steps) with seeded random
    token rewards on word tokens and random step scores, one per line."""
    rng = random.Random(0)
    prompts = gen.make_prompts(rng, 12, families=("multistep",)) + gen.make_prompts(rng, 2, families=("arithmetic",))
    texts, truths = [], []
    for prompt in prompts:
        for kinds in KINDS if prompt["family"] == "multistep" else [[]]:
            texts.append(gen.respond(rng, prompt, kinds).text)
            truths.append(step_truth(prompt, texts[-1]) if prompt["family"] == "multistep" else [])
    offsets = [words(t) for t in texts]
    rewards = [
        [round(rng.gauss(0, 1) * 2) / 2 for _ in row] for row in offsets
    ]  # halves: exact in float32, ties happen
    steps = [[rng.randint(0, 8) / 8 for _ in line_spans(t)] for t in texts]
    result = TokenRewards.from_lists("hand", texts, offsets, rewards, [0.0] * len(texts), step_scores=steps)
    return result, truths, rewards, steps


def naive_step_rows(result, truths, rewards, steps, use_steps):
    rows, flags = [], []
    for i, row in enumerate(truths):
        if not row:
            continue
        scores = []
        for truth in row:
            if use_steps:
                line = [k for k, (s, e) in enumerate(line_spans(result.responses[i])) if s <= truth.start < e][0]
                scores.append(steps[i][line])
            else:
                total = 0.0
                for reward, (ts, te) in zip(rewards[i], result.offsets[i]):
                    if ts < truth.end and truth.start < te:
                        total += reward
                scores.append(total)
        rows.append(scores)
        flags.append([not t.correct for t in row])
    return rows, flags


@pytest.mark.parametrize("use_steps", [False, True])
def test_step_metrics_match_naive_loops_over_the_steps(batch, use_steps):
    result, truths, rewards, steps = batch
    got = step_metrics(result, truths, line_spans if use_steps else None)
    rows, flags = naive_step_rows(result, truths, rewards, steps, use_steps)
    for i, row in enumerate(truths):
        if row:
            expected = rows[sum(bool(r) for r in truths[:i])]
            assert step_scores(result, i, row, line_spans if use_steps else None) == pytest.approx(expected)
    pooled = naive_auroc([-s for row in rows for s in row], [f for row in flags for f in row])
    within = [naive_auroc([-s for s in row], f) for row, f in zip(rows, flags)]
    within = [v for v in within if v is not None]
    top = []
    for row, f in zip(rows, flags):
        if any(f):
            lowest = [k for k, s in enumerate(row) if s == min(row)]
            top.append(sum(f[k] for k in lowest) / len(lowest))
    assert got["step_auroc"] == pytest.approx(pooled)
    assert got["step_auroc_within"] == pytest.approx(sum(within) / len(within))
    assert got["step_top1"] == pytest.approx(sum(top) / len(top))
    assert got["steps"] == sum(len(r) for r in rows) and got["incorrect_steps"] == sum(map(sum, flags))
    assert 20 < got["incorrect_steps"] < got["steps"] - 20


def test_a_perfect_step_scorer_and_no_steps(batch):
    result, truths, _, _ = batch
    # the world's multistep replies hold one oracle step per line: score each line by its step's correctness
    rows = [
        [float(t.correct) for t in row] or [1.0] * len(line_spans(text)) for row, text in zip(truths, result.responses)
    ]
    assert all(len(r) == len(line_spans(t)) for r, t in zip(rows, result.responses))
    zeros = [[0.0] * len(o) for o in result.offsets]
    exact = TokenRewards.from_lists("hand", result.responses, result.offsets, zeros, [0.0] * len(result), rows)
    got = step_metrics(exact, truths, line_spans)
    assert (got["step_auroc"], got["step_auroc_within"], got["step_top1"]) == (1.0, 1.0, 1.0)
    assert step_metrics(result, [[] for _ in truths]) == {}


@pytest.fixture(scope="module")
def multistep_world(small_world, tmp_path_factory):
    """The small world's models with the data of a few arithmetic and multistep prompts, a PRM (a two-way
    head on its policy, untrained) and a reward model other than the world's (a new head on its policy)."""
    from tokenreward.models import load_tokenizer
    from tokenreward.trainers.prm import prm_from
    from tokenreward.trainers.reward_model import reward_model_from
    from tokenreward.world import MANIFEST, World
    from tokenreward.world.integrity import file_digests
    from tokenreward.world.sizes import SIZES
    from tokenreward.worldbuild.build import build_data

    root = tmp_path_factory.mktemp("multistep")
    shutil.copytree(small_world.root, root / "world")
    size = replace(SIZES["small"], per_family=10, families=("arithmetic", "multistep"))
    build_data(root / "world", size, seed=1, progress=False)
    manifest = json.loads((root / "world" / MANIFEST).read_text())
    manifest.update(sizes={**manifest["sizes"], "families": list(size.families)}, files=file_digests(root / "world"))
    (root / "world" / MANIFEST).write_text(json.dumps(manifest))
    world = World(root / "world")
    tokenizer = load_tokenizer(world.tokenizer_dir)
    for name, make in (("prm", prm_from), ("rm", reward_model_from)):
        torch.manual_seed(0)
        make(world.policy_dir, tokenizer).save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    return world, str(root / "prm"), str(root / "rm")


def test_bench_credit_scores_prm_and_segment_with_their_own_models_at_step_level(
    multistep_world, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("COLUMNS", "250")  # rich's width: lines unwrapped
    from tokenreward.bench.credit_stats import auroc
    from tokenreward.cli import main
    from tokenreward.rewards import build_rewarder

    world, prm, rm = multistep_world
    out = tmp_path / "credit.json"
    args = [
        "bench",
        "credit",
        "--world",
        str(world.root),
        "--rewarders",
        "prm,segment,red",
        "--json",
        str(out),
        "--split",
        "rl",
    ]
    assert main([*args, "--prm", prm, "--segment-model", rm]) == 0
    results = json.loads(out.read_text())
    assert set(results) == {"prm", "segment", "red", "uniform", "random"}
    records = world.responses("rl")
    prompts = {p["id"]: p for p in world.prompts("rl")}
    truths = [
        step_truth(prompts[r["prompt_id"]], r["response"]) if r["family"] == "multistep" else [] for r in records
    ]
    texts, asked = [r["response"] for r in records], [r["prompt"] for r in records]
    direct = build_rewarder("prm", reward_model=prm).score(asked, texts)
    rows, flags = naive_step_rows(direct, truths, None, direct.step_scores, use_steps=True)
    assert results["prm"]["step_auroc"] == pytest.approx(
        naive_auroc([-s for row in rows for s in row], [f for row in flags for f in row])
    )
    segment = build_rewarder("segment", reward_model=rm, reference=str(world.policy_dir)).score(asked, texts)
    for key, value in step_metrics(segment, truths).items():
        assert results["segment"][key] == pytest.approx(value, nan_ok=True)
    flat = [-r for i in range(len(segment)) for r in segment.token_rewards(i)]
    defects = [any(c < 0 and s < te and ts < e for s, e, c in spans) for spans, offs in
               zip([r["credit_spans"] for r in records], segment.offsets) for ts, te in offs]  # fmt: skip
    assert results["segment"]["auroc"] == pytest.approx(auroc(flat, defects))
    assert results["uniform"]["steps"] == sum(map(len, truths)) > results["uniform"]["incorrect_steps"] > 5
    capsys.readouterr()
    assert main([*args[:5], "prm", *args[6:]]) == 0  # without --prm: prm is skipped, saying which flag it needs
    assert set(json.loads(out.read_text())) == {"uniform", "random"}
    assert "skipped prm: it reads a model of its own: pass --prm PATH" in capsys.readouterr().out
    assert main([*args, "--prm", str(tmp_path / "none")]) == 2


def test_the_recorded_table_has_the_step_level_rows_best_first():
    from tokenreward.bench.results_file import credit_table

    token = {"auroc": 0.6, "spearman": 0.1, "top1": 0.2, "auroc_within": 0.5, "ms_per_1k": 3.0}
    steps = {"steps": 40, "incorrect_steps": 9, "step_auroc_within": 0.5, "step_top1": 0.25}
    results = {
        "uniform": {**token, **steps, "step_auroc": 0.55},
        "prm": {**token, **steps, "step_auroc": 0.875},
        "random": {**token, **steps, "step_auroc": float("nan")},
    }
    lines = credit_table(results).splitlines()
    at = lines.index("| rewarder | step AUROC | step AUROC within a response | step top1 |")
    assert "(40 steps, 9 incorrect)" in lines[at - 2]
    assert lines[at + 2 :] == [
        "| prm | 0.875 | 0.500 | 0.250 |",
        "| uniform | 0.550 | 0.500 | 0.250 |",
        "| random | nan | 0.500 | 0.250 |",
    ]
    assert "step AUROC" not in credit_table({"red": token})
