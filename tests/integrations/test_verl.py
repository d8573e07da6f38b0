"""The verl integration on CPU with verl's own objects (no Ray, no GPU): verl's RewardLoopWorker
loads the `tokenreward` manager by name from a config composed from verl's own trainer config,
scores a DataProto of left-padded prompts and right-padded responses, and verl's
`compute_advantage` runs our estimators. Expected values come from tokenreward's rewarder
called directly, the reward model's own Hugging Face forward, verl's own rloo / grpo, and
naive per-row loops."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tomllib
import torch

verl = pytest.importorskip("verl", reason="verl is not installed (pip install 'tokenreward[verl]')")

from hydra import compose, initialize_config_dir
from tensordict import TensorDict
from verl import DataProto
from verl.experimental.reward_loop.reward_loop import RewardLoopWorker
from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls
from verl.trainer.config import AlgoConfig
from verl.trainer.ppo.ray_trainer import compute_advantage
from verl.trainer.ppo.reward import resolve_reward_manager_cls

import tokenreward.integrations.verl  # noqa: F401  (registers, as the plugin does)
from tokenreward.align import offsets_from_ids
from tokenreward.rewards import build_rewarder
from tokenreward.testing import tiny_causal_lm, tiny_reward_model, train_tokenizer

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
    tiny_causal_lm("llama", policy).save_pretrained(root / "policy")  # verl's validate_config reads its config
    other = train_tokenizer(corpus=[p + r for p in PROMPTS for r in RESPONSES], vocab_size=280)
    paths = {"policy": str(root / "policy")}
    for name, tok, seed in (("same", policy, 0), ("different", other, 1)):
        model = tiny_reward_model("llama", tok, seed=seed)
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
        paths[name] = str(root / name)
    return policy, paths


def batch_of_rows(tok, prompt_side: str = "left") -> DataProto:
    """Prompts padded on `prompt_side` (verl's v0 trainer pads them left, its v1 trainer right),
    right-padded responses of mixed lengths, uids in shuffled order."""
    prompts = [tok(PROMPTS[p])["input_ids"] for p, _, _, _ in ROWS]
    responses = [tok(RESPONSES[r])["input_ids"] + ([tok.eos_token_id] if eos else []) for _, r, eos, _ in ROWS]
    width_p, width_r = max(map(len, prompts)), max(map(len, responses)) + 2
    pad = tok.pad_token_id

    def padded(row, fill):
        gap = [fill] * (width_p - len(row))
        return gap + row if prompt_side == "left" else row + gap

    prompt_ids = torch.tensor([padded(p, pad) for p in prompts])
    response_ids = torch.tensor([r + [pad] * (width_r - len(r)) for r in responses])
    prompt_mask = torch.tensor([padded([1] * len(p), 0) for p in prompts])
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


def compose_verl(overrides: list[str]):
    """verl's own trainer config (`ppo_trainer.yaml`) with `overrides`, as main_ppo composes it."""
    with initialize_config_dir(config_dir=str(Path(verl.__file__).parent / "trainer" / "config"), version_base=None):
        return compose("ppo_trainer", overrides=overrides)


def verl_config(paths, rm: str, *extra: str):
    """verl's own trainer config with the overrides docs/verl.md gives for the colocated reward path."""
    overrides = [
        f"actor_rollout_ref.model.path={paths['policy']}",
        "reward.reward_manager.name=tokenreward",
        "reward.reward_model.enable=True",
        f"reward.reward_model.model_path={paths[rm]}",
        "reward.custom_reward_function.path=pkg://tokenreward.integrations.verl.manager",
        "reward.custom_reward_function.name=compute_score",
        *extra,
    ]
    return compose_verl(overrides)


def local(rewarder: str, *options: str) -> list[str]:
    """Overrides for an in-process rewarder on CPU (`reward_model` defaults to verl's model_path)."""
    return [f"+reward.tokenreward.rewarder={rewarder}", "+reward.tokenreward.device=cpu", *options]


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


@pytest.mark.parametrize(("rm", "prompt_side"), [("same", "left"), ("different", "right")])
def test_dense_rows_equal_the_rewarder_and_sum_to_the_reward_models_score(models, rm, prompt_side):
    tok, paths = models
    data = batch_of_rows(tok, prompt_side)
    config = verl_config(paths, rm, *local("red", "+reward.tokenreward.keep_sum=true"))
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
    returns = compute_advantage(batch, adv_estimator="gae", gamma=0.9, lam=0.8, config=AlgoConfig()).batch["returns"]
    for i, row in enumerate(rows):  # GAE by hand; verl then whitens the advantages, so compare A + V
        running, want = 0.0, []
        for t in reversed(range(len(row))):
            next_value = float(values[i, t + 1]) if t + 1 < len(row) else 0.0
            running = row[t] + 0.9 * next_value - float(values[i, t]) + 0.9 * 0.8 * running
            want.insert(0, running + float(values[i, t]))
        torch.testing.assert_close(returns[i, : len(row)], torch.tensor(want, dtype=torch.float64), atol=1e-6, rtol=0)


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


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (local("red", "+reward.tokenreward.kep_sum=true"), "reward.tokenreward.kep_sum: unknown key for rewarder 'red'"),
        (local("nosuch"), "reward.tokenreward.rewarder: unknown rewarder 'nosuch'"),
        (["+reward.tokenreward.keep_sum=true"], "reward.tokenreward.rewarder: required"),
        (["+reward.tokenreward.server_url=http://127.0.0.1:1", "+reward.tokenreward.beta_c=0.5"],
         "reward.tokenreward.beta_c: unknown key with reward.tokenreward.server_url"),
        ([*local("red"), "reward.reward_model.enable=False"], "streaming reward path keeps one float per sample"),
        ([*local("red"), "reward.custom_reward_function.path=null"], "reward.custom_reward_function.path is unset"),
    ],
)  # fmt: skip
def test_a_config_that_cannot_work_is_refused_with_the_key_named(models, overrides, message):
    _, paths = models
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("(", r"\(")):
        RewardLoopWorker(verl_config(paths, "same", *overrides))


def test_a_dense_rewarder_with_a_sequence_summing_estimator_warns(models, caplog):
    _, paths = models
    with caplog.at_level(logging.WARNING, logger="tokenreward"):
        RewardLoopWorker(verl_config(paths, "same", *local("red"), "algorithm.adv_estimator=grpo"))
        RewardLoopWorker(verl_config(paths, "same", *local("sparse"), "algorithm.adv_estimator=grpo"))
        RewardLoopWorker(verl_config(paths, "same", *local("red"), "algorithm.adv_estimator=tokenreward_rloo"))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "algorithm.adv_estimator=grpo sums token_level_rewards" in warnings[0]
    assert all(name in warnings[0] for name in ("tokenreward_rloo", "tokenreward_grpo", "gae"))


def test_the_entry_point_registers_everything_on_import_verl(tmp_path):
    """An installed distribution carrying pyproject's `verl.plugins` entry points: a fresh `import verl`
    (and nothing else) registers the manager and both estimators."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    plugins = pyproject["project"]["entry-points"]["verl.plugins"]
    dist = tmp_path / "tokenreward_probe-0.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tokenreward-probe\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text("[verl.plugins]\n" + "".join(f"{k} = {v}\n" for k, v in plugins.items()))
    probe = (
        "import verl\n"
        "from verl.experimental.reward_loop.reward_manager.registry import REWARD_MANAGER\n"
        "from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY\n"
        "print('tokenreward' in REWARD_MANAGER, 'tokenreward_rloo' in ADV_ESTIMATOR_REGISTRY,"
        " 'tokenreward_grpo' in ADV_ESTIMATOR_REGISTRY)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT / "src")]), "OMP_NUM_THREADS": "1"}
    env.pop("VERL_USE_EXTERNAL_PLUGINS", None)
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "True True True"


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


@pytest.mark.parametrize(("block", "estimator"), [(0, "gae"), (1, "tokenreward_rloo")])
def test_the_documented_commands_compose_validate_and_build_the_manager(models, tmp_path, block, estimator):
    """docs/verl.md's two main_ppo command lines, with its $POLICY / $RM / $DATA filled in, are a valid
    verl config (verl's own validate_config) from which a reward worker builds our manager."""
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    from tokenreward.integrations.verl import TokenRewardManager

    _, paths = models
    text = (ROOT / "docs" / "verl.md").read_text()
    commands = re.findall(r"```bash\n(python -m verl\.trainer\.main_ppo .*?)```", text, re.DOTALL)
    assert len(commands) == 2
    command = commands[block].replace("$POLICY", paths["policy"]).replace("$RM", paths["same"])
    words = shlex.split(command.replace("$DATA", str(tmp_path)).replace("\\\n", " "))
    assert words[:3] == ["python", "-m", "verl.trainer.main_ppo"]
    config = compose_verl(words[3:])
    validate_config(config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    assert config.algorithm.adv_estimator == estimator and need_critic(config) == (estimator == "gae")
    worker = RewardLoopWorker(config)
    assert isinstance(worker.reward_manager, TokenRewardManager)
    assert worker.reward_manager.settings.rewarder == "red"
    assert worker.reward_manager.settings.resources == {
        "keep_sum": True,
        "reward_model": paths["same"],
        **({"beta_c": 1.0} if block == 0 else {}),
    }


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
