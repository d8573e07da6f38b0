"""tokenreward inside TRL's trainers (`pip install 'tokenreward[trl]'`).

- `TokenRewardGRPOTrainer`: TRL's `GRPOTrainer` with `(B, T)` token-level advantages from a
  tokenreward rewarder (RED, ABC, TLCR, ...), GRPO's or RLOO's baseline per token.
- `TRegDPOTrainer`, `TDPOTrainer`, `TGDPOTrainer`, `SePOTrainer`: `DPOTrainer` subclasses with
  the token-level preference losses, each with its `DPOConfig` subclass.

See docs/trl.md.
"""

from __future__ import annotations

try:
    import trl  # noqa: F401
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError("tokenreward.integrations.trl needs TRL: pip install 'tokenreward[trl]'") from err

from tokenreward.integrations.trl.grpo import (
    BASELINES,
    TokenRewardFunction,
    TokenRewardGRPOTrainer,
    trl_advantage_settings,
)
from tokenreward.integrations.trl.preference import SePOTrainer, TDPOTrainer, TGDPOTrainer, TRegDPOTrainer
from tokenreward.integrations.trl.preference_configs import SePOConfig, TDPOConfig, TGDPOConfig, TRegDPOConfig

__all__ = [
    "BASELINES",
    "SePOConfig",
    "SePOTrainer",
    "TDPOConfig",
    "TDPOTrainer",
    "TGDPOConfig",
    "TGDPOTrainer",
    "TRegDPOConfig",
    "TRegDPOTrainer",
    "TokenRewardFunction",
    "TokenRewardGRPOTrainer",
    "trl_advantage_settings",
]
