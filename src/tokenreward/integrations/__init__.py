"""Bridges to RL frameworks: `tokenreward.integrations.verl` (needs the `verl` extra)."""
