"""Preference optimisation with token-level guidance: DPO, SimPO, T-REG (DPO-REG, SimPO-REG),
TDPO1, TDPO2, TGDPO, SePO (docs/methods.md, "Preference losses").

One loop serves every method; the method picks a pure loss from
`tokenreward.losses.preference` and the inputs it needs:
- reference log-probs (all but SimPO / SePO), computed once before training and cached (for
  the world's pairs in `WORLD/preference_cache/`, for `--data` in
  `~/.cache/tokenreward/preference/`; in `OUT/cache/` when that is not writable), shared by
  every run on the same data and reference;
- full reference distributions each step (TDPO's sequence KL over the vocabulary);
- token rewards (T-REG: `contrastive`; TGDPO and SePO: `implicit`, the token reward of a
  DPO-trained `--guide-policy`; any registered rewarder via `--token-rewarder`), computed once
  per dataset and cached with the reference log-probs, projected onto the policy's tokens.

Data: TRL preference rows (`tokenreward.preference_data`), by default the world's
reward-split pairs. Output: `OUT/log.jsonl` (per step: `step`, `loss`, `reward_chosen`,
`reward_rejected`, `reward_margin`, `reward_accuracy`, `lr`, the method's own terms, and with
a world every `eval_every` steps `oracle_score`, the mean oracle score of sampled responses),
`OUT/data.json` (rows read, kept, dropped by reason; unusable rows are dropped and reported, or
stop the run with `--strict`), `OUT/checkpoints/` (exact resume with
`--resume`), `OUT/final/` (Hugging Face model, or with `--lora-r` its adapter, + tokenizer).
With `--lora-r` and no `--reference`, the reference is the policy's base model with the
adapters disabled (`tokenreward.lora`).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import torch

from tokenreward.encoding import prompts_as_chat
from tokenreward.errors import UserInputError
from tokenreward.logprobs import token_stats
from tokenreward.lora import reference_of, trainable_parameters
from tokenreward.losses.preference_methods import (
    METHOD_SPECIFIC_SETTINGS,
    PREFERENCE_METHODS,
    PairBatch,
    PreferenceMethod,
    PreferenceSettings,
)
from tokenreward.models import context_length, load_causal_lm, load_tokenizer
from tokenreward.preference_data import PreferenceData, prepare_preference_data
from tokenreward.trainers import register_trainer
from tokenreward.trainers.harness import (
    Optimization,
    RunConfig,
    batch_indices,
    derive_seed,
    make_run,
    with_adapters,
)
from tokenreward.trainers.loading import frozen_loading, trained_loading
from tokenreward.trainers.loop import run_steps
from tokenreward.trainers.oracle_curve import sampled_oracle_score
from tokenreward.trainers.preference_batches import cached_reference_logps, collate
from tokenreward.trainers.preference_inputs import Inputs, cache_directory, resolve_inputs, token_reward_inputs
from tokenreward.trainers.vocabulary import check_shared_vocabulary


@dataclass(kw_only=True)
class PreferenceConfig(RunConfig):
    """Preference optimisation on TRL-format pairs (docs/methods.md, "Preference losses")."""

    frozen_models: ClassVar[tuple[str, ...]] = ("reference", "token rewarder models", "guide policy")
    out: Path = field(metadata={"help": "output folder: run.json, log.jsonl, data.json, checkpoints/, final/"})
    world: str | None = field(
        default=None,
        metadata={
            "help": "world folder (default: the cached world); its reward-split pairs are the data, its SFT policy the start and reference"
        },
    )
    data: str | None = field(
        default=None,
        metadata={
            "help": "preference data instead of the world's: .jsonl/.json rows with prompt/chosen/rejected (plain or conversational)"
        },
    )
    policy: str | None = field(
        default=None, metadata={"help": "policy to train, a Hugging Face folder (default: the world's SFT policy)"}
    )
    reference: str | None = field(default=None, metadata={"help": "reference model (default: the starting policy)"})
    tokenizer: str | None = field(
        default=None, metadata={"help": "tokenizer (default: the world's, else the policy's folder)"}
    )
    steps: int = field(default=200, metadata={"help": "optimizer steps", "min": 1})
    batch_size: int = field(default=8, metadata={"help": "pairs per step (over all processes)", "min": 1})
    learning_rate: float = field(
        default=5e-5,
        metadata={"help": "AdamW learning rate (linear warm-up, then linear decay)", "gt": 0.0, "aliases": ["--lr"]},
    )
    warmup_ratio: float = field(
        default=0.1,
        metadata={"help": "fraction of the steps spent warming up the learning rate", "min": 0.0, "max": 1.0},
    )
    beta: float | None = field(
        default=None,
        metadata={"help": "the method's beta, > 0 (default 0.1; SimPO and SimPO-REG 2.0; SePO 1.0)", "gt": 0.0},
    )
    alpha: float | None = field(
        default=None,
        metadata={
            "help": "T-REG's regulariser weight (default 0.25), TDPO2's alpha (0.5), TGDPO's a (0.5); >= 0",
            "min": 0.0,
        },
    )
    gamma: float = field(default=1.0, metadata={"help": "SimPO's target reward margin"})
    sepo_ratio: float = field(
        default=0.3,
        metadata={"help": "SePO: fraction of tokens kept (top of chosen, bottom of rejected)", "gt": 0.0, "max": 1.0},
    )
    token_rewarder: str | None = field(
        default=None,
        metadata={
            "help": "token reward for dpo_reg/simpo_reg (default contrastive) and tgdpo/sepo (default implicit)"
        },
    )
    guide_policy: str | None = field(
        default=None,
        metadata={
            "help": "DPO-trained model whose implicit token reward guides tgdpo/sepo (e.g. OUT/final of `train dpo`)"
        },
    )
    reward_model: str | None = field(
        default=None, metadata={"help": "reward model, for token rewarders that need one (e.g. red)"}
    )
    prompt_split: str = field(
        default="rl", metadata={"help": "world split whose prompts the oracle evaluation samples"}
    )
    eval_every: int = field(
        default=25,
        metadata={
            "help": "with a world: log the oracle score of sampled responses every N steps (0: never)",
            "min": 0,
        },
    )
    eval_prompts: int = field(default=16, metadata={"help": "prompts sampled per evaluation", "min": 0})
    max_new_tokens: int | None = field(
        default=None, metadata={"help": "longest sampled response in tokens (default: the world's)", "min": 1}
    )
    save_every: int = field(
        default=50,
        metadata={"help": "checkpoint every N steps and after the last", "min": 1, "aliases": ["--checkpoint-every"]},
    )
    strict: bool = field(
        default=False,
        metadata={
            "help": "stop on unusable rows (empty response, chosen identical to rejected, too long) instead of dropping and counting them"
        },
    )

    @staticmethod
    def unused_settings(trainer: str, settings: Mapping[str, Any]) -> tuple[str, ...]:
        """The method-specific settings (`METHOD_SPECIFIC_SETTINGS`) that method `trainer` does not
        read (`settings` are the others given; a benchmark leaves these out of the method's run)."""
        return tuple(s for s in METHOD_SPECIFIC_SETTINGS if s not in PREFERENCE_METHODS.get(trainer).uses)


def refuse_unused_settings(config: PreferenceConfig, name: str) -> None:
    """A method-specific setting (`METHOD_SPECIFIC_SETTINGS`) away from its default for a method
    that does not read it is an error naming the flag, the method and the methods that use it."""
    defaults = {f.name: f.default for f in fields(config)}
    for setting in config.unused_settings(name, {}):
        if getattr(config, setting) != defaults[setting]:
            users = ", ".join(n for n, m in PREFERENCE_METHODS.items() if setting in m.uses)
            flag = "--" + setting.replace("_", "-")
            raise UserInputError(f"{flag}: {name} does not use it (used by: {users})")


def disable_dropout(model: torch.nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def learning_rate_factor(step: int, steps: int, warmup_ratio: float) -> float:
    warmup = max(1, math.ceil(warmup_ratio * steps))
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (steps - step) / max(1, steps - warmup))


def write_data_report(out: Path, name: str, report: dict[str, Any], source: str) -> None:
    """`OUT/data.json`: the rows read, kept and dropped by reason (a warning names the dropped)."""
    (out / "data.json").write_text(json.dumps(report, indent=2))
    if report["dropped"]:
        print(
            f"{name}: dropped {sum(report['dropped'].values())} of {report['rows']} rows of {source} "
            f"({', '.join(f'{n} with {reason}' for reason, n in report['dropped'].items())}); see {out / 'data.json'}",
            file=sys.stderr,
        )


def write_run_config(out: Path, method_name: str, config: PreferenceConfig, settings, rewarder: str | None) -> None:
    """`OUT/config.json`: the settings with the method's resolved beta, alpha and token rewarder."""
    resolved = {"beta": settings.beta, "alpha": settings.alpha, "token_rewarder": rewarder}
    (out / "config.json").write_text(
        json.dumps({"method": method_name, **asdict(config), **resolved}, indent=2, default=str)
    )


def report_unscored(out: Path, name: str, report: dict[str, Any], rewarder: str, unscored: list, pairs: int) -> None:
    """Record in `OUT/data.json` (and warn about) the responses the token rewarder could not score."""
    report["unscored_token_rewards"] = {"rewarder": rewarder, "responses": len(unscored), "first": unscored[:20]}
    (out / "data.json").write_text(json.dumps(report, indent=2))
    print(
        f"{name}: the {rewarder} rewarder could not score {len(unscored)} of {2 * pairs} responses "
        f"(their token rewards are 0), e.g. row {unscored[0]['row']} ({unscored[0]['side']}): {unscored[0]['reason']}",
        file=sys.stderr,
    )


def preference_loss_fn(
    method: PreferenceMethod,
    settings: PreferenceSettings,
    policy,
    reference,
    data: PreferenceData,
    pad_id: int,
    per_position,
):
    """The method's mean loss over a micro-batch of pairs and its metrics: the implicit rewards
    of chosen and rejected, their margin and accuracy, and the method's own terms."""
    device = next(policy.parameters()).device

    def loss_fn(indices: list[int]):
        tensors = {k: v.to(device) for k, v in collate(data, indices, pad_id, per_position).items()}
        stats = token_stats(policy, tensors["input_ids"], tensors["attention_mask"], reference=reference)
        batch = PairBatch.from_stacked(
            stats.logprobs,
            tensors["mask"],
            tensors["tokens"],
            tensors.get("reference"),
            tensors.get("rewards"),
            stats.kl,
        )
        result = method.loss(batch, settings)
        w, l = result.reward_chosen, result.reward_rejected
        return result.losses.mean(), {
            "reward_chosen": float(w.mean()),
            "reward_rejected": float(l.mean()),
            "reward_margin": float((w - l).mean()),
            "reward_accuracy": float((w > l).float().mean()),
            **{k: float(v.mean()) for k, v in result.metrics.items()},
        }

    return loss_fn


def linear_schedule(accelerator, folder, config: PreferenceConfig, policy) -> Optimization:
    """AdamW with a linear warm-up over `--warmup-ratio` of the steps, then a linear decay to 0."""
    optimizer = torch.optim.AdamW(trainable_parameters(policy), lr=config.learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: learning_rate_factor(s, config.steps, config.warmup_ratio)
    )
    return Optimization(accelerator, folder, config, policy, optimizer, scheduler, "policy")


def oracle_curve(config: PreferenceConfig, inputs: Inputs, training: Optimization, tokenizer):
    """With a world's evaluation prompts: the step's `oracle_score` (sampling seeded by (seed, step))."""
    if not inputs.eval_prompts:
        return None

    def evaluate(step: int) -> dict[str, float]:
        seed = derive_seed(config.seed, "evaluation", step)
        return {
            "oracle_score": sampled_oracle_score(
                training.unwrapped, tokenizer, inputs.eval_prompts, inputs.max_new_tokens, seed, config.chat_template
            )
        }

    return evaluate


def run(config: PreferenceConfig, name: str) -> None:
    """Train `name` (a registered preference method or an alias) on preference pairs into `config.out`."""
    method_name, method = PREFERENCE_METHODS.canonical(name), PREFERENCE_METHODS.get(name)
    rewarder_name = config.token_rewarder or method.needs.token_rewarder
    refuse_unused_settings(config, name)
    settings = method.settings(config.beta, config.alpha, config.gamma, config.sepo_ratio)
    accelerator, folder = make_run(config, {"method": method_name})
    if folder.finished:
        return
    out, main = folder.out, accelerator.is_main_process
    show, frozen = config.progress and main, frozen_loading(config, accelerator)
    inputs = resolve_inputs(config)
    tokenizer = load_tokenizer(inputs.tokenizer)
    policy = load_causal_lm(inputs.policy, loading=trained_loading(accelerator))
    check_shared_vocabulary(
        tokenizer, ("--policy", policy), {"--reference": config.reference, "--guide-policy": config.guide_policy}
    )
    disable_dropout(policy)
    policy = with_adapters(policy, config, "CAUSAL_LM")
    base_reference = reference_of(policy, config, config.reference)  # LoRA: the policy's base, no second copy
    rows = prompts_as_chat(inputs.rows, config.chat_template)
    data = prepare_preference_data(rows, tokenizer, inputs.source, context_length(policy), config.strict)
    report = data.report()
    if main:
        write_data_report(out, name, report, inputs.source)
        write_run_config(out, method_name, config, settings, rewarder_name)
    per_position: dict[str, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
    if method.needs.reference_logps:
        per_position["reference"] = cached_reference_logps(
            inputs.reference, data, tokenizer.pad_token_id, 4 * config.batch_size,
            cache_directory(inputs, out), frozen, show, main, base_reference,
        )  # fmt: skip
    reference_logits = None
    if method.needs.reference_logits:
        reference_logits = base_reference or load_causal_lm(inputs.reference, loading=frozen).eval()
    if method.needs.token_rewarder is not None:
        per_position["rewards"], unscored = token_reward_inputs(rewarder_name, config, data, inputs, out, show, frozen)
        if unscored and main:
            report_unscored(out, name, report, rewarder_name, unscored, len(data))
    training = linear_schedule(accelerator, folder, config, policy)
    loss_fn = preference_loss_fn(
        method, settings, training.model, reference_logits, data, tokenizer.pad_token_id, per_position
    )

    def train_step(step: int) -> dict[str, float]:
        return training.step(step, batch_indices(step, len(data), config.batch_size, config.seed), loss_fn)

    shown = ("loss", "reward_margin", "reward_accuracy", "oracle_score")
    evaluate = oracle_curve(config, inputs, training, tokenizer)
    run_steps(training, config.steps, train_step, name, shown, evaluate=evaluate, eval_every=config.eval_every)
    folder.finish(training.unwrapped, tokenizer)


for _name, _method in PREFERENCE_METHODS.items():
    register_trainer(_name, PreferenceConfig, help=_method.help)(run)
for _alias, _target in PREFERENCE_METHODS.aliases().items():
    register_trainer(_alias, PreferenceConfig, help=f"alias of {_target}: {PREFERENCE_METHODS.get(_target).help}")(run)
