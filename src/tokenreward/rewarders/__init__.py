"""One module per token rewarder; each registers itself with `register_rewarder`."""
