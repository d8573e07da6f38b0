"""The verl integration on CPU with verl's own objects (no Ray, no GPU): verl's RewardLoopWorker
loads the `tokenreward` manager by name from a config composed from verl's own trainer config,
scores a DataProto of padded prompts and right-padded responses of mixed lengths, and verl's
`compute_advantage` runs our estimators. Expected values come from tokenreward's rewarder
called directly, the reward model's own Hugging Face forward, verl's own rloo / grpo, naive
per-row loops, and a tokenreward server stand-in (FastAPI + uvicorn on loopback)."""

from __future__ import annotations

import asyncio
import socket
import statistics
import threading
import time

import numpy as np
import pytest
import torch

verl = pytest.importorskip("verl", reason="verl is not installed (pip install 'tokenreward[verl]')")

from tensordict import TensorDict
from verl import DataProto
from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls
from verl.trainer.config import AlgoConfig
from verl.trainer.ppo.ray_trainer import compute_advantage
from verl_cases import ROWS, batch_of_rows, expected_row, hf_score, local, models, verl_config, worker_rm_scores

from tokenreward.rewards import build_rewarder

__all__ = ["models"]  # the module-scoped fixture, shared with test_verl_config.py


@pytest.mark.parametrize(("rm", "prompt_side"), [("same", "left"), ("different", "right")])
def test_dense_rows_equal_the_rewarder_and_sum_to_the_reward_models_score(models, rm, prompt_side):
    tok, paths = models
    data = batch_of_rows(tok, prompt_side)
    config = verl_config(
        paths, rm, *local("red", "+reward.tokenreward.keep_sum=true", "+reward.tokenreward.loading.dtype=float32")
    )
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
    dense, _, _ = worker_rm_scores(verl_config(paths, "same", *local("red")), data)
    sparse, _, _ = worker_rm_scores(verl_config(paths, "same", *local("sparse")), data)
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
    out = compute_advantage(batch, adv_estimator="gae", gamma=0.9, lam=0.8, config=AlgoConfig()).batch
    naive_advantages = []
    for i, row in enumerate(rows):  # GAE by hand: returns A + V, advantages whitened over all valid tokens
        running, want = 0.0, []
        for t in reversed(range(len(row))):
            next_value = float(values[i, t + 1]) if t + 1 < len(row) else 0.0
            running = row[t] + 0.9 * next_value - float(values[i, t]) + 0.9 * 0.8 * running
            want.insert(0, running)
        naive_advantages.append(want)
        returns = torch.tensor(want, dtype=torch.float64) + values[i, : len(row)]
        torch.testing.assert_close(out["returns"][i, : len(row)], returns, atol=1e-6, rtol=0)
    flat = [a for row in naive_advantages for a in row]
    mean, var = statistics.fmean(flat), statistics.variance(flat)
    for i, row in enumerate(naive_advantages):
        whitened = torch.tensor([(a - mean) / (var + 1e-8) ** 0.5 for a in row], dtype=torch.float64)
        torch.testing.assert_close(out["advantages"][i, : len(row)], whitened, atol=1e-6, rtol=0)


def test_a_scalar_score_still_lands_on_the_last_valid_token(models):
    tok, _ = models
    data = batch_of_rows(tok)
    valid = data.batch["response_mask"].sum(1).tolist()
    scores = [float(i + 1) if i % 2 else [0.5] * valid[i] for i in range(len(ROWS))]
    rm_scores = get_reward_manager_cls("tokenreward").assemble_rm_scores(data, scores)
    for i, score in enumerate(scores):
        want = torch.zeros(rm_scores.shape[1])
        if isinstance(score, list):
            want[: valid[i]] = 0.5
        else:
            want[valid[i] - 1] = score
        assert torch.equal(rm_scores[i], want)


class PostingClient:
    """The documented client interface, for when `tokenreward.client` is not in this build."""

    def __init__(self, url: str):
        self.url = url

    def token_rewards(self, prompts, responses):
        import httpx

        answer = httpx.post(
            f"{self.url}/v1/token_rewards", json={"prompts": prompts, "responses": responses}, timeout=60
        )
        answer.raise_for_status()
        return answer.json()["results"]


@pytest.fixture
def fake_server(models, monkeypatch):
    """A FastAPI app answering `/v1/token_rewards` with the records of an in-process RED rewarder whose
    tokenizer differs from the policy's, served by uvicorn on a free loopback port."""
    import importlib.util

    import uvicorn
    from fastapi import FastAPI

    from tokenreward.integrations.verl import server

    _, paths = models
    rewarder = build_rewarder("red", reward_model=paths["different"], keep_sum=True, device="cpu")
    app = FastAPI()

    @app.post("/v1/token_rewards")
    def token_rewards(body: dict):
        return {"results": rewarder.score(body["prompts"], body["responses"]).records()}

    if importlib.util.find_spec("tokenreward.client") is None:
        monkeypatch.setattr(server, "default_client", PostingClient)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    uv = uvicorn.Server(uvicorn.Config(app, log_level="error"))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", rewarder
    uv.should_exit = True
    thread.join(timeout=10)
    sock.close()


def test_scoring_through_a_tokenreward_server_gives_the_in_process_rows(models, fake_server):
    tok, paths = models
    url, rewarder = fake_server
    data = batch_of_rows(tok)
    config = verl_config(paths, "different", f"+reward.tokenreward.server_url={url}")
    rm_scores, outputs, _ = worker_rm_scores(config, data)
    valid = data.batch["response_mask"].sum(1).tolist()
    for i in range(len(ROWS)):
        row, _, _ = expected_row(rewarder, tok, data, i)
        torch.testing.assert_close(rm_scores[i, : valid[i]], torch.tensor(row), atol=1e-6, rtol=0)
        assert torch.all(rm_scores[i, valid[i] :] == 0)
        assert outputs[i]["reward_extra_info"]["tokenreward_rewarder"] == "red"


def test_the_batcher_scores_concurrent_calls_together_and_fails_them_together():
    from tokenreward.integrations.verl.batching import MicroBatcher

    seen = []
    batcher = MicroBatcher(lambda items: seen.append(list(items)) or [item * 10 for item in items])

    async def gather(values):
        return await asyncio.gather(*(batcher.submit(v) for v in values))

    assert asyncio.run(gather([1, 2, 3])) == [10, 20, 30]
    assert asyncio.run(gather([4])) == [40]  # a later call on a fresh event loop
    assert seen == [[1, 2, 3], [4]] and batcher.batch_sizes == [3, 1]

    def broken(items):
        raise ValueError(f"cannot score {len(items)}")

    failing = MicroBatcher(broken)

    async def gather_failing():
        return await asyncio.gather(*(failing.submit(v) for v in range(3)), return_exceptions=True)

    errors = asyncio.run(gather_failing())
    assert [str(e) for e in errors] == ["cannot score 3"] * 3


@pytest.mark.parametrize(
    ("verl_name", "name", "key"),
    [
        ("tokenreward_gtpo", "gtpo", "entropys"),
        ("tokenreward_grpo_s", "grpo_s", "entropys"),
        ("tokenreward_ktae", "ktae", "responses"),
    ],
)
def test_verifiable_reward_estimators_are_registered_and_need_their_extra_input(verl_name, name, key):
    """verl's registry returns our functions; given the entropies / token ids they equal the registered
    estimators; verl's compute_advantage, which does not pass them, stops with an error naming them."""
    from verl.trainer.ppo.core_algos import get_adv_estimator_fn

    from tokenreward.losses.advantages import AdvantageBatch, estimate_advantages

    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([3, 5, 2, 4, 5, 1])
    mask = torch.arange(5)[None, :] < lengths[:, None]
    rewards = torch.zeros(6, 5, dtype=torch.float64)
    rewards[torch.arange(6), lengths - 1] = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    uid = np.array(["a", "b", "a", "b", "a", "b"], dtype=object)
    extra = torch.rand(6, 5, generator=g, dtype=torch.float64) if key == "entropys" else torch.randint(0, 5, (6, 5))
    got, returns = get_adv_estimator_fn(verl_name)(
        rewards, mask.long(), index=uid, config=AlgoConfig(), **{key: extra}
    )
    field = "entropy" if key == "entropys" else "token_ids"
    want, _ = estimate_advantages(
        name, AdvantageBatch(rewards, mask, group=torch.tensor([0, 1, 0, 1, 0, 1]), **{field: extra})
    )
    torch.testing.assert_close(got, want)
    assert returns is got
    data = DataProto(
        batch=TensorDict({"token_level_rewards": rewards, "response_mask": mask.long(), key: extra}, batch_size=6),
        non_tensor_batch={"uid": uid},
    )
    with pytest.raises(ValueError, match=rf"{verl_name} needs data.batch\['{key}'\]"):
        compute_advantage(data, adv_estimator=verl_name, config=AlgoConfig())
