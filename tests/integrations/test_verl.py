"""The verl integration on CPU with verl's own objects (no Ray, no GPU): verl's RewardLoopWorker
loads the `tokenreward` manager by name from a config composed from verl's own trainer config,
scores a DataProto of left-padded prompts and right-padded responses, and verl's
`compute_advantage` runs our estimators. Expected values come from tokenreward's rewarder
called directly, the reward model's own Hugging Face forward, verl's own rloo / grpo, and
naive per-row loops."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import torch

verl = pytest.importorskip("verl", reason="verl is not installed (pip install 'tokenreward[verl]')")

from hydra import compose, initialize_config_dir
from tensordict import TensorDict
from verl import DataProto
from verl.experimental.reward_loop.reward_loop import RewardLoopWorker
from verl.trainer.config import AlgoConfig
from verl.trainer.ppo.ray_trainer import compute_advantage
from verl.trainer.ppo.reward import resolve_reward_manager_cls

import tokenreward.integrations.verl  # noqa: F401  (registers, as the plugin does)
from tokenreward.align import offsets_from_ids
from tokenreward.rewards import build_rewarder
from tokenreward.testing import tiny_reward_model, train_tokenizer

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = ["What is 17 + 25?", "The capital of France is", "Say hello.", "Name the first primes."]
RESPONSES = [
    " The answer is 42.",
    " Paris, a naïve guess.",
    " Hello world!",
    " 2, 3, 5, 7, 11.",
    " You are stupid.",
    " Lima.",
    " Thank you for asking",
]
# (prompt, response, ends with EOS, uid): rows of one prompt are scattered; "p3" has one sample
ROWS = [
    (0, 0, True, "p0"),
    (1, 1, True, "p1"),
    (0, 4, False, "p0"),
    (2, 2, True, "p2"),
    (1, 5, True, "p1"),
    (0, 6, False, "p0"),
    (3, 3, True, "p3"),
    (2, 4, True, "p2"),
]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Policy tokenizer, a reward model with the same tokenizer, and one whose tokenizer differs."""
    root = tmp_path_factory.mktemp("verl_models")
    policy = train_tokenizer(vocab_size=300)
    policy.save_pretrained(root / "policy")
    other = train_tokenizer(corpus=[p + r for p in PROMPTS for r in RESPONSES], vocab_size=280)
    paths = {"policy": str(root / "policy")}
    for name, tok, seed in (("same", policy, 0), ("different", other, 1)):
        model = tiny_reward_model("llama", tok, seed=seed)
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
        paths[name] = str(root / name)
    return policy, paths


def batch_of_rows(tok) -> DataProto:
    """Left-padded prompts, right-padded responses of mixed lengths, uids in shuffled order."""
    prompts = [tok(PROMPTS[p])["input_ids"] for p, _, _, _ in ROWS]
    responses = [tok(RESPONSES[r])["input_ids"] + ([tok.eos_token_id] if eos else []) for _, r, eos, _ in ROWS]
    width_p, width_r = max(map(len, prompts)), max(map(len, responses)) + 2
    pad = tok.pad_token_id
    prompt_ids = torch.tensor([[pad] * (width_p - len(p)) + p for p in prompts])
    response_ids = torch.tensor([r + [pad] * (width_r - len(r)) for r in responses])
    prompt_mask = torch.tensor([[0] * (width_p - len(p)) + [1] * len(p) for p in prompts])
    response_mask = torch.tensor([[1] * len(r) + [0] * (width_r - len(r)) for r in responses])
    batch = TensorDict(
        {
            "prompts": prompt_ids,
            "responses": response_ids,
            "input_ids": torch.cat([prompt_ids, response_ids], 1),
            "attention_mask": torch.cat([prompt_mask, response_mask], 1),
            "response_mask": response_mask,
        },
        batch_size=len(ROWS),
    )
    return DataProto(batch=batch, non_tensor_batch={"uid": np.array([u for *_, u in ROWS], dtype=object)})


def verl_config(paths, rm: str, *extra: str):
    """verl's own trainer config with the overrides docs/verl.md gives for the colocated reward path."""
    overrides = [
        f"actor_rollout_ref.model.path={paths['policy']}",
        "reward.reward_manager.name=tokenreward",
        "reward.reward_model.enable=True",
        f"reward.reward_model.model_path={paths[rm]}",
        "reward.custom_reward_function.path=pkg://tokenreward.integrations.verl.manager",
        "reward.custom_reward_function.name=compute_score",
        "+reward.tokenreward.device=cpu",
        *extra,
    ]
    with initialize_config_dir(config_dir=str(Path(verl.__file__).parent / "trainer" / "config"), version_base=None):
        return compose("ppo_trainer", overrides=overrides)


def worker_rm_scores(config, data):
    """What verl's RewardLoopManager.compute_rm_score does, minus Ray: one worker, its outputs, the
    manager class's assemble_rm_scores."""
    worker = RewardLoopWorker(config)
    outputs = asyncio.run(worker.compute_score_batch(data))
    scores = [o["reward_score"] for o in outputs]
    return resolve_reward_manager_cls(config).assemble_rm_scores(data, scores), outputs, worker


def row_parts(tok, data, i):
    prompt_length = data.batch["prompts"].shape[1]
    mask = data.batch["attention_mask"][i].bool()
    prompt = tok.decode(data.batch["prompts"][i][mask[:prompt_length]].tolist(), skip_special_tokens=True)
    response_ids = data.batch["responses"][i][: int(mask[prompt_length:].sum())].tolist()
    return prompt, response_ids


def expected_row(rewarder, tok, data, i) -> tuple[list[float], str, str]:
    """`rewarder.score` of that one response aligned to the policy tokens, the text-completing token's
    reward moved onto the EOS when the response has one."""
    prompt, response_ids = row_parts(tok, data, i)
    text, offsets = offsets_from_ids(tok, response_ids)
    row = rewarder.score([prompt], [text], align_to=[offsets]).token_rewards(0)
    if response_ids[-1] == tok.eos_token_id:
        completing = next(t for t, (_, end) in enumerate(offsets) if end == len(text))
        assert completing < len(row) - 1
        row[-1] += row[completing]
        row[completing] = 0.0
    return row, prompt, text


def hf_score(path, prompt, text) -> float:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(path), AutoModelForSequenceClassification.from_pretrained(path).eval()
    with torch.no_grad():
        return float(model(**tok(prompt + text, return_tensors="pt")).logits[0, 0])


@pytest.mark.parametrize("rm", ["same", "different"])
def test_dense_rows_equal_the_rewarder_and_sum_to_the_reward_models_score(models, rm):
    tok, paths = models
    data = batch_of_rows(tok)
    config = verl_config(paths, rm, "+reward.tokenreward.rewarder=red", "+reward.tokenreward.keep_sum=true")
    rm_scores, outputs, worker = worker_rm_scores(config, data)
    assert worker.reward_manager.batcher.batch_sizes == [len(ROWS)]  # one scoring batch for the chunk
    rewarder = build_rewarder("red", reward_model=paths[rm], keep_sum=True, device="cpu")
    valid = data.batch["response_mask"].sum(1).tolist()
    for i in range(len(ROWS)):
        row, prompt, text = expected_row(rewarder, tok, data, i)
        assert len(row) == valid[i]
        torch.testing.assert_close(rm_scores[i, : valid[i]], torch.tensor(row), atol=1e-6, rtol=0)
        assert torch.all(rm_scores[i, valid[i] :] == 0)
        own = hf_score(paths[rm], prompt, text)
        assert float(rm_scores[i].sum()) == pytest.approx(own, abs=1e-5)
        info = outputs[i]["reward_extra_info"]
        assert info["tokenreward_rewarder"] == "red"
        assert info["tokenreward_sequence_reward"] == pytest.approx(own, abs=1e-5)
    assert (rm_scores[:, :-1] != 0).sum() > len(ROWS)  # dense: not only one token per row


def naive_rtg(rewards, n):
    return [sum(rewards[t:n]) for t in range(n)]


def test_estimators_equal_naive_loops_and_verls_own_with_a_sparse_reward(models):
    tok, paths = models
    data = batch_of_rows(tok)
    dense, _, _ = worker_rm_scores(verl_config(paths, "same", "+reward.tokenreward.rewarder=red"), data)
    sparse, _, _ = worker_rm_scores(verl_config(paths, "same", "+reward.tokenreward.rewarder=sparse"), data)
    valid = data.batch["response_mask"].sum(1).tolist()
    uids = [u for *_, u in ROWS]
    # sparse: the score on the last valid token (the EOS when there is one), as verl's managers put it
    assert all(sparse[i, valid[i] - 1] != 0 and torch.all(sparse[i, : valid[i] - 1] == 0) for i in range(len(ROWS)))

    def advantages(rewards, estimator, **kwargs):
        batch = DataProto(
            batch=TensorDict(
                {"token_level_rewards": rewards.double(), "response_mask": data.batch["response_mask"]},
                batch_size=len(ROWS),
            ),
            non_tensor_batch={"uid": data.non_tensor_batch["uid"]},
        )
        config = AlgoConfig(norm_adv_by_std_in_grpo=kwargs.get("norm", True))
        out = compute_advantage(
            batch,
            adv_estimator=estimator,
            norm_adv_by_std_in_grpo=kwargs.get("norm", True),
            config=config,
            **{k: v for k, v in kwargs.items() if k != "norm"},
        )
        return out.batch["advantages"]

    for ours, theirs, norm in (
        ("tokenreward_rloo", "rloo", True),
        ("tokenreward_grpo", "grpo", True),
        ("tokenreward_grpo", "grpo", False),
    ):
        torch.testing.assert_close(
            advantages(sparse, ours, norm=norm), advantages(sparse, theirs, norm=norm), atol=1e-6, rtol=0
        )

    rows = [dense[i, : valid[i]].double().tolist() for i in range(len(ROWS))]
    returns = [sum(r) for r in rows]
    for estimator in ("tokenreward_rloo", "tokenreward_grpo"):
        got = advantages(dense, estimator)
        for i, row in enumerate(rows):
            group = [j for j in range(len(ROWS)) if uids[j] == uids[i]]
            if estimator == "tokenreward_rloo":
                others = [returns[j] for j in group if j != i]
                shift, scale = (sum(others) / len(others) if others else 0.0), 1.0
            else:
                values = [returns[j] for j in group]
                mean = sum(values) / len(values)
                std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 1.0
                shift, scale = (mean if len(values) > 1 else 0.0), std + 1e-6
            want = [(g - shift) / scale for g in naive_rtg(row, len(row))] + [0.0] * (dense.shape[1] - len(row))
            torch.testing.assert_close(got[i], torch.tensor(want, dtype=torch.float64), atol=1e-6, rtol=0)

    values = torch.randn(dense.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    batch = DataProto(
        batch=TensorDict(
            {"token_level_rewards": dense.double(), "values": values, "response_mask": data.batch["response_mask"]},
            batch_size=len(ROWS),
        ),
        non_tensor_batch={"uid": data.non_tensor_batch["uid"]},
    )
    returns = compute_advantage(batch, adv_estimator="gae", gamma=0.9, lam=0.8, config=AlgoConfig()).batch["returns"]
    for i, row in enumerate(rows):  # GAE by hand; verl then whitens the advantages, so compare A + V
        running, want = 0.0, []
        for t in reversed(range(len(row))):
            next_value = float(values[i, t + 1]) if t + 1 < len(row) else 0.0
            running = row[t] + 0.9 * next_value - float(values[i, t]) + 0.9 * 0.8 * running
            want.insert(0, running + float(values[i, t]))
        torch.testing.assert_close(returns[i, : len(row)], torch.tensor(want, dtype=torch.float64), atol=1e-6, rtol=0)
