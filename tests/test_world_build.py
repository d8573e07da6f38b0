"""The built world: files and schemas, the oracle fields recomputed, splits, models loadable by
plain Hugging Face classes, a policy that stops, resumable and deterministic builds, and clear
errors for missing or half-built worlds."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest
from rapidfuzz.distance import Levenshtein

from tokenreward.jsonl import read_jsonl
from tokenreward.world import SPLITS, World, open_world
from tokenreward.world.families import DEFAULT_FAMILIES
from tokenreward.world.generate import REVISION_BETTER
from tokenreward.world.oracle import grade, step_truth
from tokenreward.worldbuild import build as world_build
from tokenreward.worldbuild import measure as world_measure

TINY = world_build.WorldSize(8, 0.2, 1, 1, 1, 400, 1, 32, 2, 1, 1e-3, 1, 1e-3, 16, 8, 1)


@pytest.fixture
def tiny_size(monkeypatch):
    monkeypatch.setitem(world_build.SIZES, "tiny", TINY)
    return "tiny"


def digest(folder):
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_small_world_is_complete_and_reports_its_measurements(small_world):
    metrics = small_world.metrics
    for key in (
        "label_oracle_agreement",
        "reward_model_accuracy_labels",
        "reward_model_accuracy_oracle",
        "sft_policy_greedy",
        "sft_policy_sampled",
    ):
        assert key in metrics
    assert 0.6 < metrics["label_oracle_agreement"] < 0.9
    assert small_world.families == DEFAULT_FAMILIES
    assert {p["family"] for split in SPLITS for p in small_world.prompts(split)} == set(DEFAULT_FAMILIES)
    readme = (small_world.root / "README.md").read_text()
    assert REVISION_BETTER.splitlines()[0] in readme and "label_oracle_agreement" in readme


def test_records_carry_the_oracle_fields_recomputed(small_world):
    prompts = {p["id"]: p for split in SPLITS for p in small_world.prompts(split)}
    for record in small_world.responses("test"):
        g = grade(prompts[record["prompt_id"]], record["response"])
        assert record["oracle_score"] == pytest.approx(g.score)
        assert record["credit_spans"] == g.credit_spans
        assert record["prompt"] == prompts[record["prompt_id"]]["prompt"]
        assert all(0 <= s < e <= len(record["response"]) for s, e, _ in record["credit_spans"])


def test_pairs_have_revisions_that_fix_exactly_the_defects(small_world):
    pairs = small_world.pairs("reward")
    assert pairs
    for pair in pairs:
        record = small_world.prompt_record(pair["prompt"])
        rejected = grade(record, pair["rejected"])
        assert pair["rejected_score"] == pytest.approx(rejected.score)
        assert Levenshtein.distance(pair["rejected"], pair["revision"]) <= sum(i.size for i in rejected.issues)
        assert grade(record, pair["revision"]).defects == 0
        assert pair["revision_credit_spans"] == grade(record, pair["revision"]).credit_spans


def test_policy_pairs_are_the_policys_samples_graded_and_labelled(small_world):
    pairs = small_world.policy_pairs("reward")
    prompts = small_world.prompts("reward")
    per_prompt = world_build.SIZES["small"].policy_pairs_per_prompt
    assert pairs and len(pairs) + small_world.metrics["policy_pairs_reward_blank_left_out"] == per_prompt * len(
        prompts
    )
    for pair in pairs:
        record = small_world.prompt_record(pair["prompt"])
        for side in ("chosen", "rejected"):
            assert pair[side].strip() and pair[f"{side}_score"] == pytest.approx(grade(record, pair[side]).score)
            assert pair[f"{side}_credit_spans"] == grade(record, pair[side]).credit_spans
    assert 0.0 <= small_world.metrics["reward_model_accuracy_oracle_policy_samples"] <= 1.0
    with pytest.raises(ValueError, match="reward and test splits"):
        small_world.policy_pairs("rl")


def test_splits_are_disjoint_and_sized_20_40_40(small_world):
    ids = {split: {p["id"] for p in small_world.prompts(split)} for split in SPLITS}
    for a in SPLITS:
        for b in SPLITS:
            assert a == b or not ids[a] & ids[b]
    sft, reward, rl = len(ids["sft"]), len(ids["reward"]), len(ids["rl"])
    assert abs(reward - 2 * sft) <= 2 and abs(rl - reward) <= 2 and len(ids["test"]) > 0


def test_models_load_with_plain_hugging_face_classes_and_the_policy_stops(small_world):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(small_world.tokenizer_dir))
    policy = AutoModelForCausalLM.from_pretrained(str(small_world.policy_dir)).eval()
    reward_model = AutoModelForSequenceClassification.from_pretrained(str(small_world.reward_model_dir)).eval()
    assert reward_model.config.num_labels == 1 and reward_model.config.pad_token_id == tokenizer.pad_token_id
    prompts = [p["prompt"] for p in small_world.prompts("test")[:12]]
    stopped = 0
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt")
        out = policy.generate(
            **ids, max_new_tokens=world_measure.MAX_NEW_TOKENS, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
        stopped += int((out[0, ids["input_ids"].shape[1] :] == tokenizer.eos_token_id).any())
    assert stopped >= len(prompts) // 2


def test_resources_build_the_reward_model_rewarders(small_world):
    from tokenreward import build_rewarder

    resources = small_world.resources()
    assert {"reward_model", "tokenizer", "policy", "reference"} <= set(resources)
    record = small_world.responses("test")[0]
    out = build_rewarder("red", **resources).score([record["prompt"]], [record["response"]])
    assert out.responses == [record["response"]]


def test_open_world_errors_say_how_to_build(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="tokenreward world build"):
        open_world(tmp_path / "missing")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("TOKENREWARD_WORLD", raising=False)
    with pytest.raises(FileNotFoundError, match="tokenreward world build --size full"):
        open_world()


def test_open_world_follows_the_environment(small_world, monkeypatch):
    monkeypatch.setenv("TOKENREWARD_WORLD", str(small_world.root))
    assert open_world().root == small_world.root


def test_killed_build_is_half_built_then_resumes_to_the_same_world(tmp_path, tiny_size, monkeypatch):
    reference = world_build.build_world(tmp_path / "fresh", size=tiny_size, seed=3, progress=False)
    with pytest.raises(ValueError, match="of the families arithmetic, facts, .*--families tone multistep --out"):
        world_build.build_world(reference.root, size=tiny_size, seed=3, families=("tone", "multistep"))

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed during the reward model")

    monkeypatch.setitem(world_build.STAGE_FUNCTIONS, "reward_model", killed)
    with pytest.raises(KeyboardInterrupt):
        world_build.build_world(tmp_path / "resumed", size=tiny_size, seed=3, progress=False)
    with pytest.raises(
        FileNotFoundError, match=r"half-built \(finished stages: data, tokenizer, policy, policy_pairs\)"
    ):
        World(tmp_path / "resumed")
    data_before = digest(tmp_path / "resumed" / "data")
    monkeypatch.setitem(world_build.STAGE_FUNCTIONS, "reward_model", world_build.build_reward_model)
    resumed = world_build.build_world(tmp_path / "resumed", size=tiny_size, seed=3, progress=False)
    assert digest(tmp_path / "resumed" / "data") == data_before == digest(reference.root / "data")
    for folder in ("policy", "reward-model"):
        assert digest(resumed.root / folder) == digest(reference.root / folder)
    assert resumed.metrics == reference.metrics


def test_seed_changes_the_data(tmp_path):
    for seed in (1, 2):
        world_build.build_data(tmp_path / str(seed), TINY, seed, progress=False)
    assert digest(tmp_path / "1" / "data") != digest(tmp_path / "2" / "data")


def test_an_opt_in_family_brings_its_prompts_and_revisions(tmp_path):
    families = DEFAULT_FAMILIES + ("multistep",)
    world_build.build_data(tmp_path / "default", TINY, 4, progress=False)
    world_build.build_data(tmp_path / "with", replace(TINY, families=families), 4, progress=False)

    def records(folder, kind):
        return [r for split in SPLITS for r in read_jsonl(tmp_path / folder / "data" / f"{kind}.{split}.jsonl")]

    assert {p["family"] for p in records("default", "prompts")} == set(DEFAULT_FAMILIES)
    prompts = {p["prompt"]: p for p in records("with", "prompts")}
    assert {p["family"] for p in prompts.values()} == set(families)
    pairs = [pair for pair in records("with", "pairs") if pair["family"] == "multistep"]
    assert pairs
    for pair in pairs:
        assert grade(prompts[pair["prompt"]], pair["revision"]).defects == 0, pair["revision"]
    assert not list((tmp_path / "default" / "data").glob("steps.*"))  # worlds without steps: no stepwise data
    responses = [r for r in records("with", "responses") if r["family"] == "multistep"]
    with_steps = [r for r in responses if step_truth(prompts[r["prompt"]], r["response"])]
    assert 0 < len(with_steps) < len(responses)  # replies that answer nothing have no step and are left out
    stepwise = records("with", "steps")
    assert ["\n".join(row["completions"]) for row in stepwise] == [r["response"] for r in with_steps]
    assert [row["prompt_id"] for row in stepwise] == [r["prompt_id"] for r in with_steps]


def test_a_world_without_steps_has_no_stepwise_data(small_world):
    with pytest.raises(FileNotFoundError, match="no stepwise data.*multistep"):
        small_world.steps("test")


def test_a_partial_world_of_another_seed_is_refused(tmp_path, tiny_size, monkeypatch):
    monkeypatch.setitem(
        world_build.STAGE_FUNCTIONS, "tokenizer", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt())
    )
    with pytest.raises(KeyboardInterrupt):
        world_build.build_world(tmp_path / "w", size=tiny_size, seed=1, progress=False)
    with pytest.raises(ValueError, match="partial world of size 'tiny' and seed 1"):
        world_build.build_world(tmp_path / "w", size=tiny_size, seed=2, progress=False)
    with pytest.raises(ValueError, match="to build size 'tiny' seed 1 \\(families arithmetic, multistep\\)"):
        world_build.build_world(tmp_path / "w", size=tiny_size, seed=1, families=("arithmetic", "multistep"))
    with pytest.raises(ValueError, match="families: unknown family 'poetry'"):
        world_build.build_world(tmp_path / "x", size=tiny_size, families=("poetry",))
    with pytest.raises(ValueError, match="unknown world size"):
        world_build.build_world(tmp_path / "x", size="huge")


def test_policy_quality_grades_the_policys_own_samples(small_world):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(small_world.tokenizer_dir))
    policy = AutoModelForCausalLM.from_pretrained(str(small_world.policy_dir)).eval()
    prompts = small_world.prompts("test")[:6]
    texts = world_measure.sample_responses(
        policy, tokenizer, [p["prompt"] for p in prompts], greedy=True, seed=0, batch_size=4
    )
    one_by_one = world_measure.sample_responses(
        policy, tokenizer, [p["prompt"] for p in prompts], greedy=True, seed=0, batch_size=1
    )
    assert texts == one_by_one  # left padding does not change greedy continuations
    quality = world_measure.policy_quality(policy, tokenizer, prompts, greedy=True, seed=0)
    grades = [grade(p, t) for p, t in zip(prompts, texts)]
    assert quality["oracle_score"] == pytest.approx(sum(g.score for g in grades) / len(grades))
    assert quality["defect_rate"] == pytest.approx(sum(g.defects > 0 for g in grades) / len(grades))
