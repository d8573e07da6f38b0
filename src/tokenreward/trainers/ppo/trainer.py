"""PPO with per-token rewards from any registered rewarder, and the critic-free ReMax and RLOO.

One step (`PPOTrainer.step`): sample responses to a batch of prompts (KV cache, seeded per
response) and score them with the rewarder aligned to the policy's own tokens (`rollout`);
subtract `kl_coef * KL_t` to the reference (or put the KL in the loss) and estimate
advantages into the step's `Experience`; then `update` runs `ppo_epochs` passes of clipped
updates over mini-batches.

- `ppo`: critic = a value head on a transformer (initialised from the reward model by
  default: its prefix scores are a ready value estimate), GAE, whitened advantages.
- `remax`: one sample per prompt, baseline = the greedy response's return.
- `rloo`: K samples per prompt, baseline = the other K-1 samples' mean return.
  Both use the token-level estimator `A_it = sum_{t'>=t} r_it' - b_it` with a position-matched
  baseline from the other responses (`rloo_token`, `remax_token`); `--estimator
  rloo_sequence|remax_sequence` gives the classic form for any reward. Every estimator is a
  registered entry of `tokenreward.losses.advantages`.

Determinism: models stay in eval mode (no dropout); samples are seeded by (seed, step,
sample), mini-batch order by (seed, step, epoch); so a resumed run, and a data-parallel run
under `accelerate launch`, sample what an unbroken single-process run samples. Under data
parallelism each process takes a contiguous share of the step's prompts; advantage
whitening uses statistics gathered over all processes and losses are normalised by the
global token count, so the averaged gradients equal the single-process ones.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tokenreward.errors import NonFiniteError, UserInputError
from tokenreward.generation import Batch, Generations, generate_from_ids, make_batch
from tokenreward.lora import trainable_parameters
from tokenreward.losses.advantages import (
    ESTIMATORS,
    AdvantageBatch,
    AdvantageSettings,
    EstimatorEntry,
    estimate_advantages,
)
from tokenreward.losses.ppo import kl_estimate, masked_whiten, ppo_rewards, sequence_returns
from tokenreward.models import context_length
from tokenreward.options import parse_assignments
from tokenreward.rewards import build_rewarder
from tokenreward.trainers import register_trainer
from tokenreward.trainers.checkpoints import latest_checkpoint, load_checkpoint, save_checkpoint
from tokenreward.trainers.harness import global_masked_moments, make_run
from tokenreward.trainers.loading import frozen_loading, trained_loading
from tokenreward.trainers.loop import run_steps
from tokenreward.trainers.oracle_curve import all_verifiable, oracle_metrics
from tokenreward.trainers.ppo.config import RESUMABLE_CHANGES, PPOConfig, ReMaxConfig, RLOOConfig
from tokenreward.trainers.ppo.critic import shares_policy
from tokenreward.trainers.ppo.experience import Experience, Scores, score_rollout
from tokenreward.trainers.ppo.models import load_models, rewarder_resources
from tokenreward.trainers.ppo.rollout import (
    policy_token_rewards,
    prepare_prompts,
    read_prompt_file,
    step_prompt_indices,
    world_prompts,
)
from tokenreward.trainers.ppo.update import Learners, update


@dataclass
class Rollout:
    """One step's samples: the prompts' row indices, the generations, their sequence rewards
    (and the greedy responses' for ReMax) and the experience the update reads."""

    rows: list[int]
    generations: Generations
    sequence_rewards: torch.Tensor
    greedy_rewards: torch.Tensor | None
    experience: Experience


@contextmanager
def timed(timings: dict[str, float], key: str):
    """Adds the wall-clock seconds of the block to `timings[key]`."""
    started = time.perf_counter()
    yield
    timings[key] = time.perf_counter() - started


class PPOTrainer:
    """Holds models, optimizers and the accelerator for one run of `ppo`, `remax` or `rloo`."""

    def __init__(self, config: PPOConfig, method: str):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # our own bar shows the progress; HF's would print at every checkpoint
        self.config, self.method = config, method
        self.accelerator, self.folder = make_run(
            config, {"method": method}, may_change=RESUMABLE_CHANGES, extendable=True
        )
        self.device = self.accelerator.device
        processes = self.accelerator.num_processes
        if config.batch_size % processes or config.mini_batch_size % processes:
            raise UserInputError(
                f"--batch-size {config.batch_size} and --mini-batch-size {config.mini_batch_size} must be multiples of "
                f"the {processes} processes"
            )
        self.world = self.open_world()
        self.load_models()
        self.records = self.load_prompt_records()
        self.prompt_ids, self.prompts = prepare_prompts(
            self.tokenizer,
            self.records,
            config.max_new_tokens,
            context_length(self.policy),
            config.truncate_prompts,
            config.chat_template,
        )
        self.rewarder = build_rewarder(
            config.rewarder,
            rewarder_resources(config, self.world, frozen_loading(config, self.accelerator)),
            **parse_assignments(config.rewarder_options, "--rewarder-options"),
        )
        self.make_optimizers()

    # ---- set-up

    def open_world(self):
        c = self.config
        if c.world is None and c.policy is not None:
            if c.prompts is None:
                raise UserInputError("without --world, pass --prompts (and --policy, --reward-model)")
            return None
        from tokenreward.world import open_world

        return open_world(c.world)

    @property
    def critic_free(self) -> bool:
        return not self.estimator.critic

    def load_models(self) -> None:
        trained, frozen = trained_loading(self.accelerator), frozen_loading(self.config, self.accelerator)
        models = load_models(self.config, self.world, trained, frozen, critic=not self.critic_free)
        self.tokenizer, self.policy, self.reference = models.tokenizer, models.policy, models.reference
        self.critic, self.reward_model_dir = models.critic, models.reward_model_dir

    def load_prompt_records(self) -> list[dict]:
        c = self.config
        return (
            read_prompt_file(c.prompts)
            if c.prompts is not None
            else world_prompts(self.world, c.prompt_split, c.prompt_families)
        )

    def make_optimizers(self) -> None:
        c = self.config
        schedule = lambda step: min(1.0, (step + 1) / c.warmup_steps) if c.warmup_steps else 1.0  # noqa: E731
        self.optimizers = {
            "policy": torch.optim.AdamW(trainable_parameters(self.policy), lr=c.learning_rate, weight_decay=0.0)
        }
        if self.critic is not None:
            self.optimizers["critic"] = torch.optim.AdamW(
                trainable_parameters(self.critic), lr=c.critic_learning_rate, weight_decay=0.0
            )
        self.schedulers = {k: torch.optim.lr_scheduler.LambdaLR(o, schedule) for k, o in self.optimizers.items()}
        if self.critic is not None:
            self.policy, self.critic, self.optimizers["policy"], self.optimizers["critic"] = self.accelerator.prepare(
                self.policy, self.critic, self.optimizers["policy"], self.optimizers["critic"]
            )
        else:
            self.policy, self.optimizers["policy"] = self.accelerator.prepare(self.policy, self.optimizers["policy"])

    def checkpoint_models(self) -> dict[str, Any]:
        models = {"policy": self.accelerator.unwrap_model(self.policy)}
        if self.critic is not None:
            critic = self.accelerator.unwrap_model(self.critic)
            models["critic"] = critic if shares_policy(critic) else critic.model
        return models

    # ---- one step

    def local_share(self, step: int) -> tuple[list[int], list[tuple[int, ...]]]:
        """This process's prompt indices (each repeated K times) and the sample seeds."""
        c, acc = self.config, self.accelerator
        share = c.batch_size // acc.num_processes
        prompts = step_prompt_indices(len(self.records), c.batch_size, step, c.seed)
        first = acc.process_index * share
        rows, seeds = [], []
        for j, index in enumerate(prompts[first : first + share]):
            for k in range(c.samples_per_prompt):
                rows.append(index)
                seeds.append((c.seed, step, (first + j) * c.samples_per_prompt + k))
        return rows, seeds

    def score_batch(self, batch: Batch) -> Scores:
        """Rollout-time log-probs (policy, reference), entropy and values, in mini-batch chunks."""
        chunk = max(1, self.config.mini_batch_size // self.accelerator.num_processes)
        critic = self.accelerator.unwrap_model(self.critic) if self.critic is not None else None
        return score_rollout(
            self.accelerator.unwrap_model(self.policy), self.reference, critic, batch, self.config.temperature, chunk
        )

    def generate(self, rows: list[int], seeds: list[tuple[int, ...]] | None) -> Generations:
        c = self.config
        return generate_from_ids(
            self.accelerator.unwrap_model(self.policy),
            self.tokenizer,
            [self.prompt_ids[i] for i in rows],
            c.max_new_tokens,
            do_sample=seeds is not None,
            temperature=c.temperature,
            top_k=c.top_k,
            generator_seed=seeds,
        )

    def rewards(self, step: int, rows: list[int], generations: Generations) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded token rewards `[b, t]` (float, on device) and sequence rewards; a non-finite
        reward refuses the step with an error naming the batch."""
        try:
            policy_rewards = policy_token_rewards(self.rewarder, [self.prompts[i] for i in rows], generations)
        except FloatingPointError as err:
            raise NonFiniteError(
                f"step {step + 1}: rewarder {self.config.rewarder!r} gave a non-finite reward on the batch of prompts "
                f"{sorted(set(rows))} ({err}); the step was refused and nothing was updated"
            ) from err
        except ValueError as err:
            raise UserInputError(
                f"step {step + 1}: rewarder {self.config.rewarder!r} failed on the batch of prompts {sorted(set(rows))}: {err}"
            ) from err
        width = max(len(g.response_ids) for g in generations)
        return policy_rewards.padded(width).to(self.device), policy_rewards.sequence_rewards.to(self.device)

    @property
    def estimator(self) -> EstimatorEntry:
        return ESTIMATORS.get(self.config.estimator)

    def advantages(self, batch: AdvantageBatch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The registered estimator's advantages, whitened with statistics over all processes
        when `whiten_advantages`."""
        c = self.config
        settings = AdvantageSettings(gamma=c.gamma, lam=c.lam, ktae_ignored_token=self.tokenizer.eos_token_id)
        advantages, returns = estimate_advantages(c.estimator, batch, settings)
        if c.whiten_advantages:
            mean, var = global_masked_moments(self.accelerator, advantages, batch.mask)
            advantages = masked_whiten(advantages, batch.mask, mean=mean, var=var)
        return advantages, returns

    def greedy_baseline(self, step: int, rows: list[int], batch: AdvantageBatch) -> torch.Tensor:
        """For estimators that need a baseline response (ReMax): the greedy responses, scored
        and KL-penalised like the samples, go into `batch`; returns their sequence rewards."""
        c = self.config
        greedy = self.generate(rows, None)
        greedy_token_rewards, greedy_sequence = self.rewards(step, rows, greedy)
        greedy_batch = make_batch(greedy, self.tokenizer.pad_token_id, self.device)
        scores = self.score_batch(greedy_batch)
        kl = kl_estimate(scores.logprobs, scores.ref_logprobs, c.kl_estimator)
        batch.baseline_rewards = ppo_rewards(
            greedy_token_rewards, kl, greedy_batch.mask, c.kl_coef if c.kl_in == "reward" else 0.0
        )
        batch.baseline_mask = greedy_batch.mask
        return greedy_sequence

    def rollout(self, step: int, timings: dict[str, float]) -> Rollout:
        """Sample this process's share of the step's prompts, reward, score and penalise the
        samples, and estimate their advantages."""
        c = self.config
        with timed(timings, "time_generate"):
            rows, seeds = self.local_share(step)
            generations = self.generate(rows, seeds)
            batch = make_batch(generations, self.tokenizer.pad_token_id, self.device)
        with timed(timings, "time_reward"):
            token_rewards, sequence = self.rewards(step, rows, generations)
        with timed(timings, "time_score"):
            scores = self.score_batch(batch)
            kl = kl_estimate(scores.logprobs, scores.ref_logprobs, c.kl_estimator)
            rewards = ppo_rewards(token_rewards, kl, batch.mask, c.kl_coef if c.kl_in == "reward" else 0.0)
        # samples of one prompt are adjacent in the local share: row b belongs to group b // K
        group = torch.arange(len(rows), device=self.device) // c.samples_per_prompt
        estimator_batch = AdvantageBatch(
            rewards, batch.mask, group=group, values=scores.values, entropy=scores.entropy, token_ids=batch.tokens
        )
        greedy_rewards = None
        if "baseline_rewards" in self.estimator.needs:
            with timed(timings, "time_baseline"):
                greedy_rewards = self.greedy_baseline(step, rows, estimator_batch)
        advantages, returns = self.advantages(estimator_batch)
        experience = Experience(
            batch, scores.logprobs, scores.ref_logprobs, scores.entropy, rewards, advantages, scores.values, returns
        )
        return Rollout(rows, generations, sequence, greedy_rewards, experience)

    def step(self, step: int) -> dict[str, Any]:
        """One rollout and its updates; returns the step's log record."""
        timings: dict[str, float] = {}
        rollout = self.rollout(step, timings)
        with timed(timings, "time_train"):
            stats = update(self.config, self.learners, step, rollout.experience)
        with timed(timings, "time_oracle"):
            oracle = self.oracle_metrics(rollout.rows, rollout.generations)
        return {**self.step_record(rollout, oracle), **stats, **self.step_counts(rollout), **timings_rounded(timings)}

    def step_record(self, rollout: Rollout, oracle: dict[str, torch.Tensor]) -> dict[str, float]:
        """Means over every process's responses: reward, KL to the reference, length, return,
        finished share (and the oracle's metrics, greedy reward), and the mean token entropy."""
        acc, experience = self.accelerator, rollout.experience
        mask = experience.batch.mask
        k1 = kl_estimate(experience.logprobs, experience.ref_logprobs, "k1")
        per_response = {
            "reward": rollout.sequence_rewards,
            "kl": torch.where(mask, k1, torch.zeros_like(k1)).sum(-1),
            "length": mask.sum(-1).float(),
            "return": sequence_returns(experience.rewards, mask),
            "finished": torch.tensor([float(g.finished) for g in rollout.generations], device=self.device),
        }
        per_response.update(oracle)
        if rollout.greedy_rewards is not None:
            per_response["greedy_reward"] = rollout.greedy_rewards
        record = {key: acc.gather(values.float()).mean().item() for key, values in per_response.items()}
        record["entropy"] = global_masked_moments(acc, experience.entropy, mask)[0].item()
        return record

    def step_counts(self, rollout: Rollout) -> dict[str, float]:
        """The learning rate and the tokens generated and trained on over every process."""
        tokens = int(self.accelerator.reduce(rollout.experience.batch.mask.sum().float(), reduction="sum").item())
        lr = self.schedulers["policy"].get_last_lr()[0]
        return {"lr": lr, "tokens_generated": tokens, "tokens_trained": tokens * self.config.ppo_epochs}

    def oracle_metrics(self, rows: list[int], generations: Generations) -> dict[str, torch.Tensor]:
        """The world oracle's `oracle_metrics` of each sampled response (none without a world); the
        accuracy when every prompt of the run (not just of the step: the same keys on every process) is verifiable."""
        records = [self.records[i] for i in rows]
        if self.world is None or not all("family" in r and "meta" in r for r in records):
            return {}
        metrics = oracle_metrics(records, [g.text for g in generations], all_verifiable(self.records))
        return {k: torch.tensor(v, dtype=torch.float32, device=self.device) for k, v in metrics.items()}

    # ---- the loop

    @property
    def learners(self) -> Learners:
        return Learners(self.accelerator, self.policy, self.critic, self.optimizers, self.schedulers)

    def train(self) -> Path:
        """The steps (`run_steps`), then the final policy and `OUT/done`; returns the run folder."""
        c = self.config
        if self.folder.finished:
            return self.folder.out
        self.start = self.restore()
        shown = ("reward", "oracle_score", "kl", "length")
        run_steps(self, c.steps, self.step, f"{self.method}-{c.rewarder}", shown)
        self.folder.finish(self.accelerator.unwrap_model(self.policy), self.tokenizer)
        self.accelerator.wait_for_everyone()
        return self.folder.out

    def checkpoint(self, step: int) -> None:
        """Every model, optimizer and schedule and the RNG states as of `step` (main process only)."""
        if self.accelerator.is_main_process:
            save_checkpoint(
                self.folder.out,
                step,
                self.checkpoint_models(),
                self.optimizers,
                self.schedulers,
                keep=self.config.keep_checkpoints,
            )
        self.accelerator.wait_for_everyone()

    def restore(self) -> int:
        """The step to start from: the newest checkpoint's, else 0."""
        self.folder.begin()
        if latest_checkpoint(self.folder.out) is None:
            return 0
        step, _ = load_checkpoint(self.folder.out, self.checkpoint_models(), self.optimizers, self.schedulers)
        return step


def timings_rounded(timings: dict[str, float]) -> dict[str, float]:
    """The step's wall-clock seconds per phase, to 0.1 ms (`time_generate`, `time_train`, ...)."""
    return {k: round(v, 4) for k, v in timings.items()}


@register_trainer(
    "rloo", RLOOConfig, help="RLOO: K samples per prompt, leave-one-out baseline, token-level with dense rewards"
)
@register_trainer(
    "remax", ReMaxConfig, help="ReMax: REINFORCE with the greedy response's return as baseline, no critic"
)
@register_trainer("ppo", PPOConfig, help="PPO with per-token rewards from any rewarder (value-head critic, GAE)")
def run(config: PPOConfig, name: str = "ppo") -> Path:
    """Train `name` (ppo, remax or rloo) and return the run folder (`OUT/final` holds the policy)."""
    return PPOTrainer(config, name).train()
