"""Dense token rewards inside verl, with nothing forked.

Importing this package (verl does it through the `verl.plugins` entry point) registers:
- the reward-loop manager `tokenreward` (`reward.reward_manager.name=tokenreward`,
  configured under `reward.tokenreward.*`), `manager.TokenRewardManager`;
- the advantage estimators `tokenreward_rloo`, `tokenreward_grpo`, `tokenreward_gtpo`,
  `tokenreward_grpo_s` and `tokenreward_ktae` (`algorithm.adv_estimator=...`), `estimators`.

See docs/verl.md for the command lines. Needs verl (`pip install 'tokenreward[verl]'`).
"""

from __future__ import annotations

try:
    import verl  # noqa: F401
except ImportError as err:
    raise ImportError(
        f"tokenreward.integrations.verl needs verl 0.9.x: pip install 'tokenreward[verl]' ({err})"
    ) from err

from tokenreward.integrations.verl import estimators
from tokenreward.integrations.verl.manager import TokenRewardManager, compute_score

estimators.register()

__all__ = ["TokenRewardManager", "compute_score", "estimators"]
