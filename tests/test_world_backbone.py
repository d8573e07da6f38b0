"""`world build --reward-backbone`: the reward model from a pretrained causal LM with its own
tokenizer, LoRA-trained through every layer on a seeded subsample of the reward pairs, measured
like the world's own; the backbone is part of the world's identity.

The backbone is a tiny llama with a BPE tokenizer of its own, built on the spot; the world is the
small world's first four stages (copied), finished by the backbone's reward model stage."""

from __future__ import annotations

import json
import random
import shutil
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from tokenreward.cli import main
from tokenreward.models import ModelLoading
from tokenreward.rewards import build_rewarder, with_reward_model
from tokenreward.testing import hf_reward_score, tiny_config, train_tokenizer
from tokenreward.trainers.ppo.models import rewarder_resources
from tokenreward.trainers.reward_model import pairwise_accuracy
from tokenreward.world import BUILD_STATE, World, default_world_path
from tokenreward.world.sizes import SIZES
from tokenreward.worldbuild import backbone as world_backbone
from tokenreward.worldbuild import build as world_build

RECIPE = world_backbone.BackboneRecipe(
    data_pairs=48, policy_pairs=24, epochs=1, batch_size=8, lr=5e-3, lora_r=4, lora_alpha=8.0
)


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    """A tiny llama causal LM with its own tokenizer, saved as a folder."""
    folder = tmp_path_factory.mktemp("backbone") / "tiny-llama"
    tokenizer = train_tokenizer(vocab_size=280)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(
        tiny_config("llama", len(tokenizer), tokenizer.pad_token_id, max_position_embeddings=512)
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def backbone_world(small_world, backbone, tmp_path_factory):
    """The small world's data, tokenizer, policy and policy pairs, with its reward model and
    measurements built again from the backbone (`RECIPE`: fewer pairs, for speed)."""
    root = tmp_path_factory.mktemp("backbone-world") / "world"
    for folder in ("data", "tokenizer", "policy"):
        shutil.copytree(small_world.root / folder, root / folder)
    state = json.loads((small_world.root / "world.json").read_text())
    state = {key: state[key] for key in ("size", "seed", "metrics")}
    state.update(
        families=list(small_world.families),
        done=["data", "tokenizer", "policy", "policy_pairs"],
        reward_backbone="tiny-llama",
    )
    (root / BUILD_STATE).write_text(json.dumps(state))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(world_backbone, "RECIPE", RECIPE)
        return world_build.build_world(root, size="small", progress=False, reward_backbone=backbone)


def test_the_world_records_its_backbone_recipe_and_pair_subsample(backbone_world, backbone, capsys):
    recorded = backbone_world.reward_backbone
    base = AutoModelForCausalLM.from_pretrained(str(backbone)).model
    assert backbone_world.config["reward_backbone"] == "tiny-llama"
    assert recorded["name"] == "tiny-llama" and recorded["parameters"] == sum(p.numel() for p in base.parameters())
    assert recorded["training"]["lora_r"] == RECIPE.lora_r and recorded["training"]["lr"] == RECIPE.lr
    data, policy = backbone_world.pairs("reward"), backbone_world.policy_pairs("reward")
    assert recorded["pairs"] == {
        "rule": world_backbone.SUBSAMPLE_RULE,
        "seed": 0,
        "data_pairs": RECIPE.data_pairs,
        "data_pairs_available": len(data),
        "policy_pairs": RECIPE.policy_pairs,
        "policy_pairs_available": len(policy),
    }
    assert backbone_world.metrics["reward_model_pairs"] == RECIPE.data_pairs + RECIPE.policy_pairs
    readme = (backbone_world.root / "README.md").read_text()
    assert "## Reward backbone" in readme and backbone_world.reward_model_description() in readme
    assert main(["world", "info", "--world", str(backbone_world.root)]) == 0
    assert (
        f"reward model: backbone tiny-llama ({recorded['parameters']:,} parameters, its own tokenizer), LoRA r 4 "
        "on 48 data + 24 policy pairs, prefix loss revision" in capsys.readouterr().out
    )


def test_the_subsample_is_the_documented_seeded_draw(backbone_world):
    data, policy = backbone_world.pairs("reward"), backbone_world.policy_pairs("reward")
    random.Random(0).shuffle(data)
    random.Random(1).shuffle(policy)
    expected = data[:48] + policy[:24]
    random.Random(0).shuffle(expected)
    pairs, _ = world_backbone.subsample_pairs(backbone_world.root, 0, RECIPE)
    assert pairs == expected


def test_the_reward_model_is_the_backbone_read_with_its_own_tokenizer(backbone_world, backbone):
    own = AutoTokenizer.from_pretrained(str(backbone)).get_vocab()
    saved = AutoTokenizer.from_pretrained(str(backbone_world.reward_model_dir)).get_vocab()
    assert saved == own and saved != AutoTokenizer.from_pretrained(str(backbone_world.tokenizer_dir)).get_vocab()
    resources = backbone_world.resources()
    assert resources["reward_tokenizer"] == str(backbone_world.reward_model_dir)
    red = build_rewarder("red", resources)
    assert red.tokenizer.get_vocab() == own
    record = backbone_world.responses("test")[0]
    rewards = red.score([record["prompt"]], [record["response"]])
    model = AutoModelForSequenceClassification.from_pretrained(str(backbone_world.reward_model_dir)).eval()
    ids = AutoTokenizer.from_pretrained(str(backbone))(record["prompt"] + record["response"], return_tensors="pt")
    with torch.no_grad():
        expected = float(model(**ids).logits[0, 0])
    assert float(rewards.sequence_rewards[0]) == pytest.approx(expected, abs=1e-5)
    replaced = with_reward_model(resources, str(backbone_world.reward_model_dir), own_tokenizer=False)
    assert "reward_tokenizer" not in replaced and replaced["tokenizer"] == str(backbone_world.tokenizer_dir)


def test_a_reward_model_given_on_another_world_reads_its_own_tokenizer(backbone_world, small_world, tmp_path, capsys):
    """The trainers' `--reward-model` and `score --world W --reward-model`: a reward model whose
    vocabulary is not the policy's is read with its own tokenizer, never with the policy's ids."""
    folder = str(backbone_world.reward_model_dir)
    record = small_world.responses("test")[0]
    expected = hf_reward_score(folder, record["prompt"], record["response"])
    resources = rewarder_resources(SimpleNamespace(reward_model=folder), small_world, ModelLoading())
    assert resources["reward_tokenizer"] == folder
    red = build_rewarder("red", resources)
    assert red.tokenizer.get_vocab() == AutoTokenizer.from_pretrained(folder).get_vocab()
    assert float(red.score([record["prompt"]], [record["response"]]).sequence_rewards[0]) == pytest.approx(
        expected, abs=1e-5
    )
    argv = ["score", "--world", str(small_world.root), "--rewarder", "red", "--reward-model", folder]
    argv += ["--prompt", record["prompt"], "--response", record["response"], "--format", "json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["sequence_reward"] == pytest.approx(expected, abs=1e-5)
    # a folder without a tokenizer of its own is read with the resources' tokenizer
    bare = tmp_path / "weights-only"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(backbone_world.reward_model_dir / name, bare / name)
    assert "reward_tokenizer" not in with_reward_model(small_world.resources(), str(bare))


def test_lora_trained_every_layer_and_the_head_and_left_the_embeddings(backbone_world, backbone):
    base = AutoModelForCausalLM.from_pretrained(str(backbone)).state_dict()
    trained = AutoModelForSequenceClassification.from_pretrained(str(backbone_world.reward_model_dir)).state_dict()
    linear = [k for k in base if k.startswith("model.layers.") and k.endswith("proj.weight")]
    assert len(linear) == 2 * 7  # q, k, v, o, gate, up, down in each of the 2 layers
    for key in linear:
        change = trained[key] - base[key]
        assert change.abs().max() > 0, key
        assert torch.linalg.matrix_rank(change, atol=1e-6) <= RECIPE.lora_r, key  # a rank-r update: LoRA
    for key in ("model.embed_tokens.weight", "model.norm.weight", "model.layers.0.input_layernorm.weight"):
        assert torch.equal(trained[key], base[key]), key
    assert trained["score.weight"].shape == (1, base["model.embed_tokens.weight"].shape[1])


def test_its_accuracies_are_pairwise_accuracy_of_the_saved_reward_model(backbone_world):
    model = AutoModelForSequenceClassification.from_pretrained(str(backbone_world.reward_model_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(backbone_world.reward_model_dir))
    metrics, held_out = backbone_world.metrics, backbone_world.pairs("test")
    assert metrics["reward_model_accuracy_labels"] == pairwise_accuracy(model, tokenizer, held_out)
    assert metrics["reward_model_accuracy_oracle"] == pairwise_accuracy(model, tokenizer, held_out, against="oracle")
    assert metrics["reward_model_accuracy_oracle_policy_samples"] == pairwise_accuracy(
        model, tokenizer, backbone_world.policy_pairs("test"), against="oracle"
    )


def test_the_recipe_trains_with_the_revision_prefix_loss(backbone_world, backbone, monkeypatch, tmp_path):
    """`train_backbone_reward_model` is the stage's training: by default (the recipe's `revision`)
    it gives the world's reward model bit for bit (same seed), and `revision` passed by name too;
    without the prefix loss it trains other weights."""
    monkeypatch.setattr(world_backbone, "RECIPE", RECIPE)
    assert RECIPE.prefix_loss == "revision" and backbone_world.reward_backbone["training"]["prefix_loss"] == "revision"
    size = SIZES["small"]
    saved = AutoModelForSequenceClassification.from_pretrained(str(backbone_world.reward_model_dir)).state_dict()
    trained = {}
    for loss in (None, "revision", "none"):
        model, _, pairs, drawn, _ = world_backbone.train_backbone_reward_model(
            backbone_world.root, size, 0, False, backbone, tmp_path / str(loss), prefix_loss=loss
        )
        trained[loss] = model.merge_and_unload().state_dict()
        assert (
            drawn == backbone_world.reward_backbone["pairs"] and len(pairs) == RECIPE.data_pairs + RECIPE.policy_pairs
        )
    assert all(torch.equal(trained[None][key], saved[key]) for key in saved)
    assert all(torch.equal(trained["revision"][key], saved[key]) for key in saved)
    assert not torch.equal(trained["none"]["score.weight"], saved["score.weight"])


def test_the_backbone_is_part_of_the_worlds_identity(backbone_world, backbone, small_world, tmp_path, monkeypatch):
    with pytest.raises(
        ValueError, match="finished world with the reward backbone 'tiny-llama', not the world's GPT-2"
    ):
        world_build.build_world(backbone_world.root, size="small", progress=False)
    with pytest.raises(
        ValueError, match="finished world with the world's GPT-2 reward model, not the reward backbone"
    ):
        world_build.build_world(small_world.root, size="small", progress=False, reward_backbone=backbone)
    monkeypatch.setitem(
        world_build.SIZES, "tiny", world_build.WorldSize(8, 0.2, 1, 1, 1, 400, 1, 32, 2, 1, 1e-3, 1, 1e-3, 16, 8, 1)
    )
    monkeypatch.setitem(
        world_build.STAGE_FUNCTIONS, "tokenizer", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt())
    )
    with pytest.raises(KeyboardInterrupt):
        world_build.build_world(tmp_path / "w", size="tiny", progress=False)
    with pytest.raises(
        ValueError, match="partial world with the world's GPT-2 reward model, not the reward backbone 'tiny-llama'"
    ):
        world_build.build_world(tmp_path / "w", size="tiny", progress=False, reward_backbone=backbone)
    assert default_world_path("full", "SmolLM2-135M-Instruct.Q4_1").name == "world-full-SmolLM2-135M-Instruct.Q4_1"
    assert World(small_world.root).reward_backbone is None and "reward_tokenizer" not in small_world.resources()


def test_a_missing_or_unloadable_backbone_is_one_line_exit_2(tmp_path, capsys):
    assert main(["world", "build", "--out", str(tmp_path / "w"), "--reward-backbone", str(tmp_path / "none")]) == 2
    assert f"--reward-backbone {tmp_path / 'none'}: no such file or folder" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    assert main(["world", "build", "--out", str(tmp_path / "w"), "--reward-backbone", str(broken)]) == 2
    err = capsys.readouterr().err
    assert f"--reward-backbone {broken}: cannot load it as a causal LM" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "w").exists()
