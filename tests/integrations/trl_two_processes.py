"""Run under `accelerate launch --num_processes 2` by tests/integrations/test_trl.py: on each rank,
TokenRewardGRPOTrainer (sparse rewarder) and TRL's GRPOTrainer sample the same completions for one
prompt whose 8 samples are split over the two ranks; each rank writes how far its (B, T)
advantages are from TRL's, broadcast over the tokens."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from tokenreward.integrations.trl import TokenRewardGRPOTrainer
from tokenreward.rewards import build_rewarder
from tokenreward.testing import tiny_causal_lm, tiny_reward_model, train_tokenizer

PROMPTS = ["What is 17 + 25?", "Say hello."]


def main(out: Path) -> None:
    tokenizer = train_tokenizer()
    sparse = build_rewarder(
        "sparse", reward_model=tiny_reward_model("llama", tokenizer, seed=3), tokenizer=tokenizer, device="cpu"
    )

    def reward_model_score(prompts, completions, **kwargs):
        return sparse.score(prompts, completions).sequence_rewards.tolist()

    def args(name: str) -> GRPOConfig:
        return GRPOConfig(
            output_dir=str(out / name), per_device_train_batch_size=4, num_generations=8, max_completion_length=4,
            report_to=[], beta=0.0, use_cpu=True, bf16=False, save_strategy="no",
        )  # fmt: skip

    data = Dataset.from_list([{"prompt": p} for p in PROMPTS])
    ours = TokenRewardGRPOTrainer(
        tiny_causal_lm("llama", tokenizer), sparse, args=args("ours"), train_dataset=data, processing_class=tokenizer
    )
    theirs = GRPOTrainer(
        tiny_causal_lm("llama", tokenizer),
        reward_funcs=reward_model_score,
        args=args("trl"),
        train_dataset=data,
        processing_class=tokenizer,
    )
    rank = ours.accelerator.process_index
    outputs = []
    for trainer in (ours, theirs):
        trainer.model.train()
        torch.manual_seed(rank)
        outputs.append(trainer._generate_and_score_completions([{"prompt": PROMPTS[0]} for _ in range(4)]))
    a, b = outputs
    mask = a["completion_mask"].bool()
    expected = torch.where(mask, b["advantages"][:, None].expand_as(mask), torch.zeros_like(a["advantages"]))
    report = {
        "processes": ours.accelerator.num_processes,
        "same_completions": torch.equal(a["completion_ids"], b["completion_ids"]),
        "max_difference": float((a["advantages"] - expected).abs().max()),
        "trl_advantages": b["advantages"].tolist(),
    }
    (out / f"rank{rank}.json").write_text(json.dumps(report))
    ours.accelerator.wait_for_everyone()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
