"""PPO_synthetic: the reward model learns (revision > rejected) pairs, then sparse PPO runs on it."""

from __future__ import annotations

import json

import pytest

from tokenreward.trainers.ppo_synthetic import PPOSyntheticConfig, run, synthetic_pairs


def test_synthetic_pairs_put_the_revision_first_and_drop_unrevised():
    records = [
        {"prompt": "p1", "rejected": " bad", "revision": " good", "chosen": " other"},
        {"prompt": "p2", "rejected": " fine", "revision": " fine", "chosen": " also fine"},
    ]
    assert synthetic_pairs(records) == [{"prompt": "p1", "chosen": " good", "rejected": " bad"}]


def test_run_trains_the_reward_model_then_ppo_on_it(small_world, tmp_path):
    from tokenreward.labels import labels_from_world
    from tokenreward.models import load_reward_model, load_tokenizer
    from tokenreward.trainers.reward_model import pairwise_accuracy, reward_model_from

    tokenizer = load_tokenizer(small_world.tokenizer_dir)
    records = labels_from_world(small_world, tokenizer)[:20]
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps(r) + "\n" for r in records))
    settings = dict(
        world=small_world.root,
        labels=labels,
        steps=1,
        batch_size=4,
        mini_batch_size=4,
        ppo_epochs=1,
        max_new_tokens=8,
        rm_epochs=6,
        rm_batch_size=8,
        progress=False,
    )
    out = run(PPOSyntheticConfig(out=tmp_path / "run", **settings))
    rm_dir = tmp_path / "run" / "synthetic-reward-model"
    metrics = json.loads((rm_dir / "eval.json").read_text())
    pairs = synthetic_pairs(records)
    assert metrics["train_pairs"] == len(pairs) and metrics["dropped_unrevised_pairs"] == len(records) - len(pairs)
    assert metrics["epochs"] == 6 and metrics["batch_size"] == 8 and metrics["lr"] > 0  # lr: the world's recipe
    # the reward model learnt its training preference (revision over rejected), which the
    # SFT policy's fresh head does not know
    trained = pairwise_accuracy(load_reward_model(rm_dir / "final"), tokenizer, pairs)
    untrained = pairwise_accuracy(
        load_reward_model(reward_model_from(small_world.policy_dir, tokenizer)), tokenizer, pairs
    )
    assert trained >= 0.9 and trained > untrained
    # PPO ran on that reward model with the sparse rewarder
    ppo_settings = json.loads((out / "run.json").read_text())
    assert ppo_settings["reward_model"] == str(rm_dir / "final") and ppo_settings["rewarder"] == "sparse"
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1] and "oracle_score" in log[0]
    assert (out / "final" / "config.json").exists()


def test_refuses_another_rewarder(small_world, tmp_path):
    with pytest.raises(ValueError, match="sparse rewarder"):
        run(PPOSyntheticConfig(out=tmp_path / "run", world=small_world.root, rewarder="red"))
