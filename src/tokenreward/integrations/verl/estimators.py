"""Token-level advantage estimators for verl (`algorithm.adv_estimator=tokenreward_rloo|tokenreward_grpo|...`).

Both call the registered entries of `tokenreward.losses.advantages`, with `G_it` the
reward-to-go of token t of sample i and `R_j` the return of sample j, grouped by verl's `uid`
array (`index`; rows of one prompt need not be adjacent):

- `tokenreward_rloo` (`rloo_return`): `A_it = G_it - mean_{j != i, same uid} R_j`; a prompt
  with one sample gets baseline 0, as verl's `rloo` does.
- `tokenreward_grpo` (`grpo_return`): `A_it = (G_it - mean_uid R) / (std_uid R + 1e-6)`, the
  unbiased std (or no division with `algorithm.norm_adv_by_std_in_grpo=False`); a prompt with
  one sample gets mean 0 and std 1, as verl's `grpo` does.

For 1/0 verifiable rewards, three more take their extra input from keyword arguments
(`tokenreward.losses.entropy_credit`, `tokenreward.losses.key_tokens`; docs/methods.md):

- `tokenreward_gtpo` / `tokenreward_grpo_s` (`gtpo` / `grpo_s`): need the rollout policy's
  per-token entropies, `entropys=` `[B, T]`;
- `tokenreward_ktae` (`ktae`): needs the response token ids, `responses=` `[B, T]`.

verl 0.9's `compute_advantage` passes registered estimators only `token_level_rewards`,
`response_mask`, `index` and `config` (and the whole `batch` only to `gdpo`), and its trainer
drops the `entropys` of the old-log-prob pass after logging them: a run needs a
`compute_advantage` that forwards `data.batch["entropys"]` / `data.batch["responses"]` (or the
`batch` itself). Without them these estimators stop with an error that says so. Settings of
`AdvantageSettings` (e.g. `gtpo_alpha`, `success_threshold`) come from
`algorithm.tokenreward_advantage` when the config has it.

With a sparse reward (all of `R_i` on the last token) `G_it = R_i` on every token and these
are verl's `rloo` / `grpo`. verl's own `grpo`, `rloo`, `opo`, `gpg`, ... sum
`token_level_rewards` per sequence first, so a dense reward that sums to the reward model's
score trains exactly like the sparse one there: `dense_with_sequence_estimator` says so.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tokenreward.errors import UserInputError
from tokenreward.losses.advantages import AdvantageBatch, AdvantageSettings, estimate_advantages

#: verl estimators that start from `token_level_rewards.sum(dim=-1)`
SEQUENCE_SUMMING = frozenset(
    {
        "grpo",
        "grpo_vectorized",
        "grpo_passk",
        "rloo",
        "rloo_vectorized",
        "opo",
        "gpg",
        "reinforce_plus_plus_baseline",
        "gdpo",
    }
)
#: rewarders whose rewards are one number on the last token (nothing to lose by summing)
SEQUENCE_REWARDERS = frozenset({"sparse"})
TOKEN_ESTIMATORS = ("tokenreward_rloo", "tokenreward_grpo", "gae")
#: verl name -> (registered estimator, AdvantageBatch field, the verl batch keys it may come from: the
#: legacy trainer's old-log-prob pass names the entropies `entropys`, the v1 trainer `entropy`)
VERIFIABLE_ESTIMATORS = {
    "tokenreward_gtpo": ("gtpo", "entropy", ("entropys", "entropy")),
    "tokenreward_grpo_s": ("grpo_s", "entropy", ("entropys", "entropy")),
    "tokenreward_ktae": ("ktae", "token_ids", ("responses",)),
}


def group_ids(index: Any, rows: int) -> torch.Tensor:
    """verl's uid array (any hashable ids) as integer group ids `[rows]`."""
    if index is None:
        raise UserInputError("tokenreward advantage estimators group samples by uid; the batch has no 'uid' array")
    ids = np.asarray(index, dtype=object).reshape(-1)
    if len(ids) != rows:
        raise UserInputError(f"uid array has {len(ids)} entries for {rows} rows")
    _, inverse = np.unique(ids.astype(str), return_inverse=True)
    return torch.as_tensor(inverse.reshape(-1), dtype=torch.long)


def _estimate(name: str, token_level_rewards, response_mask, index, settings: AdvantageSettings):
    batch = AdvantageBatch(
        token_level_rewards, response_mask.bool(), group=group_ids(index, token_level_rewards.shape[0])
    )
    advantages, _ = estimate_advantages(name, batch, settings)
    advantages = advantages.to(token_level_rewards.dtype)
    return advantages, advantages  # verl's critic-free estimators return the advantages as returns


def tokenreward_rloo(token_level_rewards, response_mask, index=None, config=None, **kwargs):
    """`A_it = G_it - mean_{j != i, same uid} R_j` (see the module docstring)."""
    return _estimate("rloo_return", token_level_rewards, response_mask, index, AdvantageSettings())


def tokenreward_grpo(token_level_rewards, response_mask, index=None, config=None, **kwargs):
    """`A_it = (G_it - mean_uid R) / (std_uid R + 1e-6)` (see the module docstring)."""
    normalise = True if config is None else bool(config.get("norm_adv_by_std_in_grpo", True))
    settings = AdvantageSettings(scale="group" if normalise else "none", eps=1e-6)
    return _estimate("grpo_return", token_level_rewards, response_mask, index, settings)


def advantage_settings(config) -> AdvantageSettings:
    """`AdvantageSettings` from `algorithm.tokenreward_advantage` (a mapping of its fields), if given."""
    given = None if config is None else config.get("tokenreward_advantage", None)
    if not given:
        return AdvantageSettings()
    fields = dict(given)
    unknown = sorted(set(fields) - set(AdvantageSettings.__dataclass_fields__))
    if unknown:
        raise UserInputError(f"algorithm.tokenreward_advantage: unknown setting(s) {', '.join(unknown)}")
    return AdvantageSettings(**{k: tuple(v) if isinstance(v, list | tuple) else v for k, v in fields.items()})


def _verifiable(verl_name: str, token_level_rewards, response_mask, index, config, kwargs):
    name, field, keys = VERIFIABLE_ESTIMATORS[verl_name]
    given = kwargs.get("batch")
    found = [kwargs[k] for k in keys if kwargs.get(k) is not None]
    found += [given[k] for k in keys if given is not None and k in given.keys()]
    if not found:
        raise UserInputError(
            f"algorithm.adv_estimator={verl_name} needs data.batch[{keys[0]!r}] passed as {keys[0]}=..., which "
            "verl's compute_advantage does not pass to registered estimators (see tokenreward.integrations.verl.estimators)"
        )
    extra = found[0]
    batch = AdvantageBatch(
        token_level_rewards, response_mask.bool(), group=group_ids(index, token_level_rewards.shape[0])
    )
    setattr(batch, field, extra.to(token_level_rewards.device))
    advantages, _ = estimate_advantages(name, batch, advantage_settings(config))
    advantages = advantages.to(token_level_rewards.dtype)
    return advantages, advantages


def tokenreward_gtpo(token_level_rewards, response_mask, index=None, config=None, **kwargs):
    """GTPO's entropy-shaped token advantages (`gtpo`); needs `entropys=` (see the module docstring)."""
    return _verifiable("tokenreward_gtpo", token_level_rewards, response_mask, index, config, kwargs)


def tokenreward_grpo_s(token_level_rewards, response_mask, index=None, config=None, **kwargs):
    """GRPO-S's entropy-shaped sequence advantages (`grpo_s`); needs `entropys=`."""
    return _verifiable("tokenreward_grpo_s", token_level_rewards, response_mask, index, config, kwargs)


def tokenreward_ktae(token_level_rewards, response_mask, index=None, config=None, **kwargs):
    """KTAE's GRPO advantage plus key-token importance (`ktae`); needs `responses=`."""
    return _verifiable("tokenreward_ktae", token_level_rewards, response_mask, index, config, kwargs)


def register() -> None:
    """Register every estimator with verl's `register_adv_est` (idempotent)."""
    from verl.trainer.ppo.core_algos import register_adv_est

    register_adv_est("tokenreward_rloo")(tokenreward_rloo)
    register_adv_est("tokenreward_grpo")(tokenreward_grpo)
    register_adv_est("tokenreward_gtpo")(tokenreward_gtpo)
    register_adv_est("tokenreward_grpo_s")(tokenreward_grpo_s)
    register_adv_est("tokenreward_ktae")(tokenreward_ktae)


def dense_with_sequence_estimator(rewarder: str | None, estimator: Any) -> str | None:
    """The warning for a dense rewarder paired with an estimator that sums rewards per sequence, else None."""
    name = getattr(estimator, "value", estimator)
    if rewarder in SEQUENCE_REWARDERS or name not in SEQUENCE_SUMMING:
        return None
    return (
        f"algorithm.adv_estimator={name} sums token_level_rewards per sequence, so the per-token rewards of "
        f"rewarder {rewarder or '(the server)'!r} train exactly like one score per response; use "
        f"{', '.join(TOKEN_ESTIMATORS)} to keep the token credit"
    )
