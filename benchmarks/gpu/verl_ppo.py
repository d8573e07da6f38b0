"""verl PPO on tiny locally built models: dense RED against sparse, through the `tokenreward` manager.

For a machine with one CUDA GPU and verl's vLLM rollout installed (not needed by CI). Builds a
tiny Llama policy (also the critic's start) and a tiny Llama reward model with one tokenizer
trained on the spot, writes a prompt dataset as parquet, then runs
`python -m verl.trainer.main_ppo` for each variant for a few steps:

- `dense-rloo`: critic-free `tokenreward_rloo`, 4 samples per prompt, rewarder `red` with `keep_sum`;
- `sparse-rloo`: the same with rewarder `sparse` (the reward model's score on the last token);
- `dense-gae`, `sparse-gae`: PPO with a critic (GAE), with `--variants` (they need flash-attn, below).

The actor and reference use PyTorch's SDPA attention
(`+actor_rollout_ref.model.override_config.attn_implementation=sdpa`; verl 0.9.1 defaults them to
`flash_attention_2`), so the critic-free variants run without flash-attn. verl 0.9.1 loads the critic with
`attn_implementation="flash_attention_2"` written into `verl.utils.model.load_valuehead_model`, whatever
`critic.model.override_config` says, so the GAE variants are refused when `flash_attn` does not import.

A probe module (`verl_probe.py`, imported by verl in every process through
`VERL_USE_EXTERNAL_MODULES`) records the first rows of `token_level_rewards` each time
advantages are computed, so the output shows the per-token rewards that reached the trainer
(how many non-zero tokens per response, and their sum) beside the mean step time
(`timing_s/step`, first step left out). Each run's full log is kept under `--out`.

    bash benchmarks/gpu/verl_ppo.sh                      # dense-rloo and sparse-rloo, 4 steps
    python benchmarks/gpu/verl_ppo.py --dry-run          # compose and check the configs (CPU)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CHAT_TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)
PROMPTS = [
    "What is 17 + 25?",
    "Name the capital of France.",
    "List the first five primes.",
    "Say something kind.",
    "Describe a samosa.",
    "Greet the world.",
    "What is the capital of Peru?",
    "Add 2 and 3.",
]
VARIANTS = {
    "dense-rloo": {"rewarder": "red", "estimator": "tokenreward_rloo", "n": 4},
    "sparse-rloo": {"rewarder": "sparse", "estimator": "tokenreward_rloo", "n": 4},
    "dense-gae": {"rewarder": "red", "estimator": "gae", "n": 1},
    "sparse-gae": {"rewarder": "sparse", "estimator": "gae", "n": 1},
}
STEP_TIME = re.compile(r"timing_s/step:([0-9.eE+-]+)")


def build_models(out: Path) -> dict[str, str]:
    """A tokenizer with a chat template, a tiny Llama policy and reward model (head size 64, which
    vLLM's attention kernels take), saved under `out`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from tokenreward.testing import DEFAULT_CORPUS, tiny_config, train_tokenizer

    tokenizer = train_tokenizer(DEFAULT_CORPUS + PROMPTS, vocab_size=400, chat_template=CHAT_TEMPLATE)
    size = {"hidden_size": 128, "intermediate_size": 256, "num_attention_heads": 2, "num_key_value_heads": 2}
    paths = {}
    for name, loader, extra in (
        ("policy", AutoModelForCausalLM, {}),
        ("reward_model", AutoModelForSequenceClassification, {"num_labels": 1}),
    ):
        torch.manual_seed(0)
        config = tiny_config("llama", len(tokenizer), tokenizer.pad_token_id, **size, **extra)
        config.eos_token_id = tokenizer.eos_token_id
        model = loader.from_config(config)
        model.save_pretrained(out / name)
        tokenizer.save_pretrained(out / name)
        paths[name] = str(out / name)
    return paths


def write_data(out: Path) -> dict[str, str]:
    """verl's RL dataset format: `prompt` (chat messages), `data_source`, `reward_model`."""
    import pandas as pd

    rows = [
        {"data_source": "tokenreward_bench", "prompt": [{"role": "user", "content": p}],
         "reward_model": {"style": "model", "ground_truth": ""}, "extra_info": {"index": i}}
        for i, p in enumerate(PROMPTS * 8)
    ]  # fmt: skip
    paths = {}
    for split, part in (("train", rows), ("val", rows[:8])):
        paths[split] = str(out / f"{split}.parquet")
        pd.DataFrame(part).to_parquet(paths[split])
    return paths


def overrides(variant: str, models: dict[str, str], data: dict[str, str], steps: int, out: Path) -> list[str]:
    """The main_ppo command line of one variant (the docs/verl.md recipe, sized for one GPU)."""
    spec = VARIANTS[variant]
    critic = spec["estimator"] == "gae"
    args = [
        f"algorithm.adv_estimator={spec['estimator']}",
        "algorithm.use_kl_in_reward=False",
        f"data.train_files={data['train']}",
        f"data.val_files={data['val']}",
        "data.train_batch_size=16",
        "data.max_prompt_length=64",
        "data.max_response_length=32",
        "data.return_raw_chat=True",
        f"actor_rollout_ref.model.path={models['policy']}",
        "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",
        "actor_rollout_ref.actor.optim.lr=1e-5",
        "actor_rollout_ref.actor.ppo_mini_batch_size=16",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=16",
        "actor_rollout_ref.actor.use_kl_loss=False",
        "actor_rollout_ref.rollout.name=vllm",
        "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
        "actor_rollout_ref.rollout.gpu_memory_utilization=0.2",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=16",
        f"actor_rollout_ref.rollout.n={spec['n']}",
        "actor_rollout_ref.rollout.agent.num_workers=1",
        "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=16",
        "reward.num_workers=1",
        "reward.reward_manager.name=tokenreward",
        "reward.reward_model.enable=True",
        "reward.reward_model.enable_resource_pool=False",
        f"reward.reward_model.model_path={models['reward_model']}",
        "reward.reward_model.rollout.name=vllm",
        "reward.reward_model.rollout.tensor_model_parallel_size=1",
        "reward.reward_model.rollout.gpu_memory_utilization=0.1",
        "reward.reward_model.rollout.prompt_length=64",
        "reward.reward_model.rollout.response_length=32",
        "reward.custom_reward_function.path=pkg://tokenreward.integrations.verl.manager",
        "reward.custom_reward_function.name=compute_score",
        f"+reward.tokenreward.rewarder={spec['rewarder']}",
        "+reward.tokenreward.device=cpu",
        "trainer.logger=['console']",
        "trainer.project_name=tokenreward_bench",
        f"trainer.experiment_name={variant}",
        f"trainer.default_local_dir={out / 'checkpoints' / variant}",
        "trainer.val_before_train=False",
        "trainer.test_freq=-1",
        "trainer.save_freq=-1",
        "trainer.n_gpus_per_node=1",
        "trainer.nnodes=1",
        "trainer.total_epochs=1",
        f"trainer.total_training_steps={steps}",
        "ray_kwargs.ray_init.num_cpus=8",
    ]
    if spec["rewarder"] == "red":
        args.append("+reward.tokenreward.keep_sum=true")
    if critic:
        args += [
            f"critic.model.path={models['policy']}",
            "critic.optim.lr=1e-5",
            "critic.ppo_micro_batch_size_per_gpu=16",
            "trainer.critic_warmup=0",
        ]
    return args


def compose(args: list[str]):
    """verl's own trainer config with `args` applied, checked as main_ppo checks it."""
    import verl
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    with initialize_config_dir(config_dir=str(Path(verl.__file__).parent / "trainer" / "config"), version_base=None):
        config = hydra_compose("ppo_trainer", overrides=args)
    validate_config(config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    return config


def probe_summary(path: Path) -> dict:
    """What the probe saw: non-zero reward tokens per recorded response, and their sums."""
    if not path.exists():
        return {"probe": "no records (the probe did not run in the trainer process)"}
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [row for record in records for row in record["rows"]]
    return {
        "records": len(records),
        "nonzero_tokens_per_response": statistics.fmean(sum(1 for v in row if v != 0.0) for row in rows),
        "tokens_per_response": statistics.fmean(len(row) for row in rows),
        "first_response_rewards": [round(v, 4) for v in rows[0]] if rows else [],
        "first_response_sum": round(sum(rows[0]), 6) if rows else None,
    }


def run_variant(variant: str, args: list[str], out: Path, timeout: float) -> dict:
    log, probe = out / f"{variant}.log", out / f"{variant}.probe.jsonl"
    probe.unlink(missing_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
        "VERL_USE_EXTERNAL_MODULES": "verl_probe",
        "TOKENREWARD_PROBE_FILE": str(probe),
    }
    start = time.perf_counter()
    with log.open("w") as handle:
        done = subprocess.run(
            [sys.executable, "-m", "verl.trainer.main_ppo", *args], env=env, stdout=handle, stderr=subprocess.STDOUT,
            timeout=timeout, check=False,
        )  # fmt: skip
    text = log.read_text(errors="replace")
    steps = [float(v) for v in STEP_TIME.findall(text)]
    return {
        "variant": variant,
        "returncode": done.returncode,
        "wall_s": round(time.perf_counter() - start, 1),
        "step_s": steps,
        "mean_step_s_after_first": round(statistics.fmean(steps[1:]), 3) if len(steps) > 1 else None,
        **probe_summary(probe),
        "log": str(log),
        **({"log_tail": text[-3000:]} if done.returncode else {}),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("verl_bench"))
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--variants", nargs="+", default=["dense-rloo", "sparse-rloo"], choices=sorted(VARIANTS))
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per variant")
    parser.add_argument("--dry-run", action="store_true", help="compose and check the configs only (no GPU)")
    opts = parser.parse_args(argv)
    critics = [v for v in opts.variants if VARIANTS[v]["estimator"] == "gae"]
    if critics and not opts.dry_run and importlib.util.find_spec("flash_attn") is None:
        reason = "verl 0.9.1 loads the critic with flash_attention_2 and flash_attn does not import"
        print(f"verl_ppo: --variants {' '.join(critics)}: {reason}; use dense-rloo / sparse-rloo", file=sys.stderr)
        return 2
    opts.out.mkdir(parents=True, exist_ok=True)
    out = opts.out.resolve()
    models, data = build_models(out / "models"), write_data(out)
    results = []
    for variant in opts.variants:
        args = overrides(variant, models, data, opts.steps, out)
        config = compose(args)
        if opts.dry_run:
            from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

            RewardLoopWorker(config)  # builds the tokenreward manager from this config, as each reward worker will
            results.append(
                {"variant": variant, "config": "composes, validates, builds the manager", "overrides": len(args)}
            )
            continue
        results.append(run_variant(variant, args, out, opts.timeout))
        print(json.dumps(results[-1]), flush=True)
    if opts.dry_run:
        print(json.dumps(results, indent=1))
    (out / "results.json").write_text(json.dumps(results, indent=1))
    return 0 if all(r.get("returncode", 0) == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
