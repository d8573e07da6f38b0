"""The `reward.tokenreward.*` block of a verl config, read and checked.

Two ways to score:
- in process: `rewarder` (a registered tokenreward rewarder) plus that rewarder's own
  constructor arguments as keys (`reward_model`, `tokenizer`, `beta_c`, `keep_sum`, `device`,
  `batch_size`, `loading.dtype`, ...); `reward_model` defaults to verl's
  `reward.reward_model.model_path`;
- through a tokenreward server: `server_url` (and `combine`, how the server's token rewards
  fold onto the policy's tokens: `sum` or `mean`); the rewarder is the server's.

A key that neither way knows is an error that names it.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tokenreward.errors import InputTypeError, UserInputError, flag_spelling
from tokenreward.rewards import REWARDERS, check_rewarder_arguments, rewarder_requirements

PREFIX = "reward.tokenreward"
#: keys of the server way
SERVER_KEYS = ("server_url", "combine", "batch_size")


@dataclass(frozen=True)
class TokenRewardSettings:
    rewarder: str | None = None
    resources: dict[str, Any] = field(default_factory=dict)  # constructor arguments of the rewarder
    server_url: str | None = None
    combine: str = "sum"
    batch_size: int = 8


def rewarder_arguments(name: str) -> list[str]:
    """The constructor arguments of rewarder `name` (every one may be set from the config)."""
    params = list(inspect.signature(REWARDERS.get(name).__init__).parameters.values())[1:]
    return [p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]


def as_plain_dict(block: Any) -> dict[str, Any]:
    """An OmegaConf node (or a mapping, or None) as a plain dict."""
    if block is None:
        return {}
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(block, DictConfig):
            return dict(OmegaConf.to_container(block, resolve=True))
    except ImportError:
        pass
    if not isinstance(block, Mapping):
        raise InputTypeError(f"{PREFIX}: expected a mapping of keys, got {type(block).__name__}")
    return dict(block)


def read_settings(block: Any, default_reward_model: str | None = None) -> TokenRewardSettings:
    """Check the `reward.tokenreward` block and split it into our settings and the rewarder's arguments;
    `reward_model`, when the rewarder takes one and the block has none, is `default_reward_model`
    (verl's `reward.reward_model.model_path`)."""
    values = as_plain_dict(block)
    if values.get("server_url"):
        return _server_settings(values)
    name = values.pop("rewarder", None)
    if not name:
        raise UserInputError(
            f"{PREFIX}.rewarder: required (e.g. +{PREFIX}.rewarder=red), or {PREFIX}.server_url for a tokenreward server"
        )
    try:
        accepted = rewarder_arguments(name)
    except KeyError as err:
        raise UserInputError(f"{PREFIX}.rewarder: {err.args[0]}") from err
    for key in values:
        if key not in accepted:
            raise UserInputError(
                f"{PREFIX}.{key}: unknown key for rewarder {name!r}; it accepts {', '.join(accepted)}"
            )
    if "loading" in values:
        values["loading"] = model_loading(values["loading"])
    if "reward_model" in accepted and values.get("reward_model") is None and default_reward_model:
        values["reward_model"] = default_reward_model
    batch_size = _positive_int(values.get("batch_size", 8), "batch_size")
    missing = [r for r in rewarder_requirements(name) if values.get(r) is None]
    if missing:
        raise UserInputError(f"{', '.join(f'{PREFIX}.{m}' for m in missing)}: required by rewarder {name!r}")
    values = check_rewarder_arguments(name, values, lambda key: f"{PREFIX}.{key}")
    return TokenRewardSettings(rewarder=name, resources=values, batch_size=batch_size)


def model_loading(block: Any):
    """`reward.tokenreward.loading.*` (dtype, device, device_map, max_batch_tokens) as a
    `ModelLoading`; a bad value is an error naming its key (not the CLI flag of the same setting)."""
    from dataclasses import fields

    from tokenreward.config import validate_ranges
    from tokenreward.models import ModelLoading

    known = [f.name for f in fields(ModelLoading)]
    if not isinstance(block, Mapping):
        raise UserInputError(f"{PREFIX}.loading: expected a mapping of {', '.join(known)}, got {block!r}")
    for key in block:
        if key not in known:
            raise UserInputError(f"{PREFIX}.loading.{key}: unknown key; it accepts {', '.join(known)}")
    try:
        loading = ModelLoading(**block)
        validate_ranges(loading)
    except ValueError as err:  # name the verl key (ModelLoading: `dtype=`, validate_ranges: `--dtype`)
        text = flag_spelling(str(err), known, lambda name: f"{PREFIX}.loading.{name}")
        raise UserInputError(
            re.sub(r"--([a-z-]+)", lambda m: f"{PREFIX}.loading.{m[1].replace('-', '_')}", text)
        ) from None
    return loading


def _server_settings(values: dict[str, Any]) -> TokenRewardSettings:
    for key in values:
        if key not in SERVER_KEYS:
            raise UserInputError(
                f"{PREFIX}.{key}: unknown key with {PREFIX}.server_url; it accepts {', '.join(SERVER_KEYS)} "
                "(the rewarder and its options are the server's)"
            )
    combine = values.get("combine", "sum")
    if combine not in ("sum", "mean"):
        raise UserInputError(f"{PREFIX}.combine: must be 'sum' or 'mean', got {combine!r}")
    return TokenRewardSettings(
        server_url=str(values["server_url"]),
        combine=combine,
        batch_size=_positive_int(values.get("batch_size", 8), "batch_size"),
    )


def _positive_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserInputError(f"{PREFIX}.{key}: must be a positive integer, got {value!r}")
    return value
