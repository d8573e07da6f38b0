"""TLCR discriminator: the soft-label BCE against a naive loop, metrics by hand, and the trainer
(learns a separable labelling, saves a Hugging Face folder, resumes exactly)."""

from __future__ import annotations

import json
import math
import random
import shutil

import pytest
import torch

from tokenreward.labels import label_pair
from tokenreward.losses.discriminator import discriminator_metrics, soft_label_bce
from tokenreward.testing import tiny_causal_lm, train_tokenizer
from tokenreward.trainers.discriminator import DiscriminatorConfig, run


def test_soft_label_bce_matches_naive_loop():
    logits = torch.randn(3, 5) * 3
    labels = torch.tensor([[0.0, 0.5, 1.0, 0.5, 0.0], [1.0, 1.0, 0.5, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5, 0.5]])
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0], [0, 1, 1, 1, 1]], dtype=torch.bool)
    total, count = 0.0, 0
    for b in range(3):
        for t in range(5):
            if mask[b, t]:
                d = 1 / (1 + math.exp(-float(logits[b, t])))
                p = float(labels[b, t])
                total += -p * math.log(d) - (1 - p) * math.log(1 - d)
                count += 1
    assert float(soft_label_bce(logits, labels, mask)) == pytest.approx(total / count, rel=1e-5)


def test_soft_label_bce_gradient_vanishes_at_the_soft_label():
    """For a neutral token the optimum is D = 0.5 (logit 0), for a positive one D -> 1."""
    logits = torch.zeros(1, 2, requires_grad=True)
    soft_label_bce(logits, torch.tensor([[0.5, 1.0]]), torch.ones(1, 2, dtype=torch.bool)).backward()
    assert logits.grad[0, 0] == 0.0 and logits.grad[0, 1] < 0


def test_metrics_by_hand():
    probs = torch.tensor([0.9, 0.55, 0.2, 0.7, 0.5, 0.45, 0.65])
    labels = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.5, 0.5, 0.5])
    m = discriminator_metrics(probs, labels)
    # binary on the 4 non-neutral tokens: 0.9 ok, 0.55 ok, 0.2 ok, 0.7 wrong
    assert m["accuracy"] == pytest.approx(3 / 4)
    assert m["accuracy_positive"] == 1.0 and m["accuracy_negative"] == 0.5 and m["balanced_accuracy"] == 0.75
    # 3-class (neutral below 0.6): 0.9 -> +, 0.55 -> n (wrong), 0.2 -> -, 0.7 -> + (wrong),
    # 0.5 -> n, 0.45 -> n, 0.65 -> + (wrong): 4 of 7
    assert m["accuracy_3class"] == pytest.approx(4 / 7)
    assert m["neutral_abs_reward"] == pytest.approx((0.0 + 0.1 + 0.3) / 3)
    assert (m["tokens_positive"], m["tokens_negative"], m["tokens_neutral"]) == (2, 2, 3)


BAD = ["awful", "rotten", "useless", "horrid"]
GOOD = ["lovely", "splendid", "helpful", "pleasant"]
THINGS = ["weather", "garden", "soup", "answer", "movie", "train", "river", "lamp"]


def synthetic_pairs(n: int, seed: int) -> list[tuple[str, str, str]]:
    """(prompt, rejected, revision): the revision swaps the rejected response's bad word for a good one."""
    rng = random.Random(seed)
    pairs = []
    for k in range(n):
        thing = rng.choice(THINGS)
        prompt = f"Tell me about the {thing} number {k}."
        pairs.append(
            (prompt, f" The {thing} is {rng.choice(BAD)} today.", f" The {thing} is {rng.choice(GOOD)} today.")
        )
    return pairs


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """A backbone folder (tiny GPT-2 + tokenizer) and a labels file made with its tokenizer."""
    root = tmp_path_factory.mktemp("disc")
    corpus = [text for pair in synthetic_pairs(60, 1) for text in pair]
    tokenizer = train_tokenizer(corpus, vocab_size=400)
    backbone = root / "backbone"
    tiny_causal_lm("gpt2", tokenizer).save_pretrained(backbone)
    tokenizer.save_pretrained(backbone)
    records = [label_pair(tokenizer, *pair) for pair in synthetic_pairs(60, 0)]
    records.insert(3, {"prompt": "x", "rejected": " y", "failed": "reply has no marker", "reply": "no"})
    labels = root / "labels.jsonl"
    labels.write_text("".join(json.dumps(r) + "\n" for r in records))
    return backbone, labels, tokenizer


def config(labelled, out, **overrides):
    backbone, labels, _ = labelled
    settings = dict(
        out=out,
        labels=labels,
        backbone=str(backbone),
        learning_rate=3e-3,
        batch_size=16,
        epochs=12,
        eval_fraction=0.2,
        log_every=5,
        progress=False,
    )
    settings.update(overrides)
    return DiscriminatorConfig(**settings)


def test_trainer_learns_held_out_token_labels(labelled, tmp_path):
    from transformers import AutoModelForTokenClassification

    final = run(config(labelled, tmp_path / "run"))
    metrics = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert metrics["held_out_pairs"] == 12 and metrics["train_pairs"] == 48  # the failed record is skipped
    assert metrics["tokens_positive"] > 0 and metrics["tokens_negative"] > 0
    assert metrics["accuracy"] >= 0.95 and metrics["balanced_accuracy"] >= 0.95
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert losses[-1] < losses[0]
    assert log[-1]["eval_accuracy"] == metrics["accuracy"]
    # an ordinary Hugging Face folder: a token-classification model with one logit per token
    model = AutoModelForTokenClassification.from_pretrained(final)
    assert model.config.num_labels == 1 and model.config.id2label == {0: "positive"}
    assert (final / "tokenizer_config.json").exists()


def test_resume_from_a_checkpoint_is_exact(labelled, tmp_path):
    settings = dict(epochs=1, batch_size=8, save_every=2, eval_fraction=0.0)
    full = run(config(labelled, tmp_path / "full", **settings))
    steps = json.loads((tmp_path / "full" / "log.jsonl").read_text().splitlines()[-1])["step"]
    kept = sorted((tmp_path / "full" / "checkpoints").glob("step-*"), key=lambda p: int(p.name[5:]))
    assert 0 < int(kept[0].name[5:]) < steps
    # a run killed after that step: only that checkpoint is there
    shutil.copytree(kept[0], tmp_path / "cut" / "checkpoints" / kept[0].name)
    resumed = run(config(labelled, tmp_path / "cut", resume=True, **settings))
    from safetensors.torch import load_file

    a, b = load_file(str(full / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_labels_from_another_tokenizer_are_refused(labelled, tmp_path):
    backbone, _, _ = labelled
    other = train_tokenizer(vocab_size=270)
    records = [label_pair(other, *pair) for pair in synthetic_pairs(10, 0)]
    labels = tmp_path / "other.jsonl"
    labels.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(ValueError, match="relabel with `tokenreward label --tokenizer`"):
        run(config(labelled, tmp_path / "run", labels=labels, epochs=1))


def test_refuses_to_overwrite_a_run(labelled, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text("{}")
    with pytest.raises(ValueError, match="pass --resume"):
        run(config(labelled, tmp_path / "run"))


def test_labels_file_errors(labelled, tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenreward label"):
        run(config(labelled, tmp_path / "run", labels=tmp_path / "missing.jsonl"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "p", "rejected": " r"}) + "\n")
    with pytest.raises(ValueError, match="bad.jsonl line 1: missing revision"):
        run(config(labelled, tmp_path / "run", labels=bad))


def test_install_in_the_world_feeds_the_tlcr_rewarder(small_world, tmp_path):
    """Trained on (a slice of) the world's oracle labels, installed as WORLD/discriminator, and
    then offered by `World.resources()` to the `tlcr` rewarder."""
    from tokenreward.labels import labels_from_world
    from tokenreward.models import load_tokenizer
    from tokenreward.rewards import build_rewarder
    from tokenreward.world import open_world

    world_copy = tmp_path / "world"
    shutil.copytree(small_world.root, world_copy, ignore=shutil.ignore_patterns("work"))
    records = labels_from_world(small_world, load_tokenizer(small_world.tokenizer_dir))[:24]
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps(r) + "\n" for r in records))
    run(DiscriminatorConfig(out=tmp_path / "run", world=world_copy, labels=labels, epochs=1, install=True))
    assert tree(world_copy / "discriminator") == tree(tmp_path / "run" / "final")
    world = open_world(world_copy)
    assert world.resources()["discriminator"] == str(world_copy / "discriminator")
    rewarder = build_rewarder("tlcr", **world.resources(), device="cpu")
    pair = small_world.pairs("reward")[0]
    result = rewarder.score([pair["prompt"]], [pair["rejected"]])
    assert len(result.token_rewards(0)) == len(records[0]["rejected_labels"])


def tree(folder) -> dict[str, bytes]:
    """Every file under `folder`, by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def make_model_folder(folder, files: dict[str, str]):
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


OLD = {"config.json": "old config", "model.safetensors": "old weights", "tokenizer/vocab.json": "old vocab"}
NEW = {"config.json": "new config", "model.safetensors": "new weights", "extra.txt": "only in the new one"}


def test_install_replaces_the_installed_model_whole(tmp_path):
    """A second install replaces the first: the installed files are the new run's final/, no file of
    the old one is left, nothing is nested inside, no staging folder stays behind."""
    from tokenreward.trainers.discriminator import install_in_world

    world = tmp_path / "world"
    world.mkdir()
    first = make_model_folder(tmp_path / "first", OLD)
    second = make_model_folder(tmp_path / "second", NEW)
    assert install_in_world(first, world) == world / "discriminator"
    assert tree(world / "discriminator") == tree(first)
    install_in_world(second, world)
    assert tree(world / "discriminator") == {k: v.encode() for k, v in NEW.items()}
    assert sorted(p.name for p in world.iterdir()) == ["discriminator"]


class Killed(BaseException):
    """Stands for the process being killed at one file-system operation."""


def test_install_killed_at_any_step_leaves_the_old_or_the_new_model(tmp_path, monkeypatch):
    """Kill the install at its k-th file-system operation (a copy killed half-way included), for
    every k: WORLD/discriminator is the old model or the new one, whole; in the one window where
    it is absent, the old model is whole beside it and the next install brings it back first."""
    import os

    from tokenreward.trainers.discriminator import install_in_world

    real = {"replace": os.replace, "rmtree": shutil.rmtree, "copytree": shutil.copytree}

    def half_copy(source, target, **kwargs):
        real["copytree"](source, target, ignore=lambda folder, names: names[len(names) // 2 :])
        raise Killed

    make_model_folder(tmp_path / "old", OLD)
    outcomes = set()
    for k in range(8):
        world = tmp_path / f"world{k}"
        installed = make_model_folder(world / "discriminator", OLD)
        new = make_model_folder(tmp_path / f"new{k}", NEW)
        calls = []

        def op(name, k=k, calls=calls):
            def wrapped(*args, **kwargs):
                calls.append(name)
                if len(calls) == k + 1:
                    if name == "copytree":
                        half_copy(*args, **kwargs)
                    raise Killed
                return real[name](*args, **kwargs)

            return wrapped

        with monkeypatch.context() as patch:
            for name in real:
                patch.setattr(os if name == "replace" else shutil, name, op(name))
            try:
                install_in_world(new, world)
            except Killed:
                pass
        if installed.exists():
            now = tree(installed)
            outcome = "old" if now == tree(world.parent / "old") else "new" if now == tree(new) else "mixed"
        else:
            assert tree(world / ".discriminator.old") == {k: v.encode() for k, v in OLD.items()}
            outcome = "absent"
        assert outcome != "mixed", f"killed at operation {k}"
        outcomes.add(outcome)
        install_in_world(new, world)  # the rerun
        assert tree(installed) == tree(new) and sorted(p.name for p in world.iterdir()) == ["discriminator"]
    assert outcomes == {"old", "absent", "new"}
