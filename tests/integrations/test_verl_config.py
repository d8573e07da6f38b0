"""The verl integration's setup on CPU: configs that cannot work are refused naming the key, a dense
rewarder with a summing estimator warns, the `verl.plugins` entry point registers everything on a
plain `import verl`, and docs/verl.md's command lines are valid verl configs that build the manager."""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import subprocess
import sys

import pytest
import tomllib

verl = pytest.importorskip("verl", reason="verl is not installed (pip install 'tokenreward[verl]')")

from verl.experimental.reward_loop.reward_loop import RewardLoopWorker
from verl_cases import ROOT, compose_verl, local, models, verl_config

__all__ = ["models"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (local("red", "+reward.tokenreward.kep_sum=true"), "reward.tokenreward.kep_sum: unknown key for rewarder 'red'"),
        (local("nosuch"), "reward.tokenreward.rewarder: unknown rewarder 'nosuch'"),
        (["+reward.tokenreward.keep_sum=true"], "reward.tokenreward.rewarder: required"),
        (["+reward.tokenreward.server_url=http://127.0.0.1:1", "+reward.tokenreward.beta_c=0.5"],
         "reward.tokenreward.beta_c: unknown key with reward.tokenreward.server_url"),
        (local("red", "+reward.tokenreward.loading.dtyp=float32"), "reward.tokenreward.loading.dtyp: unknown key"),
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


@pytest.mark.parametrize(("block", "estimator"), [(0, "gae"), (1, "tokenreward_rloo")])
def test_the_documented_commands_compose_validate_and_build_the_manager(models, tmp_path, block, estimator):
    """docs/verl.md's two main_ppo command lines, with its $POLICY / $RM / $DATA filled in, are a valid
    verl config (verl's own validate_config) from which a reward worker builds our manager."""
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass, validate_config
    from verl.workers.config import HFModelConfig

    from tokenreward.integrations.verl import TokenRewardManager

    _, paths = models
    text = (ROOT / "docs" / "verl.md").read_text()
    commands = re.findall(r"```bash(?: illustrative)?\n(python -m verl\.trainer\.main_ppo .*?)```", text, re.DOTALL)
    assert len(commands) == 2
    command = commands[block].replace("$POLICY", paths["policy"]).replace("$RM", paths["same"])
    words = shlex.split(command.replace("$DATA", str(tmp_path)).replace("\\\n", " "))
    assert words[:3] == ["python", "-m", "verl.trainer.main_ppo"]
    config = compose_verl(words[3:])
    validate_config(config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    assert config.algorithm.adv_estimator == estimator and need_critic(config) == (estimator == "gae")
    # the actor and reference load with SDPA, not verl's default flash_attention_2 (docs: "Without flash-attn")
    actor_model = omega_conf_to_dataclass(config.actor_rollout_ref.model, HFModelConfig)
    assert actor_model.hf_config._attn_implementation == "sdpa"
    worker = RewardLoopWorker(config)
    assert isinstance(worker.reward_manager, TokenRewardManager)
    assert worker.reward_manager.settings.rewarder == "red"
    assert worker.reward_manager.settings.resources == {
        "keep_sum": True,
        "reward_model": paths["same"],
        **({"beta_c": 1.0} if block == 0 else {}),
    }


def test_the_gpu_benchmark_configs_compose_validate_and_build_the_manager(tmp_path, capsys):
    """benchmarks/gpu/verl_ppo.py's command lines (run only on a GPU machine) stay valid verl configs."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("verl_ppo_bench", ROOT / "benchmarks" / "gpu" / "verl_ppo.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--dry-run", "--out", str(tmp_path), "--variants", "dense-gae", "dense-rloo"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["variant"] for r in results] == ["dense-gae", "dense-rloo"]
    assert all(r["config"] == "composes, validates, builds the manager" for r in results)


def test_the_gpu_benchmark_refuses_critic_variants_without_flash_attn(tmp_path, monkeypatch, capsys):
    """verl 0.9.1 loads the critic with flash_attention_2 whatever the config says: the GAE variants stop
    before anything is built, with one line naming them, when flash_attn does not import."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("verl_ppo_bench", ROOT / "benchmarks" / "gpu" / "verl_ppo.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "flash_attn" else find_spec(name, *a)
    )
    out = tmp_path / "bench"
    assert bench.main(["--out", str(out), "--variants", "dense-rloo", "sparse-gae"]) == 2
    message = capsys.readouterr().err.strip()
    assert message.splitlines() == [message]
    assert message.startswith("verl_ppo: --variants sparse-gae: verl 0.9.1 loads the critic with flash_attention_2")
    assert not out.exists()
