"""Bridges to RL frameworks: `tokenreward.integrations.trl` (the `trl` extra) and
`tokenreward.integrations.verl` (the `verl` extra)."""
