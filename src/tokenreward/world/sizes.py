"""World sizes: how many prompts and pairs, the policy's shape and the training recipes (and the
task families, `DEFAULT_FAMILIES` unless a build names others)."""

from __future__ import annotations

from dataclasses import dataclass

from tokenreward.world.families import DEFAULT_FAMILIES


@dataclass(frozen=True)
class WorldSize:
    per_family: int  # distinct prompts per family (fewer where a family has fewer)
    test_share: float  # held-out test prompts; the rest split 20 / 40 / 40 (SFT / reward / RL)
    sft_responses: int  # responses per SFT prompt (plus three revision examples)
    pairs_per_prompt: int  # data pairs per prompt in the sft / rl / test splits
    reward_pairs_per_prompt: int  # data pairs per prompt in the reward split (the reward model's data)
    vocab_size: int
    n_layer: int
    n_embd: int
    n_head: int
    sft_epochs: int
    sft_lr: float
    rm_epochs: int
    rm_lr: float
    batch_size: int
    eval_prompts: int  # test prompts the SFT policy answers for the report
    policy_pairs_per_prompt: int  # pairs of the SFT policy's own samples per reward prompt (test: pairs_per_prompt)
    max_grad_norm: float = 1.0  # gradient-norm clip of both training stages (SFT at lr 2e-3 is unstable without)
    families: tuple[str, ...] = DEFAULT_FAMILIES  # the task families, in the order their prompts are drawn


SIZES = {
    "small": WorldSize(100, 0.15, 4, 2, 4, 600, 2, 64, 2, 8, 3e-3, 3, 1e-3, 16, 60, 4),
    "full": WorldSize(700, 0.12, 6, 4, 12, 1500, 2, 128, 4, 12, 2e-3, 1, 6e-4, 32, 400, 12),
}
