"""PPO with per-token rewards from any registered rewarder, and the critic-free ReMax and RLOO.

One step: sample responses to a batch of prompts (KV cache, seeded per response), score them
with the rewarder aligned to the policy's own generated tokens (`Rewarder.score(...,
align_to=offsets)`), subtract `kl_coef * KL_t` to the reference (or put the KL in the loss),
estimate advantages, then run `ppo_epochs` passes of clipped-policy (and clipped-value)
updates over mini-batches. The equations live in `tokenreward.losses.ppo`.

- `ppo`: critic = a value head on a transformer (initialised from the reward model by
  default: its prefix scores are a ready value estimate), GAE, whitened advantages.
- `remax`: one sample per prompt, baseline = the greedy response's return.
- `rloo`: K samples per prompt, baseline = the other K-1 samples' mean return.
  Both use the token-level estimator `A_it = sum_{t'>=t} r_it' - b_it` with a position-matched
  baseline from the other responses (`rloo_token`, `remax_token`), which is the classic
  sequence estimator for the sparse reward and does not collapse with dense ones (see
  `reward_to_go_advantages`); `--estimator rloo_sequence|remax_sequence` gives the classic
  form for any reward. Every estimator is a registered entry of `tokenreward.losses.advantages`.

Reward layout: the rewarder's rewards land on the policy token that holds their characters;
the reward on the token that completes the text moves to the last generated token (the EOS
when the policy stopped), so the sparse rewarder gives the classic PPO-RLHF layout: the score
on the last real token, never on padding. A blank response (nothing to score) gets the
lowest sequence reward of its batch on its last token.

Determinism: models stay in eval mode (no dropout); samples are seeded by (seed, step,
sample), mini-batch order by (seed, step, epoch); so a resumed run, and a data-parallel run
under `accelerate launch`, sample what an unbroken single-process run samples. Under data
parallelism each process takes a contiguous share of the step's prompts; advantage
whitening uses statistics gathered over all processes and losses are normalised by the
global token count, so the averaged gradients equal the single-process ones.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
from torch import nn

from tokenreward.align import terminal_layout
from tokenreward.generation import Batch, Generations, encode_prompt, generate_from_ids, make_batch, response_logits, token_logprobs
from tokenreward.losses.advantages import ESTIMATORS, AdvantageBatch, AdvantageSettings, EstimatorEntry, estimate_advantages
from tokenreward.losses.ppo import (
    entropy_from_logits,
    kl_estimate,
    masked_mean,
    masked_whiten,
    policy_loss,
    ppo_rewards,
    sequence_returns,
    value_loss,
)
from tokenreward.models import context_length, load_causal_lm, load_tokenizer, score_head
from tokenreward.options import parse_assignments
from tokenreward.rewards import Rewarder, TextOrMessages, build_rewarder
from tokenreward.trainers import register_trainer
from tokenreward.trainers.common import (
    JsonlLogger,
    latest_checkpoint,
    load_checkpoint,
    make_accelerator,
    progress_bar,
    save_checkpoint,
)

#: config fields that may change when a run is resumed
RESUMABLE_CHANGES = ("steps", "resume", "save_every", "progress", "processes")


@dataclass
class PPOConfig:
    """PPO with dense token rewards. Defaults: METHODS.md (RED's kl 0.02; TLCR's gamma 1,
    lambda 0.95, clip 0.2, value clip 0.2); learning rates and batch sizes are small-model
    choices (see docs/ppo.md)."""

    out: Path = field(metadata={"help": "run folder: log.jsonl, checkpoints/, final/ (the trained policy)"})
    rewarder: str = field(default="sparse", metadata={"help": "registered rewarder giving the per-token rewards"})
    world: Path | None = field(default=None, metadata={"help": "world folder (policy, reward model, prompts, oracle); default: the built world"})
    policy: Path | None = field(default=None, metadata={"help": "initial policy folder (default: the world's SFT policy)"})
    reference: Path | None = field(default=None, metadata={"help": "reference model for the KL (default: the initial policy)"})
    reward_model: Path | None = field(default=None, metadata={"help": "sequence reward model folder (default: the world's)"})
    prompts: Path | None = field(default=None, metadata={"help": "JSONL of {\"prompt\": ...} records (default: the world's prompts)"})
    prompt_split: str = field(default="rl", metadata={"help": "world split to take prompts from"})
    rewarder_options: list[str] = field(
        default_factory=list,
        metadata={"help": "rewarder options and extra resources NAME=VALUE, typed from the rewarder's constructor, e.g. keep_sum=true,discriminator=DIR",
                  "aliases": ["--rewarder-args"]},
    )
    steps: int = field(default=100, metadata={"help": "PPO steps (one rollout batch each)"})
    seed: int = field(default=0, metadata={"help": "seed of sampling, data order and initialisation"})
    resume: bool = field(default=False, metadata={"help": "continue the run in --out from its newest checkpoint"})
    batch_size: int = field(default=16, metadata={"help": "prompts per step (over all processes)"})
    samples_per_prompt: int = field(default=1, metadata={"help": "responses sampled per prompt (RLOO's K)"})
    mini_batch_size: int = field(default=8, metadata={"help": "responses per optimizer step (over all processes)"})
    ppo_epochs: int = field(default=2, metadata={"help": "passes over each rollout batch"})
    max_new_tokens: int = field(default=64, metadata={"help": "longest response in tokens"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature (the log-probs use the same)"})
    top_k: int = field(default=0, metadata={"help": "sample among the top-k tokens (0: all)"})
    learning_rate: float = field(default=5e-5, metadata={"help": "policy learning rate (AdamW)"})
    critic_learning_rate: float = field(default=1e-4, metadata={"help": "value model learning rate (AdamW)"})
    warmup_steps: int = field(default=0, metadata={"help": "linear learning-rate warm-up, in steps"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm"})
    kl_coef: float = field(default=0.02, metadata={"help": "beta of the KL to the reference (RED: 0.02, TLCR: 0.1)"})
    kl_estimator: Literal["k1", "k2", "k3"] = field(default="k1", metadata={"help": "per-token KL estimator"})
    kl_in: Literal["reward", "loss"] = field(default="reward", metadata={"help": "subtract the KL from the reward or add it to the loss"})
    gamma: float = field(default=1.0, metadata={"help": "GAE discount"})
    lam: float = field(default=0.95, metadata={"help": "GAE lambda"})
    cliprange: float = field(default=0.2, metadata={"help": "policy ratio clip"})
    cliprange_value: float = field(default=0.2, metadata={"help": "value clip around the rollout values"})
    whiten_advantages: bool = field(default=True, metadata={"help": "whiten advantages over the batch"})
    critic_init: Literal["reward_model", "policy"] = field(
        default="reward_model", metadata={"help": "initialise the value model from the reward model or the policy"}
    )
    estimator: str = field(
        default="gae", metadata={"help": "registered advantage estimator (gae needs a critic; see tokenreward.losses.advantages)"}
    )
    truncate_prompts: bool = field(default=False, metadata={"help": "keep the end of prompts too long for the context instead of refusing"})
    save_every: int = field(default=50, metadata={"help": "checkpoint every N steps (and at the end)"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})


@dataclass
class ReMaxConfig(PPOConfig):
    """ReMax: one sample per prompt, the greedy response's return as baseline, no critic."""

    estimator: str = field(default="remax_token", metadata={"help": "registered advantage estimator (remax_token, remax_sequence)"})
    whiten_advantages: bool = field(default=False, metadata={"help": "whiten advantages over the batch"})


@dataclass
class RLOOConfig(PPOConfig):
    """RLOO: K samples per prompt, leave-one-out baseline, no critic (4 prompts x 4 samples =
    the 16 responses of a PPO step)."""

    batch_size: int = field(default=4, metadata={"help": "prompts per step (over all processes)"})
    samples_per_prompt: int = field(default=4, metadata={"help": "responses sampled per prompt (RLOO's K)"})
    estimator: str = field(default="rloo_token", metadata={"help": "registered advantage estimator (rloo_token, rloo_return, grpo_return, rloo_sequence)"})
    whiten_advantages: bool = field(default=False, metadata={"help": "whiten advantages over the batch"})


# ----------------------------------------------------------------------------- inputs


def read_prompt_file(path: Path) -> list[dict[str, Any]]:
    """Records of a JSONL (or JSON list) file in TRL's prompt-only format: `{"prompt": ...}`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--prompts: no file {path}")
    text = path.read_text()
    if path.suffix == ".json":
        records = json.loads(text)
        if not isinstance(records, list):
            raise ValueError(f"--prompts: {path} must hold a JSON list of records")
    else:
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"--prompts: {path} line {number} is not JSON: {err}") from err
    for number, record in enumerate(records, start=1):
        prompt = record.get("prompt") if isinstance(record, dict) else None
        if not (isinstance(prompt, str) and prompt.strip()) and not (isinstance(prompt, list) and prompt):
            raise ValueError(f"--prompts: record {number} of {path} has no \"prompt\" (a string or a list of messages)")
    if not records:
        raise ValueError(f"--prompts: {path} holds no prompts")
    return records


def prepare_prompts(
    tokenizer, records: Sequence[dict], max_new_tokens: int, context: int | None, truncate: bool
) -> tuple[list[list[int]], list[TextOrMessages]]:
    """Token ids for the policy and the prompt the rewarder sees. A prompt that leaves no room
    for `max_new_tokens` in the context is refused, or with `truncate` cut to its end."""
    room = None if context is None else context - max_new_tokens
    if room is not None and room < 1:
        raise ValueError(f"--max-new-tokens {max_new_tokens} leaves no room for a prompt in the policy's context of {context}")
    ids, prompts, too_long = [], [], []
    for i, record in enumerate(records):
        prompt_ids = encode_prompt(tokenizer, record["prompt"])
        prompt = record["prompt"]
        if room is not None and len(prompt_ids) > room:
            too_long.append((i, len(prompt_ids)))
            if truncate:
                if not isinstance(prompt, str):
                    raise ValueError(f"prompt {i} is a conversation too long for the context; it cannot be truncated")
                prompt_ids = prompt_ids[-room:]
                prompt = tokenizer.decode(prompt_ids, skip_special_tokens=True)
        ids.append(prompt_ids)
        prompts.append(prompt)
    if too_long and not truncate:
        i, n = too_long[0]
        raise ValueError(
            f"{len(too_long)} prompt(s) are longer than the context allows: prompt {i} is {n} tokens but the policy's "
            f"context of {context} minus --max-new-tokens {max_new_tokens} leaves {room}; shorten them, lower "
            "--max-new-tokens, or pass --truncate-prompts to keep their last tokens"
        )
    return ids, prompts


def step_prompt_indices(n_prompts: int, batch_size: int, step: int, seed: int) -> list[int]:
    """The prompts of step `step` (0-based): consecutive slices of seeded permutations, one
    permutation per pass over the prompts."""
    indices = []
    for position in range(step * batch_size, (step + 1) * batch_size):
        epoch, offset = divmod(position, n_prompts)
        order = torch.randperm(n_prompts, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        indices.append(int(order[offset]))
    return indices


# ----------------------------------------------------------------------------- rewards


def policy_token_rewards(
    rewarder: Rewarder, prompts: Sequence[TextOrMessages], generations: Generations
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per generated token rewards (one row per response, `len(response_ids)` long) and the
    sequence rewards, in the layout described in the module docstring."""
    scored = [i for i, g in enumerate(generations) if g.text.strip()]
    rows = [torch.zeros(len(g.response_ids)) for g in generations]
    sequence = torch.zeros(len(generations))
    if scored:
        result = rewarder.score(
            [prompts[i] for i in scored], [generations[i].text for i in scored], align_to=[generations[i].offsets for i in scored]
        )
        result.check_finite()
        for k, i in enumerate(scored):
            rows[i] = torch.tensor(terminal_layout(result.token_rewards(k), generations[i].offsets, len(generations[i].text)))
            sequence[i] = result.sequence_rewards[k]
    floor = float(sequence[scored].min()) if scored else 0.0
    for i in sorted(set(range(len(generations))) - set(scored)):
        rows[i][-1] = floor
        sequence[i] = floor
    return rows, sequence


class ValueModel(nn.Module):
    """Critic: a sequence-classification model whose scalar head is read at every position;
    `V(s_t)` for response token t is read at the position before it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: Batch) -> torch.Tensor:
        hidden = self.model.base_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        values = score_head(self.model)(hidden).squeeze(-1).float()
        return torch.gather(values, 1, batch.positions - 1)


# ----------------------------------------------------------------------------- trainer


class PPOTrainer:
    """Holds models, optimizers and the accelerator for one run of `ppo`, `remax` or `rloo`."""

    def __init__(self, config: PPOConfig, method: str):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # our own bar shows the progress; HF's would print at every checkpoint
        self.config, self.method = config, method
        self.check_config()
        self.accelerator = make_accelerator(config.seed, cpu=not torch.cuda.is_available())  # several CPU processes: gloo
        self.device = self.accelerator.device
        processes = self.accelerator.num_processes
        if config.batch_size % processes or config.mini_batch_size % processes:
            raise ValueError(
                f"--batch-size {config.batch_size} and --mini-batch-size {config.mini_batch_size} must be multiples of "
                f"the {processes} processes"
            )
        self.world = self.open_world()
        self.load_models()
        self.records = self.load_prompt_records()
        self.prompt_ids, self.prompts = prepare_prompts(
            self.tokenizer, self.records, config.max_new_tokens, context_length(self.policy), config.truncate_prompts
        )
        self.rewarder = build_rewarder(config.rewarder, self.rewarder_resources(), **parse_assignments(config.rewarder_options, "--rewarder-options"))
        self.make_optimizers()

    # ---- set-up

    def check_config(self) -> None:
        c = self.config
        positive = ("steps", "batch_size", "samples_per_prompt", "mini_batch_size", "ppo_epochs", "max_new_tokens", "save_every")
        for name in positive:
            if getattr(c, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(c, name)}")
        if c.temperature <= 0:
            raise ValueError(f"--temperature must be positive, got {c.temperature}")
        if (c.batch_size * c.samples_per_prompt) % c.mini_batch_size:
            raise ValueError(
                f"--mini-batch-size {c.mini_batch_size} must divide the {c.batch_size * c.samples_per_prompt} responses "
                "of a step (--batch-size x --samples-per-prompt)"
            )
        if c.estimator not in ESTIMATORS:
            raise ValueError(f"--estimator {c.estimator!r} is not registered; known: {', '.join(ESTIMATORS.names())}")
        if "group" in self.estimator.needs and c.samples_per_prompt < 2:
            raise ValueError(f"--estimator {c.estimator} needs --samples-per-prompt of at least 2, got {c.samples_per_prompt}")
        if c.kl_in == "loss" and c.kl_estimator == "k1":
            raise ValueError("--kl-in loss with --kl-estimator k1 has zero expected gradient; use k2 or k3 as a loss")

    def open_world(self):
        c = self.config
        if c.world is None and c.policy is not None:
            if c.prompts is None:
                raise ValueError("without --world, pass --prompts (and --policy, --reward-model)")
            return None
        from tokenreward.world import open_world

        return open_world(c.world)

    @property
    def critic_free(self) -> bool:
        return not self.estimator.critic

    def load_models(self) -> None:
        c, world = self.config, self.world
        policy_dir = Path(c.policy or world.policy_dir)
        for flag, folder in (("--policy", policy_dir), ("--reference", c.reference), ("--reward-model", c.reward_model)):
            if folder is not None and not Path(folder).is_dir():
                raise FileNotFoundError(f"{flag}: no model folder {folder}")
        if _has_tokenizer(policy_dir):
            tokenizer_source = policy_dir
        elif world is not None:
            tokenizer_source = Path(world.tokenizer_dir)
        else:
            raise FileNotFoundError(f"--policy {policy_dir} holds no tokenizer (tokenizer_config.json)")
        self.tokenizer = load_tokenizer(str(tokenizer_source))
        if self.tokenizer.pad_token_id is None or self.tokenizer.eos_token_id is None:
            raise ValueError(f"the policy tokenizer ({tokenizer_source}) needs a pad and an EOS token")
        self.policy = load_causal_lm(str(policy_dir), self.device).eval()
        self.reference = load_causal_lm(str(c.reference or policy_dir), self.device).eval().requires_grad_(False)
        if self.reference.config.vocab_size != self.policy.config.vocab_size:
            raise ValueError(
                f"the reference model's vocabulary ({self.reference.config.vocab_size}) differs from the policy's "
                f"({self.policy.config.vocab_size}); they must share a tokenizer"
            )
        self.reward_model_dir = c.reward_model or (world.reward_model_dir if world is not None else None)
        self.critic = None if self.critic_free else ValueModel(self.load_critic()).eval()

    def load_critic(self) -> nn.Module:
        from transformers import AutoModelForSequenceClassification

        c = self.config
        if c.critic_init == "reward_model":
            if self.reward_model_dir is None:
                raise ValueError("--critic-init reward_model needs --reward-model (or a world); or use --critic-init policy")
            vocab = load_tokenizer(str(self.reward_model_dir)).get_vocab() if _has_tokenizer(self.reward_model_dir) else None
            if vocab is not None and vocab != self.tokenizer.get_vocab():
                raise ValueError(
                    f"--critic-init reward_model: the reward model's tokenizer ({self.reward_model_dir}) differs from the "
                    "policy's, so the critic cannot read the policy's tokens; use --critic-init policy"
                )
            model = AutoModelForSequenceClassification.from_pretrained(str(self.reward_model_dir))
        else:
            model = AutoModelForSequenceClassification.from_pretrained(str(c.policy or self.world.policy_dir), num_labels=1)
            with torch.no_grad():
                score_head(model).weight.zero_()
        if model.config.vocab_size != self.policy.config.vocab_size:
            raise ValueError(
                f"the value model's vocabulary ({model.config.vocab_size}) differs from the policy's "
                f"({self.policy.config.vocab_size}); use --critic-init policy"
            )
        return model.to(self.device)

    def load_prompt_records(self) -> list[dict]:
        if self.config.prompts is not None:
            return read_prompt_file(self.config.prompts)
        records = self.world.prompts(self.config.prompt_split)
        if not records:
            raise ValueError(f"the world has no prompts in split {self.config.prompt_split!r}")
        return records

    def rewarder_resources(self) -> dict[str, Any]:
        c = self.config
        if self.world is not None:
            resources = dict(self.world.resources())
        else:
            resources = {"policy": str(c.policy), "reference": str(c.reference or c.policy)}
        if c.reward_model is not None:
            resources["reward_model"] = str(c.reward_model)
        resources["device"] = str(self.device)
        return resources

    def make_optimizers(self) -> None:
        c = self.config
        schedule = lambda step: min(1.0, (step + 1) / c.warmup_steps) if c.warmup_steps else 1.0  # noqa: E731
        self.optimizers = {"policy": torch.optim.AdamW(self.policy.parameters(), lr=c.learning_rate, weight_decay=0.0)}
        if self.critic is not None:
            self.optimizers["critic"] = torch.optim.AdamW(self.critic.parameters(), lr=c.critic_learning_rate, weight_decay=0.0)
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
            models["critic"] = self.accelerator.unwrap_model(self.critic).model
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

    @torch.no_grad()
    def score_batch(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Rollout-time log-probs (policy, reference), entropy and values, in mini-batch chunks."""
        c = self.config
        chunk = max(1, c.mini_batch_size // self.accelerator.num_processes)
        parts: dict[str, list[torch.Tensor]] = {"logprobs": [], "ref_logprobs": [], "entropy": [], "values": []}
        policy = self.accelerator.unwrap_model(self.policy)
        for start in range(0, batch.input_ids.shape[0], chunk):
            rows = batch.rows(torch.arange(start, min(start + chunk, batch.input_ids.shape[0]), device=self.device))
            logits = response_logits(policy, rows, c.temperature)
            parts["logprobs"].append(token_logprobs(logits, rows.tokens))
            parts["entropy"].append(entropy_from_logits(logits))
            parts["ref_logprobs"].append(token_logprobs(response_logits(self.reference, rows, c.temperature), rows.tokens))
            if self.critic is not None:
                parts["values"].append(self.accelerator.unwrap_model(self.critic)(rows))
        return {k: torch.cat(v) for k, v in parts.items() if v}

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
            token_rows, sequence = policy_token_rewards(self.rewarder, [self.prompts[i] for i in rows], generations)
        except FloatingPointError as err:
            raise FloatingPointError(
                f"step {step + 1}: rewarder {self.config.rewarder!r} gave a non-finite reward on the batch of prompts "
                f"{sorted(set(rows))} ({err}); the step was refused and nothing was updated"
            ) from err
        except ValueError as err:
            raise ValueError(f"step {step + 1}: rewarder {self.config.rewarder!r} failed on the batch of prompts {sorted(set(rows))}: {err}") from err
        width = max(len(g.response_ids) for g in generations)
        padded = torch.zeros(len(token_rows), width)
        for i, row in enumerate(token_rows):
            padded[i, : len(row)] = row
        return padded.to(self.device), sequence.to(self.device)

    def gather_moments(self, values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of the masked entries over all processes."""
        stats = torch.stack([values[mask].sum(), (values[mask] ** 2).sum(), mask.sum().to(values.dtype)])
        total, squares, count = self.accelerator.reduce(stats, reduction="sum")
        mean = total / count.clamp_min(1)
        return mean, (squares / count.clamp_min(1) - mean**2).clamp_min(0.0)

    @property
    def estimator(self) -> EstimatorEntry:
        return ESTIMATORS.get(self.config.estimator)

    def advantages(self, batch: AdvantageBatch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The registered estimator's advantages, whitened with statistics over all processes
        when `whiten_advantages`."""
        c = self.config
        advantages, returns = estimate_advantages(c.estimator, batch, AdvantageSettings(gamma=c.gamma, lam=c.lam))
        if c.whiten_advantages:
            mean, var = self.gather_moments(advantages, batch.mask)
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
        kl = kl_estimate(scores["logprobs"], scores["ref_logprobs"], c.kl_estimator)
        batch.baseline_rewards = ppo_rewards(greedy_token_rewards, kl, greedy_batch.mask, c.kl_coef if c.kl_in == "reward" else 0.0)
        batch.baseline_mask = greedy_batch.mask
        return greedy_sequence

    def update(self, step: int, batch: Batch, rollout: dict[str, torch.Tensor]) -> dict[str, float]:
        """`ppo_epochs` passes of clipped updates over mini-batches; returns mean losses/stats."""
        c, acc = self.config, self.accelerator
        local = batch.input_ids.shape[0]
        size = c.mini_batch_size // acc.num_processes
        totals: dict[str, float] = {}
        updates = 0
        for epoch in range(c.ppo_epochs):
            order = torch.randperm(local, generator=torch.Generator().manual_seed(hash_seed(c.seed, step, epoch)))
            for start in range(0, local, size):
                index = order[start : start + size].to(self.device)
                rows = batch.rows(index)
                count = acc.reduce(rows.mask.sum().float(), reduction="sum") / acc.num_processes
                logits = response_logits(self.policy, rows, c.temperature)
                logprobs = token_logprobs(logits, rows.tokens)
                loss, stats = policy_loss(logprobs, rollout["logprobs"][index], rollout["advantages"][index], rows.mask, c.cliprange, count)
                stats["policy_loss"] = loss.detach()
                if c.kl_in == "loss":
                    kl_loss = masked_mean(kl_estimate(logprobs, rollout["ref_logprobs"][index], c.kl_estimator), rows.mask, count)
                    stats["kl_loss"] = kl_loss.detach()
                    loss = loss + c.kl_coef * kl_loss
                if self.critic is not None:
                    values = self.critic(rows)
                    v_loss, v_stats = value_loss(
                        values, rollout["values"][index], rollout["returns"][index], rows.mask, c.cliprange_value, count
                    )
                    stats.update(v_stats, value_loss=v_loss.detach())
                    loss = loss + v_loss
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"step {step + 1}, epoch {epoch + 1}, mini-batch {start // size + 1}: the loss is not finite; "
                        "stopped before applying it (resume from the last checkpoint)"
                    )
                acc.backward(loss)
                for name, optimizer in self.optimizers.items():
                    model = self.policy if name == "policy" else self.critic
                    acc.clip_grad_norm_(model.parameters(), c.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                reduced = acc.reduce(torch.stack([v.float() for v in stats.values()]), reduction="mean").tolist()
                for key, value in zip(stats, reduced):
                    totals[key] = totals.get(key, 0.0) + value
                updates += 1
        for scheduler in self.schedulers.values():
            scheduler.step()
        return {k: v / updates for k, v in totals.items()}

    def step(self, step: int) -> dict[str, Any]:
        """One rollout and its updates; returns the step's log record."""
        c, acc = self.config, self.accelerator
        timings = {}
        started = time.perf_counter()
        rows, seeds = self.local_share(step)
        generations = self.generate(rows, seeds)
        batch = make_batch(generations, self.tokenizer.pad_token_id, self.device)
        timings["time_generate"] = time.perf_counter() - started

        started = time.perf_counter()
        token_rewards, sequence = self.rewards(step, rows, generations)
        timings["time_reward"] = time.perf_counter() - started

        started = time.perf_counter()
        rollout = self.score_batch(batch)
        kl = kl_estimate(rollout["logprobs"], rollout["ref_logprobs"], c.kl_estimator)
        rewards = ppo_rewards(token_rewards, kl, batch.mask, c.kl_coef if c.kl_in == "reward" else 0.0)
        timings["time_score"] = time.perf_counter() - started
        # samples of one prompt are adjacent in the local share: row b belongs to group b // K
        group = torch.arange(len(rows), device=self.device) // c.samples_per_prompt
        estimator_batch = AdvantageBatch(rewards, batch.mask, group=group, values=rollout.get("values"))
        greedy_reward = None
        if "baseline_rewards" in self.estimator.needs:
            started = time.perf_counter()
            greedy_reward = self.greedy_baseline(step, rows, estimator_batch)
            timings["time_baseline"] = time.perf_counter() - started
        rollout["advantages"], rollout["returns"] = self.advantages(estimator_batch)

        started = time.perf_counter()
        stats = self.update(step, batch, rollout)
        timings["time_train"] = time.perf_counter() - started

        started = time.perf_counter()
        oracle = self.oracle_scores(rows, generations)
        timings["time_oracle"] = time.perf_counter() - started

        k1 = kl_estimate(rollout["logprobs"], rollout["ref_logprobs"], "k1")
        per_response = {
            "reward": sequence,
            "kl": torch.where(batch.mask, k1, torch.zeros_like(k1)).sum(-1),
            "length": batch.mask.sum(-1).float(),
            "return": sequence_returns(rewards, batch.mask),
            "finished": torch.tensor([float(g.finished) for g in generations], device=self.device),
        }
        if oracle is not None:
            per_response["oracle_score"] = oracle
        if greedy_reward is not None:
            per_response["greedy_reward"] = greedy_reward
        record: dict[str, Any] = {"step": step + 1}
        for key, values in per_response.items():
            record[key] = acc.gather(values.float()).mean().item()
        entropy_mean, _ = self.gather_moments(rollout["entropy"], batch.mask)
        record["entropy"] = entropy_mean.item()
        record.update(stats)
        record["lr"] = self.schedulers["policy"].get_last_lr()[0]
        tokens = acc.reduce(batch.mask.sum().float(), reduction="sum").item()
        record["tokens_generated"] = int(tokens)
        record["tokens_trained"] = int(tokens) * c.ppo_epochs
        record.update({k: round(v, 4) for k, v in timings.items()})
        return record

    def oracle_scores(self, rows: list[int], generations: Generations) -> torch.Tensor | None:
        """The world's oracle grade of each sampled response (None without a world)."""
        if self.world is None:
            return None
        records = [self.records[i] for i in rows]
        if not all("family" in r and "meta" in r for r in records):
            return None
        from tokenreward.world.oracle import grade

        return torch.tensor([grade(r, g.text).score for r, g in zip(records, generations)], dtype=torch.float32, device=self.device)

    # ---- the loop

    def train(self) -> Path:
        c, acc = self.config, self.accelerator
        out = Path(c.out)
        start = self.restore(out)
        logger = JsonlLogger(out / "log.jsonl", resume_step=start, enabled=acc.is_main_process)
        try:
            with progress_bar(c.steps, f"{self.method}-{c.rewarder}", start=start, enabled=c.progress and acc.is_main_process) as advance:
                for step in range(start, c.steps):
                    record = self.step(step)
                    logger.log(record)
                    if (step + 1) % c.save_every == 0 or step + 1 == c.steps:
                        self.save(out, step + 1)
                    advance(**{k: record[k] for k in ("reward", "oracle_score", "kl", "length") if k in record})
        finally:
            logger.close()
        if acc.is_main_process:
            final = out / "final"
            self.accelerator.unwrap_model(self.policy).save_pretrained(final)
            self.tokenizer.save_pretrained(final)
        acc.wait_for_everyone()
        return out

    def save(self, out: Path, step: int) -> None:
        if self.accelerator.is_main_process:
            save_checkpoint(out, step, self.checkpoint_models(), self.optimizers, self.schedulers)
        self.accelerator.wait_for_everyone()

    def restore(self, out: Path) -> int:
        """The step to start from: 0 for a fresh run, the checkpoint's step with --resume."""
        saved = out / "config.json"
        settings = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(self.config).items()}
        settings.update(method=self.method, processes=self.accelerator.num_processes)
        if not self.config.resume:
            if latest_checkpoint(out) is not None or (out / "log.jsonl").exists():
                raise ValueError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
            if self.accelerator.is_main_process:
                out.mkdir(parents=True, exist_ok=True)
                saved.write_text(json.dumps(settings, indent=2))
            self.accelerator.wait_for_everyone()
            return 0
        step, _ = load_checkpoint(out, self.checkpoint_models(), self.optimizers, self.schedulers)
        if saved.exists():
            before = json.loads(saved.read_text())
            changed = [k for k in settings if k not in RESUMABLE_CHANGES and before.get(k) != settings[k]]
            if changed:
                raise ValueError(
                    f"--resume: the run in {out} was started with different settings ({', '.join(changed)}); "
                    "resume with the same ones"
                )
        return step


def hash_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def _has_tokenizer(folder: Path | str) -> bool:
    return (Path(folder) / "tokenizer_config.json").exists()


@register_trainer("rloo", RLOOConfig, help="RLOO: K samples per prompt, leave-one-out baseline, token-level with dense rewards")
@register_trainer("remax", ReMaxConfig, help="ReMax: REINFORCE with the greedy response's return as baseline, no critic")
@register_trainer("ppo", PPOConfig, help="PPO with per-token rewards from any rewarder (value-head critic, GAE)")
def run(config: PPOConfig, name: str = "ppo") -> Path:
    """Train `name` (ppo, remax or rloo) and return the run folder (`OUT/final` holds the policy)."""
    return PPOTrainer(config, name).train()
