"""The update: `ppo_epochs` passes of clipped policy (and clipped value) losses over
mini-batches of one rollout's experience (equations in `tokenreward.losses.ppo`).

Each mini-batch's losses are normalised by its token count over all processes, so the
averaged gradients of N processes equal one process's; with `gradient_accumulation` k a
mini-batch is cut into k micro-batches whose gradients add up to the same update. The
micro-batches, the non-finite checks and the optimizer step are the harness's
(`micro_batches`, `check_finite_loss`, `apply_gradients`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from tokenreward.generation import response_token_stats
from tokenreward.losses.ppo import kl_estimate, masked_mean, policy_loss, value_loss
from tokenreward.trainers.harness import apply_gradients, autocast, check_finite_loss, derive_seed, micro_batches
from tokenreward.trainers.ppo.config import PPOConfig
from tokenreward.trainers.ppo.critic import shares_policy
from tokenreward.trainers.ppo.experience import Experience


@dataclass
class Learners:
    """What the update changes: the prepared models, their optimizers and schedules."""

    accelerator: Any
    policy: Any
    critic: Any | None
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, Any]


def minibatch_losses(
    c: PPOConfig, learners: Learners, mini: Experience, count: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The summed loss of a (micro-)batch and its statistics; `count` is the mini-batch's token count."""
    rows = mini.batch
    shared = shares_policy(learners.critic)
    policy_stats = response_token_stats(learners.policy, rows, c.temperature, hidden=shared)
    logprobs = policy_stats.logprobs
    loss, stats = policy_loss(logprobs, mini.logprobs, mini.advantages, rows.mask, c.cliprange, count)
    stats["policy_loss"] = loss.detach()
    if c.kl_in == "loss":
        kl_loss = masked_mean(kl_estimate(logprobs, mini.ref_logprobs, c.kl_estimator), rows.mask, count)
        stats["kl_loss"] = kl_loss.detach()
        loss = loss + c.kl_coef * kl_loss
    if learners.critic is not None:
        values = learners.critic(policy_stats.hidden) if shared else learners.critic(rows)
        v_loss, v_stats = value_loss(values, mini.values, mini.returns, rows.mask, c.cliprange_value, count)
        stats.update(v_stats, value_loss=v_loss.detach())
        loss = loss + (c.value_loss_coef if shared else 1.0) * v_loss
    return loss, stats


def apply(c: PPOConfig, learners: Learners, where: str) -> None:
    """The optimizer step of every model (`apply_gradients`: clip, check, step)."""
    for name, optimizer in learners.optimizers.items():
        model = learners.policy if name == "policy" else learners.critic
        apply_gradients(learners.accelerator, model, optimizer, c.max_grad_norm, f"{where}, {name}")


def update(c: PPOConfig, learners: Learners, step: int, experience: Experience) -> dict[str, float]:
    """Mean losses and statistics over every mini-batch of every epoch."""
    acc = learners.accelerator
    local = experience.batch.input_ids.shape[0]
    size = c.mini_batch_size // acc.num_processes
    device = experience.batch.input_ids.device
    totals: dict[str, float] = {}
    updates = 0
    for epoch in range(c.ppo_epochs):
        order = torch.randperm(
            local, generator=torch.Generator().manual_seed(derive_seed(c.seed, "minibatches", step, epoch))
        )
        for start in range(0, local, size):
            index = order[start : start + size].to(device)
            where = f"step {step + 1}, epoch {epoch + 1}, mini-batch {start // size + 1}"
            count = acc.reduce(experience.batch.mask[index].sum().float(), reduction="sum") / acc.num_processes
            micros = [index[j :: c.gradient_accumulation] for j in range(min(c.gradient_accumulation, len(index)))]
            summed: dict[str, torch.Tensor] = {}
            for micro in micro_batches(acc, learners.policy, micros):
                with autocast(c.bf16, device):
                    loss, stats = minibatch_losses(c, learners, experience.rows(micro), count)
                check_finite_loss(loss, where)
                acc.backward(loss)
                for key, value in stats.items():
                    summed[key] = summed.get(key, 0.0) + value.float()
            apply(c, learners, where)
            reduced = acc.reduce(torch.stack(list(summed.values())), reduction="mean").tolist()
            for key, value in zip(summed, reduced):
                totals[key] = totals.get(key, 0.0) + value
            updates += 1
    for scheduler in learners.schedulers.values():
        scheduler.step()
    return {k: v / updates for k, v in totals.items()}
