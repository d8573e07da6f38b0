"""Token-level preference losses as TRL `DPOTrainer` subclasses (docs/methods.md, "Preference losses").

| trainer | config | loss | token input |
|---|---|---|---|
| `TRegDPOTrainer` | `TRegDPOConfig` (`alpha = 0.25`) | `L_DPO + alpha sg(w) (L_REG(y_w) + L_REG(y_l))` | contrastive rewards of the reference |
| `TDPOTrainer` | `TDPOConfig` (`tdpo_variant = "tdpo2"`, `alpha = 0.5`) | DPO margin minus the sequence-KL difference | the reference's distributions |
| `TGDPOTrainer` | `TGDPOConfig` (`alpha = 0.5`, the paper's `a`) | DPO with weights `beta (1 +- a beta rho_t)` | implicit reward of `guide_policy` |
| `SePOTrainer` | `SePOConfig` (`beta = 1`, `sepo_ratio = 0.3`) | `-log sigma(beta (mean_{S_w} log pi - mean_{S_l} log pi))` | implicit reward of `guide_policy` |

Datasets are TRL's (standard or conversational, explicit or implicit prompt) and are prepared
by `DPOTrainer` itself; each row then gains per-completion-token columns (`*_token_rewards`,
`*_response_tokens`: which completion tokens belong to the response text, not the EOS or a
template's end of turn), computed once with the method's token rewarder (or the `token_rewarder`
object given) on tokenreward's encoding of the pair, which must give TRL's token ids. The loss
is the registered one (`PREFERENCE_METHODS`) that tokenreward's own preference trainer computes, on its chunked per-token
log-probs (and TDPO's per-token KL) of the policy and of TRL's reference model
(`tokenreward.logprobs`); TRL's metrics `rewards/*` and `logps/*`
are logged, with the method's own terms under `<method>/...`.

A `peft_config` is taken as `DPOTrainer` takes it: TRL wraps the policy, only the adapters (and
`modules_to_save`) train, and without a `ref_model` the reference is the policy with its adapters
disabled (`disable_adapter()`), both in the loss and for the token rewarder's `reference`; the
token columns are therefore computed once the trainer holds its models. TDPO's KL reads the
reference's logits and so needs a `ref_model` with adapters.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import torch
from accelerate.utils import is_peft_model
from trl import DPOConfig, DPOTrainer
from trl.trainer.utils import use_adapter

from tokenreward.errors import InputTypeError, UserInputError
from tokenreward.gguf import resolve_model_source
from tokenreward.integrations.trl.preference_configs import SePOConfig, TDPOConfig, TGDPOConfig, TRegDPOConfig
from tokenreward.logprobs import token_logprobs, token_stats
from tokenreward.losses.preference_methods import PREFERENCE_METHODS, PairBatch, PreferenceSettings
from tokenreward.preference_data import PreferenceData, encode_response, pair_token_rewards
from tokenreward.rewards import Rewarder, rewarder_requirements

logger = logging.getLogger(__name__)

TOKEN_COLUMNS = ("token_rewards", "response_tokens")


def check_supported(args: DPOConfig, trainer: str) -> None:
    """Refuse `DPOConfig` settings that select TRL's own loss machinery, which these trainers replace."""
    problems = []
    if list(args.loss_type) != ["sigmoid"]:
        problems.append(f"loss_type={args.loss_type} (TRL's own DPO losses)")
    if args.precompute_ref_log_probs:
        problems.append("precompute_ref_log_probs=True (the loss needs the reference per token)")
    if args.ld_alpha is not None:
        problems.append("ld_alpha")
    if args.use_weighting:
        problems.append("use_weighting=True")
    if args.f_divergence_type != "reverse_kl":
        problems.append(f"f_divergence_type={args.f_divergence_type!r}")
    if problems:
        raise UserInputError(
            f"{trainer} computes its own loss; leave these DPOConfig settings at their defaults: {', '.join(problems)}"
        )


def method_settings(method, args) -> PreferenceSettings:
    """The registered method's settings from the config (the method's own defaults live in the config)."""
    alpha = getattr(args, "alpha", None) if method.alpha is not None else None
    return method.settings(beta=args.beta, alpha=alpha, sepo_ratio=getattr(args, "sepo_ratio", 0.3))


def completion_frame(values: torch.Tensor, completion_start: int, prompt_length: int, length: int) -> list[float]:
    """Values given from tokenreward's `completion_start` on, re-indexed from TRL's prompt length."""
    full = torch.zeros(length)
    full[completion_start:] = values
    return full[prompt_length:].tolist()


def strip_added_eos(prompt, response, eos_token: str | None):
    """The response before TRL appended the EOS text to it (plain rows only)."""
    if isinstance(prompt, str) and isinstance(response, str) and eos_token and response.endswith(eos_token):
        return response[: -len(eos_token)]
    return response


@dataclass
class TokenColumnsCollator:
    """TRL's preference collator plus the per-token columns, placed on the padded `[2B, L]`
    input positions (chosen rows, then rejected) and truncated as the base collator truncates."""

    base: Any

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        out = self.base(examples)
        width = out["input_ids"].shape[1]
        max_length = getattr(self.base, "max_length", None)
        keep_end = getattr(self.base, "truncation_mode", "keep_start") == "keep_end"
        for column in TOKEN_COLUMNS:
            rows = [
                [0.0] * len(e["prompt_ids"]) + list(e[f"{side}_{column}"])
                for side in ("chosen", "rejected")
                for e in examples
            ]
            if max_length is not None:
                rows = [row[-max_length:] if keep_end else row[:max_length] for row in rows]
            tensor = torch.zeros(len(rows), width)
            for i, row in enumerate(rows):
                tensor[i, : len(row)] = torch.tensor(row, dtype=torch.float32)
            out[column] = tensor
        return out


class TokenLevelDPOTrainer(DPOTrainer):
    """Shared machinery; subclasses name their config class and tokenreward method."""

    config_class: type[DPOConfig] = DPOConfig

    def method_name(self, args) -> str:
        raise NotImplementedError

    def __init__(self, model, ref_model=None, args=None, *, token_rewarder: Rewarder | None = None, **kwargs):
        name = type(self).__name__
        if args is None:
            args = self.config_class(output_dir=f"{name}-output")
        if not isinstance(args, self.config_class):
            raise InputTypeError(f"{name} needs a {self.config_class.__name__}, got {type(args).__name__}")
        check_supported(args, name)
        self.method = self.method_name(args)
        self.preference = PREFERENCE_METHODS.get(self.method)
        adapters = kwargs.get("peft_config") is not None or (not isinstance(model, str) and is_peft_model(model))
        if adapters and ref_model is None and self.preference.needs.reference_logits:
            raise UserInputError(
                f"{name} with PEFT adapters needs a ref_model: {self.method}'s KL reads the reference's logits"
            )
        self.settings = method_settings(self.preference, args)
        self.uses_token_rewards = self.preference.needs.token_rewarder is not None
        rewarder_name = getattr(args, "token_rewarder", None)
        needs_guide = (
            self.uses_token_rewards and token_rewarder is None and "policy" in rewarder_requirements(rewarder_name)
        )
        if needs_guide and getattr(args, "guide_policy", None) is None:
            raise UserInputError(
                f"{name}: the {rewarder_name} token rewarder reads a DPO-trained model: set guide_policy in the config"
            )
        model, ref_model = (
            resolve_model_source(model),
            resolve_model_source(ref_model),
        )  # TRL loads a folder, not a GGUF
        self._token_rewarder = token_rewarder
        self._holds_models = False
        super().__init__(model, ref_model, args, **kwargs)
        self._holds_models = True
        self.data_collator = TokenColumnsCollator(self.data_collator)
        if self.train_dataset is not None:
            self.train_dataset = self.add_token_columns(self.train_dataset, self.processing_class, args, "train")
        if isinstance(self.eval_dataset, dict):
            self.eval_dataset = {
                key: self.add_token_columns(data, self.processing_class, args, key)
                for key, data in self.eval_dataset.items()
            }
        elif self.eval_dataset is not None:
            self.eval_dataset = self.add_token_columns(self.eval_dataset, self.processing_class, args, "eval")

    def reference(self):
        """TRL's reference model and the context to call it in: `ref_model`, else (a PEFT policy) the
        policy itself with its adapters disabled (`disable_adapter()`), or its frozen "ref" adapter
        when TRL made one for a PeftModel given without `peft_config`."""
        if self.ref_model is not None or not is_peft_model(self.model):
            return self.ref_model, contextlib.nullcontext()
        unwrapped = self.accelerator.unwrap_model(self.model)
        return self.model, use_adapter(unwrapped, "ref" if "ref" in unwrapped.peft_config else None)

    # --- data -------------------------------------------------------------------------

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        extra = [f"{side}_{column}" for side in ("chosen", "rejected") for column in TOKEN_COLUMNS]
        self._signature_columns = [*self._signature_columns, *(c for c in extra if c not in self._signature_columns)]

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        if not hasattr(dataset, "add_column"):
            raise UserInputError(
                f"{type(self).__name__} needs a map-style Dataset (its rows gain token columns), not an IterableDataset"
            )
        if not self._holds_models:  # TRL prepares datasets before it holds the (PEFT-wrapped) models
            return dataset
        return self.add_token_columns(dataset, processing_class, args, dataset_name)

    def add_token_columns(self, dataset, processing_class, args, dataset_name):
        """The dataset with the per-completion-token columns (computed with TRL's reference model)."""
        if "chosen_token_rewards" in dataset.column_names:  # prepared before (evaluate() re-prepares its dataset)
            return dataset
        tokenizer = getattr(processing_class, "tokenizer", processing_class)
        data = self.encode_rows(dataset, tokenizer, dataset_name)
        columns = {f"{side}_response_tokens": [] for side in ("chosen", "rejected")}
        rewards = self.token_reward_rows(data, tokenizer, args, dataset_name)
        for side, encoded in (("chosen", data.chosen), ("rejected", data.rejected)):
            columns[f"{side}_token_rewards"] = [
                completion_frame(values, enc.completion_start, len(row["prompt_ids"]), len(enc.input_ids))
                for values, enc, row in zip(rewards[side], encoded, dataset)
            ]
            columns[f"{side}_response_tokens"] = [
                completion_frame(
                    enc.on_completion([1.0] * len(enc.token_positions)),
                    enc.completion_start,
                    len(row["prompt_ids"]),
                    len(enc.input_ids),
                )
                for enc, row in zip(encoded, dataset)
            ]
        for column, values in columns.items():
            dataset = dataset.add_column(column, values)
        return dataset

    def encode_rows(self, dataset, tokenizer, dataset_name: str) -> PreferenceData:
        """tokenreward's encoding of every row, checked against the token ids TRL prepared."""
        data = PreferenceData(dataset_name, [], [], [], list(range(len(dataset))), len(dataset))
        for i, row in enumerate(dataset):
            data.prompts.append(row["prompt"])
            for side, encoded in (("chosen", data.chosen), ("rejected", data.rejected)):
                enc = encode_response(
                    tokenizer, row["prompt"], strip_added_eos(row["prompt"], row[side], tokenizer.eos_token)
                )
                if enc.input_ids != list(row["prompt_ids"]) + list(row[f"{side}_ids"]):
                    raise UserInputError(
                        f"{dataset_name} dataset, row {i}: TRL's tokens of prompt + {side} differ from tokenreward's "
                        "encoding of the same text, so token rewards cannot be placed on them"
                    )
                encoded.append(enc)
        return data

    def token_reward_rows(
        self, data: PreferenceData, tokenizer, args, dataset_name: str
    ) -> dict[str, list[torch.Tensor]]:
        """The method's token rewards on tokenreward's completion positions (zeros when it uses none)."""
        if not self.uses_token_rewards:
            return {
                side: [torch.zeros(enc.completion_length) for enc in encoded]
                for side, encoded in (("chosen", data.chosen), ("rejected", data.rejected))
            }
        reference, reference_context = self.reference()
        resources = {
            "reference": reference,
            "tokenizer": tokenizer,
            "policy": getattr(args, "guide_policy", None),
            **(args.rewarder_options or {}),
        }
        with reference_context:
            chosen, rejected, unscored = pair_token_rewards(
                args.token_rewarder, resources, data, progress=False, rewarder=self._token_rewarder
            )
        if unscored:
            logger.warning(
                "%s dataset: the %s rewarder could not score %d responses (their token rewards are 0), e.g. row %s (%s): %s",
                dataset_name,
                args.token_rewarder,
                len(unscored),
                unscored[0]["row"],
                unscored[0]["side"],
                unscored[0]["reason"],
            )
        return {"chosen": chosen, "rejected": rejected}

    # --- loss -------------------------------------------------------------------------

    def _compute_loss(self, model, inputs, return_outputs):
        mode = "train" if self.model.training else "eval"
        needs = self.preference.needs
        input_ids, attention_mask = inputs["input_ids"], inputs["attention_mask"]
        stats = token_stats(
            model, input_ids, attention_mask, reference=self.ref_model if needs.reference_logits else None
        )
        reference = None
        if needs.reference_logps:
            reference_model, reference_context = self.reference()
            with torch.no_grad(), reference_context:
                reference = token_logprobs(reference_model, input_ids, attention_mask)
        batch = PairBatch.from_stacked(
            stats.logprobs, inputs["completion_mask"][:, 1:].float(), inputs["response_tokens"][:, 1:].bool(), reference,
            inputs["token_rewards"][:, 1:] if needs.token_rewarder is not None else None, stats.kl,
        )  # fmt: skip
        result = self.preference.loss(batch, self.settings)
        loss = result.losses.mean()
        sequence_logps = [(lp * m).sum(-1).detach() for lp, m in zip(batch.logps, batch.mask)]
        self.log_pair_metrics(mode, result.reward_chosen, result.reward_rejected, sequence_logps, result.metrics)
        if return_outputs:  # the logits for `compute_metrics`, unshifted as in DPOTrainer
            with torch.no_grad():
                return loss, model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        return loss

    def log_pair_metrics(
        self, mode: str, reward_chosen, reward_rejected, sequence_logps, extra: dict[str, torch.Tensor]
    ) -> None:
        """TRL's DPO reward metrics (here each method's own implicit reward) and the method's terms."""
        gather = self.accelerator.gather
        metrics = self._metrics[mode]
        chosen, rejected = gather(reward_chosen), gather(reward_rejected)
        metrics["rewards/chosen"].append(chosen.mean().item())
        metrics["rewards/rejected"].append(rejected.mean().item())
        metrics["rewards/accuracies"].append((chosen > rejected).float().mean().item())
        metrics["rewards/margins"].append((chosen - rejected).mean().item())
        metrics["logps/chosen"].append(gather(sequence_logps[0]).mean().item())
        metrics["logps/rejected"].append(gather(sequence_logps[1]).mean().item())
        for key, value in extra.items():
            metrics[f"{self.method}/{key}"].append(gather(value).mean().item())


class TRegDPOTrainer(TokenLevelDPOTrainer):
    """T-REG on DPO: `L_DPO + alpha sg(w) (L_REG(y_w) + L_REG(y_l))`, `L_REG(y) = -sum_t r^_t log pi(y_t|.)`."""

    config_class = TRegDPOConfig

    def method_name(self, args) -> str:
        return "dpo_reg"


class TDPOTrainer(TokenLevelDPOTrainer):
    """TDPO1 / TDPO2: the DPO margin corrected by the sequence KL to the reference over the vocabulary."""

    config_class = TDPOConfig

    def method_name(self, args) -> str:
        if args.tdpo_variant not in ("tdpo1", "tdpo2"):
            raise UserInputError(f"tdpo_variant must be 'tdpo1' or 'tdpo2', got {args.tdpo_variant!r}")
        return args.tdpo_variant


class TGDPOTrainer(TokenLevelDPOTrainer):
    """TGDPO: DPO with per-token weights from a DPO model's implicit token reward."""

    config_class = TGDPOConfig

    def method_name(self, args) -> str:
        return "tgdpo"


class SePOTrainer(TokenLevelDPOTrainer):
    """SePO: contrast the top / bottom `sepo_ratio` tokens by implicit token reward (reference-free loss)."""

    config_class = SePOConfig

    def method_name(self, args) -> str:
        return "sepo"
