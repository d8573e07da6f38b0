"""TRL's `GRPOTrainer` with token-level advantages from a tokenreward rewarder.

TRL generates and scores as usual; the rewarder is one of its reward functions
(`TokenRewardFunction`, listed first, named `tokenreward_<rewarder>`), so TRL's reward
logging covers it. That function scores every completion per token, aligned to the
generated `completion_ids` by character offsets, with tokenreward's EOS rule (the reward on
the token that completes the text moves to the last generated token, the EOS when there is
one) and returns each completion's return `R_i = sum_t r_it`. Other reward functions keep
working: their weighted sum lands on the last token, so `R_i` is TRL's own weighted reward.

The advantages TRL computed, `(R_i - mean_g R) / (std + 1e-4)` per completion, are then
replaced by `(B, T)` ones from a registered estimator (`tokenreward.losses.advantages`), with
`G_it = sum_{t' >= t} r_it'` the reward-to-go and `g` the prompt's `num_generations` samples:

- `baseline="group_mean"` (`grpo_return`): `A_it = (G_it - mean_g R) / (std R + eps)`, the std
  and eps as TRL's `scale_rewards` says (`trl_advantage_settings`);
- `baseline="leave_one_out"` (`rloo_return`): `A_it = G_it - mean_{j != i in g} R_j`.
- `baseline="gtpo" | "grpo_s" | "ktae"`: the estimators of the same names for 1/0 verifiable
  rewards (docs/methods.md), with the policy's entropies / the completion ids
  (`estimator_inputs`); pass the verifier as a reward function and `reward_weights` that zero
  the rewarder's (e.g. `[0.0, 1.0]`) so that `R_i` is the verifier's 1/0.

With a sparse reward `G_it = R_i` on every token, so `grpo_return` gives TRL's advantages back.
The loss (`_compute_loss`) already takes `(B, T)` advantages. Logged besides TRL's metrics:
`tokenreward/sequence_reward/mean` (the rewarder's holistic score) and
`tokenreward/token_reward/{mean,std,min,max}` over the generated tokens.

`peft_config` is taken as `GRPOTrainer` takes it (TRL wraps the policy; its KL reference is the
base with the adapters disabled): the rewarder scores text and reads no policy weights.
"""

from __future__ import annotations

from typing import Any

import torch
from trl import GRPOTrainer

from tokenreward.align import offsets_from_ids
from tokenreward.errors import InputTypeError, UserInputError
from tokenreward.generation import Generation, Generations
from tokenreward.gguf import resolve_model_source
from tokenreward.integrations.trl.estimator_inputs import VERIFIABLE, estimator_inputs, verifiable_settings
from tokenreward.losses.advantages import AdvantageBatch, AdvantageSettings, estimate_advantages
from tokenreward.rewards import Rewarder, TokenRewards, build_rewarder, check_rewarder_arguments
from tokenreward.trainers.ppo import policy_token_rewards

#: baseline name -> registered advantage estimator (the last three for 1/0 verifiable rewards)
BASELINES = {"group_mean": "grpo_return", "leave_one_out": "rloo_return", **{name: name for name in VERIFIABLE}}

#: TRL's `scale_rewards` -> how `grpo_return` divides (TRL adds 1e-4 to the std; "none" divides by nothing)
TRL_SCALE_REWARDS = {
    "group": AdvantageSettings(scale="group", eps=1e-4),
    "batch": AdvantageSettings(scale="batch", eps=1e-4),
    "none": AdvantageSettings(scale="none", eps=0.0),
}


def trl_advantage_settings(scale_rewards: str | bool) -> AdvantageSettings:
    """The `AdvantageSettings` that reproduce TRL's `scale_rewards` (True = "group", False = "none")."""
    key = {True: "group", False: "none"}.get(scale_rewards, scale_rewards)
    if key not in TRL_SCALE_REWARDS:
        raise UserInputError(
            f"scale_rewards must be 'group', 'batch' or 'none' (or True / False), got {scale_rewards!r}"
        )
    return TRL_SCALE_REWARDS[key]


def resolve_rewarder(rewarder: Rewarder | str | None, resources: dict[str, Any] | None) -> Rewarder:
    """A rewarder object, or one built by name from `resources` (models, tokenizers, options)."""
    if rewarder is None:
        raise UserInputError("pass `rewarder`: a tokenreward Rewarder, or a rewarder name with `rewarder_resources`")
    if isinstance(rewarder, str):
        checked = check_rewarder_arguments(rewarder, resources or {}, lambda key: f"rewarder_resources[{key!r}]")
        return build_rewarder(rewarder, **checked)
    if resources:
        raise UserInputError("`rewarder_resources` builds a rewarder by name; the rewarder given is already built")
    if not isinstance(rewarder, Rewarder):
        raise InputTypeError(
            f"`rewarder` must be a tokenreward Rewarder or a rewarder name, got {type(rewarder).__name__}"
        )
    return rewarder


class TokenRewardFunction:
    """A TRL reward function: per-token rewards of each completion (kept in `last` for the trainer)
    and, as TRL expects, one value per completion, their sum."""

    def __init__(self, rewarder: Rewarder, tokenizer=None):
        self.rewarder = rewarder
        self.tokenizer = tokenizer
        self.__name__ = f"tokenreward_{rewarder.name}"
        self.last: TokenRewards | None = None

    def token_rewards(self, prompts: list, completion_ids: list[list[int]]) -> TokenRewards:
        """The rewards on the generated tokens (`len(ids)` each, EOS rule applied) and the sequence rewards."""
        generations = Generations(
            [
                Generation([], list(ids), *offsets_from_ids(self.tokenizer, ids), finished=False)
                for ids in completion_ids
            ]
        )
        return policy_token_rewards(self.rewarder, prompts, generations)

    def __call__(self, prompts: list, completions: list, completion_ids: list[list[int]], **kwargs) -> list[float]:
        self.last = self.token_rewards(prompts, completion_ids)
        return [float(sum(self.last.token_rewards(i))) for i in range(len(self.last))]


def add_on_last_token(rewards: torch.Tensor, mask: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """`rewards` with `values[i]` added on row i's last real token."""
    last = mask.long().sum(-1).clamp_min(1) - 1
    return rewards.index_put((torch.arange(len(rewards), device=rewards.device), last), values, accumulate=True)


class TokenRewardGRPOTrainer(GRPOTrainer):
    """`GRPOTrainer` whose advantages are token-level (see the module docstring).

    `rewarder`: a tokenreward `Rewarder`, or a registered name built with `rewarder_resources`
    (e.g. `{"reward_model": "path", "tokenizer": "path"}` and the rewarder's options).
    `baseline`: "group_mean" (GRPO's, scaled by TRL's `scale_rewards`), "leave_one_out"
    (RLOO's; `scale_rewards` does not apply), or "gtpo", "grpo_s", "ktae" (verifiable rewards).
    `reward_funcs` (optional) are TRL's; with `reward_weights` in the config, the rewarder's
    weight comes first. Everything else is
    `GRPOTrainer`'s."""

    def __init__(
        self,
        model,
        rewarder: Rewarder | str | None = None,
        *,
        rewarder_resources: dict[str, Any] | None = None,
        baseline: str = "group_mean",
        reward_funcs=None,
        **kwargs,
    ):
        if baseline not in BASELINES:
            raise UserInputError(f"baseline must be one of {', '.join(BASELINES)}, got {baseline!r}")
        self.baseline = baseline
        self.token_reward_function = TokenRewardFunction(resolve_rewarder(rewarder, rewarder_resources))
        others = (
            [] if reward_funcs is None else list(reward_funcs) if isinstance(reward_funcs, list) else [reward_funcs]
        )
        classes = kwargs.get("reward_processing_classes")
        if classes is not None:  # TRL's list follows reward_funcs: the rewarder, first, needs none
            kwargs["reward_processing_classes"] = [None, *(classes if isinstance(classes, list) else [classes])]
        model = resolve_model_source(model)  # TRL loads a model folder or hub id itself, not a GGUF file
        super().__init__(model, reward_funcs=[self.token_reward_function, *others], **kwargs)
        if self.args.multi_objective_aggregation != "sum_then_normalize":
            raise UserInputError(
                "TokenRewardGRPOTrainer needs multi_objective_aggregation='sum_then_normalize': token rewards and the "
                "other reward functions add up to one return per completion"
            )
        self.advantage_settings = (
            verifiable_settings(self._tokenizer)
            if baseline in VERIFIABLE
            else trl_advantage_settings(self.scale_rewards)
        )
        self.token_reward_function.tokenizer = self._tokenizer
        self._rewards_per_func: torch.Tensor | None = None

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        self._rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        return self._rewards_per_func

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        policy_rewards = self.token_reward_function.last
        device, width = output["completion_ids"].device, output["completion_ids"].shape[1]
        local_rewards, local_mask = (
            policy_rewards.padded(width).to(device),
            policy_rewards.padded_mask(width).to(device),
        )
        sequence_rewards = policy_rewards.sequence_rewards

        token_rewards, mask = self.gather_rows(local_rewards, local_mask)
        weights = self.reward_weights.to(device)
        others = (self._rewards_per_func[:, 1:] * weights[1:]).nansum(dim=1)
        rewards = add_on_last_token(token_rewards * weights[0], mask, others)
        group = torch.arange(len(rewards), device=device) // group_size
        extra = estimator_inputs(self, output, BASELINES[self.baseline])
        advantages, _ = estimate_advantages(
            BASELINES[self.baseline], AdvantageBatch(rewards, mask, group=group, **extra), self.advantage_settings
        )

        start = self.accelerator.process_index * len(policy_rewards)
        output["advantages"] = advantages[start : start + len(policy_rewards), :width]
        self.log_token_rewards(
            mode, advantages, token_rewards[mask], self.accelerator.gather(sequence_rewards.to(device))
        )
        return output

    def gather_rows(self, rewards: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every process's rows, in TRL's order (process 0's first), padded to one width."""
        rewards = self.accelerator.pad_across_processes(rewards, dim=1)
        mask = self.accelerator.pad_across_processes(mask, dim=1)
        return self.accelerator.gather(rewards), self.accelerator.gather(mask)

    def log_token_rewards(self, mode: str, advantages, tokens, sequence_rewards) -> None:
        """The rewarder's metrics (its own token rewards, unweighted), and the completions table's
        advantage column set to `A_i1`."""
        metrics = self._metrics[mode]
        metrics["tokenreward/sequence_reward/mean"].append(sequence_rewards.mean().item())
        metrics["tokenreward/token_reward/mean"].append(tokens.mean().item())
        metrics["tokenreward/token_reward/std"].append(tokens.std().item() if tokens.numel() > 1 else 0.0)
        metrics["tokenreward/token_reward/min"].append(tokens.min().item())
        metrics["tokenreward/token_reward/max"].append(tokens.max().item())
        logged = self._logs["advantages"]
        for _ in range(min(len(advantages), len(logged))):
            logged.pop()
        logged.extend(advantages[:, 0].tolist())
