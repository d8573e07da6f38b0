"""Time per optimizer step of the TRL integration against TRL's own trainers, side by side.

GRPO: `TokenRewardGRPOTrainer` with the `sparse` and `red` rewarders against `GRPOTrainer` whose
reward function is the same reward model's score. DPO family: `TRegDPOTrainer`, `TDPOTrainer`,
`TGDPOTrainer`, `SePOTrainer` against `DPOTrainer` (one-time token-reward preparation excluded).
Random llama-style models built on the spot (`--hidden`, `--layers`); each trainer runs
`--steps` steps after one warm-up step, in alternating order over `--repeats` rounds, and the
median seconds per step are printed with the ratio to TRL's trainer.

    OMP_NUM_THREADS=1 python benchmarks/trl_overhead.py --steps 5 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from datasets import Dataset
from tokenizers import processors
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, TrainerCallback
from trl import DPOConfig, DPOTrainer, GRPOConfig, GRPOTrainer

from tokenreward.integrations.trl import (
    SePOConfig,
    SePOTrainer,
    TDPOConfig,
    TDPOTrainer,
    TGDPOConfig,
    TGDPOTrainer,
    TokenRewardGRPOTrainer,
    TRegDPOConfig,
    TRegDPOTrainer,
)
from tokenreward.rewards import build_rewarder
from tokenreward.testing import DEFAULT_CORPUS, tiny_config, train_tokenizer


class StepTimer(TrainerCallback):
    """Wall time of every optimizer step."""

    def __init__(self):
        self.times: list[float] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self.start)


def timed(make) -> float:
    """Median seconds per step after the first (warm-up) of a freshly built trainer."""
    timer = StepTimer()
    trainer = make()
    trainer.add_callback(timer)
    trainer.train()
    return statistics.median(timer.times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--completion-length", type=int, default=16)
    options = parser.parse_args()
    root = Path(tempfile.mkdtemp())
    tok = train_tokenizer()
    tok._tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", tok.bos_token_id)]
    )
    size = {
        "hidden_size": options.hidden,
        "intermediate_size": 2 * options.hidden,
        "num_hidden_layers": options.layers,
        "max_position_embeddings": 512,
    }

    def save(name: str, seed: int, head=AutoModelForCausalLM, **extra) -> str:
        torch.manual_seed(seed)
        head.from_config(tiny_config("llama", len(tok), tok.pad_token_id, **size, **extra)).save_pretrained(
            root / name
        )
        tok.save_pretrained(root / name)
        return str(root / name)

    policy, guide = save("policy", 0), save("guide", 1)
    reward_model = save("rm", 2, AutoModelForSequenceClassification, num_labels=1)
    sparse = build_rewarder("sparse", reward_model=reward_model, device="cpu")

    def score(prompts, completions, **kwargs):
        """The reward model's score (0 for an empty completion, which the rewarder refuses)."""
        kept = [i for i, c in enumerate(completions) if c.strip()]
        values = (
            sparse.score([prompts[i] for i in kept], [completions[i] for i in kept]).sequence_rewards.tolist()
            if kept
            else []
        )
        scores = [0.0] * len(completions)
        for i, value in zip(kept, values):
            scores[i] = value
        return scores

    prompts = Dataset.from_list([{"prompt": text.split(" ")[0] + " " + text.split(" ")[1]} for text in DEFAULT_CORPUS])
    grpo = {"per_device_train_batch_size": 8, "num_generations": 4, "max_completion_length": options.completion_length, "report_to": [],
                "beta": 0.04, "use_cpu": True, "bf16": False, "save_strategy": "no", "max_steps": options.steps + 1, "disable_tqdm": True}  # fmt: skip
    pairs = Dataset.from_list([{"prompt": text[: len(text) // 2], "chosen": text[len(text) // 2 :], "rejected": other[len(other) // 2 :]}
                               for text, other in zip(DEFAULT_CORPUS, DEFAULT_CORPUS[1:] + DEFAULT_CORPUS[:1])])  # fmt: skip
    dpo = {"per_device_train_batch_size": len(pairs), "report_to": [], "max_length": None, "use_cpu": True, "bf16": False, "save_strategy": "no",
               "max_steps": options.steps + 1, "disable_tqdm": True}  # fmt: skip
    groups = {
        "GRPO": {
            "GRPOTrainer": lambda: GRPOTrainer(policy, reward_funcs=score, args=GRPOConfig(output_dir=str(root / "g"), **grpo), train_dataset=prompts, processing_class=tok),
            "TokenRewardGRPOTrainer sparse": lambda: TokenRewardGRPOTrainer(policy, sparse, args=GRPOConfig(output_dir=str(root / "s"), **grpo), train_dataset=prompts, processing_class=tok),
            "TokenRewardGRPOTrainer red": lambda: TokenRewardGRPOTrainer(policy, "red", rewarder_resources={"reward_model": reward_model, "device": "cpu"},
                                                                       args=GRPOConfig(output_dir=str(root / "r"), **grpo), train_dataset=prompts, processing_class=tok),
        },
        "DPO": {
            "DPOTrainer": lambda: DPOTrainer(policy, args=DPOConfig(output_dir=str(root / "d"), **dpo), train_dataset=pairs, processing_class=tok),
            "TRegDPOTrainer": lambda: TRegDPOTrainer(policy, args=TRegDPOConfig(output_dir=str(root / "t"), **dpo), train_dataset=pairs, processing_class=tok),
            "TDPOTrainer": lambda: TDPOTrainer(policy, args=TDPOConfig(output_dir=str(root / "k"), **dpo), train_dataset=pairs, processing_class=tok),
            "TGDPOTrainer": lambda: TGDPOTrainer(policy, args=TGDPOConfig(output_dir=str(root / "w"), guide_policy=guide, **dpo), train_dataset=pairs, processing_class=tok),
            "SePOTrainer": lambda: SePOTrainer(policy, args=SePOConfig(output_dir=str(root / "e"), guide_policy=guide, **dpo), train_dataset=pairs, processing_class=tok),
        },
    }  # fmt: skip
    for group, makers in groups.items():
        times: dict[str, list[float]] = {name: [] for name in makers}
        for _ in range(options.repeats):
            for name, make in makers.items():
                times[name].append(timed(make))
        baseline = statistics.median(times[next(iter(makers))])
        print(
            f"{group} ({options.layers} layers, hidden {options.hidden}; median s/step of {options.repeats} rounds x {options.steps} steps)"
        )
        for name, values in times.items():
            median = statistics.median(values)
            print(f"  {name:32s} {median:8.4f} s/step  x{median / baseline:5.2f}")


if __name__ == "__main__":
    main()
