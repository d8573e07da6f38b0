"""The `DPOConfig` subclasses of tokenreward's TRL preference trainers
(`tokenreward.integrations.trl.preference`): each method's defaults (docs/methods.md) and its
token rewarder, checked when the config is built."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from trl import DPOConfig

from tokenreward.errors import UserInputError
from tokenreward.rewards import REWARDERS, check_rewarder_arguments


@dataclass
class RewarderDPOConfig(DPOConfig):
    """A `DPOConfig` whose method reads a token rewarder: `token_rewarder` and its
    `rewarder_options`, checked when the config is built."""

    _VALID_DICT_FIELDS: ClassVar[list[str]] = [
        *DPOConfig._VALID_DICT_FIELDS,
        "rewarder_options",
    ]  # parsed from JSON like TRL's dicts

    token_rewarder: str = field(default="implicit", metadata={"help": "registered token rewarder (default implicit)"})
    rewarder_options: dict | str | None = field(
        default=None,
        metadata={"help": "extra resources and options for the rewarder (a dict, or JSON on the command line)"},
    )

    def __post_init__(self):
        super().__post_init__()
        check_rewarder_options(self)


@dataclass
class GuidedDPOConfig(RewarderDPOConfig):
    """A `RewarderDPOConfig` whose token rewards come from a DPO-trained guide policy."""

    guide_policy: str | None = field(
        default=None, metadata={"help": "DPO-trained model whose implicit token reward guides the loss"}
    )


@dataclass
class TRegDPOConfig(RewarderDPOConfig):
    """`DPOConfig` for T-REG (DPO-REG)."""

    alpha: float = field(default=0.25, metadata={"help": "weight of the token regulariser (paper: 0.1, 0.25 or 0.5)"})
    token_rewarder: str = field(
        default="contrastive", metadata={"help": "registered token rewarder (default contrastive)"}
    )


@dataclass
class TDPOConfig(DPOConfig):
    """`DPOConfig` for TDPO1 / TDPO2."""

    tdpo_variant: str = field(default="tdpo2", metadata={"help": "tdpo1 or tdpo2"})
    alpha: float = field(default=0.5, metadata={"help": "TDPO2's weight of the rejected sequence KL"})

    def __post_init__(self):
        super().__post_init__()
        if self.tdpo_variant == "tdpo1" and self.alpha != 0.5:
            raise UserInputError(f"alpha: tdpo1 does not use it (used by: tdpo2), got {self.alpha}")


@dataclass
class TGDPOConfig(GuidedDPOConfig):
    """`DPOConfig` for TGDPO."""

    alpha: float = field(default=0.5, metadata={"help": "the paper's a in the token weights beta (1 +- a beta rho_t)"})


@dataclass
class SePOConfig(GuidedDPOConfig):
    """`DPOConfig` for SePO."""

    beta: float = field(default=1.0, metadata={"help": "scale of the kept tokens' mean log-prob difference"})
    sepo_ratio: float = field(
        default=0.3, metadata={"help": "fraction of tokens kept (top of chosen, bottom of rejected)"}
    )


def check_rewarder_options(args) -> None:
    """`token_rewarder` registered and `rewarder_options` (a dict once TRL has read its JSON)
    arguments of its constructor, of the annotated types (`check_rewarder_arguments`)."""
    if args.token_rewarder not in REWARDERS:
        raise UserInputError(
            f"token_rewarder: {args.token_rewarder!r} is not registered; known: {', '.join(REWARDERS.names())}"
        )
    if args.rewarder_options is None:
        return
    if not isinstance(args.rewarder_options, dict):
        raise UserInputError(f"rewarder_options: expected a dict (or its JSON), got {args.rewarder_options!r}")
    args.rewarder_options = check_rewarder_arguments(
        args.token_rewarder, args.rewarder_options, lambda key: f"rewarder_options.{key}"
    )
