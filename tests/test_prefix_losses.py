"""Prefix losses of the reward-model trainer: each entry against a naive loop over prefixes,
the prefix scores against Hugging Face's own score of each truncated input, the loss the
trainer logs against both computed by hand, and clear errors."""

from __future__ import annotations

import math

import pytest
import torch

from tokenreward.cli import main
from tokenreward.jsonl import read_jsonl, write_jsonl
from tokenreward.losses.prefix_losses import PREFIX_LOSSES, PrefixScores, first_difference
from tokenreward.testing import tiny_reward_model
from tokenreward.trainers import reward_model as rm


def softplus(x: float) -> float:  # -log sigma(-x)
    return math.log1p(math.exp(x))


def scores_of(rows):
    return [torch.tensor(row) for row in rows]


CHOSEN = [[0.5, -1.0, 2.0], [1.0]]
REJECTED = [[0.0, 0.3], [-2.0, 0.5, 0.1, 1.5]]
REVISION = [[0.0, 0.9, 1.1, 0.2], None]
REJECTED_IDS = [[5, 6], [1, 2, 3, 4]]
REVISION_IDS = [[5, 7, 8, 9], None]


def example() -> PrefixScores:
    return PrefixScores(
        scores_of(CHOSEN), scores_of(REJECTED), [None if r is None else torch.tensor(r) for r in REVISION],
        REJECTED_IDS, REVISION_IDS,
    )  # fmt: skip


def test_value_loss_is_the_mean_cross_entropy_of_every_prefix_against_the_outcome():
    per_pair = [
        0.5 * (sum(softplus(-s) for s in w) / len(w) + sum(softplus(s) for s in lo) / len(lo))
        for w, lo in zip(CHOSEN, REJECTED)
    ]
    assert float(PREFIX_LOSSES.get("value")(example())) == pytest.approx(sum(per_pair) / 2, rel=1e-6)


def test_truncated_loss_compares_prefixes_of_equal_length():
    per_pair = []
    for w, lo in zip(CHOSEN, REJECTED):
        k = min(len(w), len(lo))
        per_pair.append(sum(softplus(-(w[j] - lo[j])) for j in range(k)) / k)
    assert float(PREFIX_LOSSES.get("truncated")(example())) == pytest.approx(sum(per_pair) / 2, rel=1e-6)


def test_revision_loss_starts_where_the_revision_differs_and_holds_the_shorter_end():
    r, lo = REVISION[0], REJECTED[0]  # they differ from token 1; the rejected one ends at token 1
    terms = [softplus(-(r[k] - lo[min(k, len(lo) - 1)])) for k in range(1, 4)]
    assert float(PREFIX_LOSSES.get("revision")(example())) == pytest.approx(sum(terms) / 3, rel=1e-6)
    assert first_difference([1, 2], [1, 2, 3]) == 2 and first_difference([1, 2], [1, 2]) is None


def test_none_is_zero_and_a_batch_without_revisions_adds_nothing():
    batch = example()
    batch.revision, batch.revision_ids = [None, None], [None, None]
    assert float(PREFIX_LOSSES.get("revision")(batch)) == 0.0
    assert float(PREFIX_LOSSES.get("none")(batch)) == 0.0


PAIRS = [
    {
        "prompt": "What is 2 + 3?",
        "chosen": " The answer is 5.",
        "rejected": " The answer is 7, I think.",
        "revision": " The answer is 5, I think.",
    },
    {"prompt": "Say hi.", "chosen": " Hi there!", "rejected": " Go away.", "revision": " Go away."},
]


@torch.no_grad()
def test_prefix_scores_equal_hugging_face_scores_of_each_truncated_input(tokenizer):
    model = tiny_reward_model("llama", tokenizer)
    scores = rm.score_prefixes(model, tokenizer, PAIRS, torch.device("cpu"))
    assert scores.revision[1] is None  # a revision equal to the rejected response is no revision
    cases = (
        (scores.chosen[0], PAIRS[0]["prompt"], PAIRS[0]["chosen"]),
        (scores.rejected[1], PAIRS[1]["prompt"], PAIRS[1]["rejected"]),
        (scores.revision[0], PAIRS[0]["prompt"], PAIRS[0]["revision"]),
    )
    for row, prompt, text in cases:
        ids = tokenizer(prompt + text)["input_ids"]
        assert len(row) == len(ids) - len(tokenizer(prompt)["input_ids"])
        for t, got in enumerate(row):
            prefix = torch.tensor([ids[: len(ids) - len(row) + t + 1]])
            assert float(got) == pytest.approx(float(model(input_ids=prefix).logits[0, 0]), abs=1e-4)


def test_the_trainer_adds_the_weighted_prefix_loss_to_bradley_terry(tokenizer, tmp_path):
    model = tiny_reward_model("llama", tokenizer)  # no dropout: training-mode scores equal these
    with torch.no_grad():
        initial = rm.score_prefixes(model, tokenizer, PAIRS, torch.device("cpu"))
    chosen = [float(row[-1]) for row in initial.chosen]
    rejected = [float(row[-1]) for row in initial.rejected]
    bt = sum(softplus(-(c - r)) for c, r in zip(chosen, rejected)) / 2
    r, lo = initial.revision[0].tolist(), initial.rejected[0].tolist()
    d = next(k for k, (a, b) in enumerate(zip(initial.revision_ids[0], initial.rejected_ids[0])) if a != b)
    k_end = max(len(r), len(lo))
    revision = sum(softplus(-(r[min(k, len(r) - 1)] - lo[min(k, len(lo) - 1)])) for k in range(d, k_end)) / (k_end - d)
    rm.train_reward_model(
        model, tokenizer, PAIRS, tmp_path / "run", batch_size=2, progress=False, prefix_loss="revision",
        prefix_weight=0.5,
    )  # fmt: skip
    logged = read_jsonl(tmp_path / "run" / "log.jsonl")[0]
    assert logged["prefix_loss"] == pytest.approx(revision, rel=1e-4)
    assert logged["loss"] == pytest.approx(bt + 0.5 * revision, rel=1e-4)


def test_revision_loss_without_revisions_and_an_unknown_loss_are_clear_errors(tokenizer, tmp_path, capsys):
    model_dir = tmp_path / "model"
    tiny_reward_model("gpt2", tokenizer).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    data = tmp_path / "pairs.jsonl"
    write_jsonl(data, [{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in PAIRS])
    base = ["train", "reward-model", "--data", str(data), "--model", str(model_dir), "--out", str(tmp_path / "o")]
    for extra, message in (
        (["--prefix-loss", "revision"], "needs pairs with a `revision`"),
        (["--prefix-loss", "values"], "invalid choice: 'values'"),
    ):
        try:
            status = main(base + extra + ["--no-progress"])
        except SystemExit as exit_info:  # argparse's own refusal of an unknown choice
            status = exit_info.code
        assert status == 2
        assert message in capsys.readouterr().err
