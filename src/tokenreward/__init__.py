"""tokenreward: token-level rewards from holistic feedback.

from tokenreward import build_rewarder
red = build_rewarder("red", reward_model="path/to/reward-model")
out = red.score(["What is 2 + 2?"], [" 4."])
out.record(0)  # tokens, offsets, rewards, sequence_reward
"""

from tokenreward.rewards import REWARDERS, Rewarder, TokenRewards, build_rewarder, register_rewarder

__all__ = ["REWARDERS", "Rewarder", "TokenRewards", "build_rewarder", "register_rewarder"]
__version__ = "0.1.0"
