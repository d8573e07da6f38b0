"""Adapters that bring tokenreward's token rewards and losses into other RLHF libraries' trainers."""
