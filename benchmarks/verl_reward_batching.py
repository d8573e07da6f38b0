"""How much the `tokenreward` verl manager gains by batching verl's per-sample `run_single` calls.

Builds a tiny random Llama reward model (RED, `keep_sum`) and `--samples` responses, then times,
side by side in one process on CPU, (1) verl's own `RewardLoopWorker.compute_score_batch` on a
DataProto of them, which starts one `run_single` task per sample and so reaches the manager's
micro-batcher, and (2) the same manager's scoring called once per sample (what a manager
without batching does). Needs the `verl` extra.

    python benchmarks/verl_reward_batching.py --samples 64 --repeats 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def build(root: Path, samples: int):
    from tensordict import TensorDict
    from verl import DataProto

    from tokenreward.testing import DEFAULT_CORPUS, tiny_causal_lm, tiny_reward_model, train_tokenizer

    tok = train_tokenizer()
    tok.save_pretrained(root / "policy")
    tiny_causal_lm("llama", tok).save_pretrained(root / "policy")
    tiny_reward_model("llama", tok).save_pretrained(root / "rm")
    tok.save_pretrained(root / "rm")
    texts = [DEFAULT_CORPUS[i % len(DEFAULT_CORPUS)] for i in range(samples)]
    prompts = [tok("Answer: ")["input_ids"] for _ in texts]
    responses = [tok(" " + t)["input_ids"] + [tok.eos_token_id] for t in texts]
    width_r = max(map(len, responses))
    response_ids = torch.tensor([r + [tok.pad_token_id] * (width_r - len(r)) for r in responses])
    prompt_ids = torch.tensor(prompts)
    mask = torch.cat([torch.ones_like(prompt_ids), (response_ids != tok.pad_token_id).long()], 1)
    batch = TensorDict({"prompts": prompt_ids, "responses": response_ids, "attention_mask": mask}, batch_size=samples)
    return DataProto(batch=batch, non_tensor_batch={"uid": np.array([str(i) for i in range(samples)], dtype=object)})


def config(root: Path):
    import verl
    from hydra import compose, initialize_config_dir

    overrides = [
        f"actor_rollout_ref.model.path={root / 'policy'}",
        "reward.reward_manager.name=tokenreward",
        "reward.reward_model.enable=True",
        f"reward.reward_model.model_path={root / 'rm'}",
        "reward.custom_reward_function.path=pkg://tokenreward.integrations.verl.manager",
        "reward.custom_reward_function.name=compute_score",
        "+reward.tokenreward.rewarder=red",
        "+reward.tokenreward.keep_sum=true",
        "+reward.tokenreward.device=cpu",
        "+reward.tokenreward.batch_size=16",
    ]
    with initialize_config_dir(config_dir=str(Path(verl.__file__).parent / "trainer" / "config"), version_base=None):
        return compose("ppo_trainer", overrides=overrides)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    opts = parser.parse_args(argv)
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

    import tokenreward.integrations.verl  # noqa: F401  (registers the manager)
    from tokenreward.integrations.verl.manager import sample_from, score_samples

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = build(root, opts.samples)
        worker = RewardLoopWorker(config(root))
        manager = worker.reward_manager
        batched, single = [], []
        for _ in range(opts.repeats):
            start = time.perf_counter()
            outputs = asyncio.run(worker.compute_score_batch(data))
            batched.append(time.perf_counter() - start)
            start = time.perf_counter()
            one_by_one = [score_samples(manager.rewarder, manager.tokenizer, [sample_from(data[i : i + 1])])[0]
                          for i in range(len(data))]  # fmt: skip
            single.append(time.perf_counter() - start)
        same = all(np.allclose(o["reward_score"], s.rewards, atol=1e-5) for o, s in zip(outputs, one_by_one))
    result = {
        "samples": opts.samples,
        "batched_s": round(statistics.median(batched), 3),
        "one_per_sample_s": round(statistics.median(single), 3),
        "speedup": round(statistics.median(single) / statistics.median(batched), 2),
        "scoring_batches_per_call": manager.batcher.batch_sizes[: opts.repeats],
        "same_rewards": same,
    }
    print(json.dumps(result))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
