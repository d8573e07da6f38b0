"""Shared base of rewarders that read an off-the-shelf sequence reward model (RED, ABC, sparse)."""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path

import torch

from tokenreward.encoding import EncodedPairs, encode_pairs
from tokenreward.errors import UserInputError
from tokenreward.models import (
    ModelLoading,
    PathOrModel,
    context_length,
    input_device,
    load_reward_model,
    load_tokenizer,
    loading_options,
)
from tokenreward.rewards import Rewarder, TextOrMessages, TokenRewards


class RewardModelRewarder(Rewarder):
    """Loads a scalar-head reward model and its tokenizer (the model's own unless `tokenizer`
    is given), encodes prompt+response pairs, and hands subclasses one forward pass. `loading`
    sets dtype, device, device map and the token budget of a batch."""

    attn_implementation: str | None = None

    def __init__(
        self,
        reward_model: PathOrModel,
        tokenizer: PathOrModel | None = None,
        device: str | None = None,
        batch_size: int = 8,
        loading: ModelLoading | None = None,
    ):
        if batch_size < 1:
            raise UserInputError(f"batch_size must be at least 1, got {batch_size}")
        options = loading_options(loading, device)
        self.model = load_reward_model(reward_model, attn_implementation=self.attn_implementation, loading=options)
        self.device = input_device(self.model)
        self.max_batch_tokens = options.max_batch_tokens
        if tokenizer is None and not isinstance(reward_model, (str, Path)):
            raise UserInputError(f"{self.name}: pass `tokenizer` when the reward model is given as a loaded object")
        self.tokenizer = load_tokenizer(tokenizer if tokenizer is not None else reward_model)
        self.batch_size = batch_size

    def input_length(self, prompt: TextOrMessages, response: TextOrMessages) -> int:
        return self.encode([prompt], [response]).input_ids.shape[1]

    def encode(self, prompts: list[TextOrMessages], responses: list[TextOrMessages]) -> EncodedPairs:
        """Encode with the model's own pad token, so `last_positions` is where the model reads its score."""
        enc = encode_pairs(
            self.tokenizer, prompts, responses, context_length(self.model), pad_token_id=self.model.config.pad_token_id
        )
        vocab = self.model.get_input_embeddings().num_embeddings
        if enc.input_ids.numel() and int(enc.input_ids.max()) >= vocab:
            raise UserInputError(
                f"token id {int(enc.input_ids.max())} is outside the reward model's vocabulary of {vocab}; "
                "the tokenizer does not belong to this reward model"
            )
        return enc

    @torch.no_grad()
    def _score_batch(self, prompts: list[TextOrMessages], responses: list[TextOrMessages]) -> TokenRewards:
        enc = self.encode(prompts, responses)
        rewards, sequence = self.rewards_from_encoding(enc)
        return TokenRewards.from_lists(self.name, enc.responses, enc.offsets, rewards, sequence)

    @abstractmethod
    def rewards_from_encoding(self, enc: EncodedPairs) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Per-response reward rows and the sequence rewards for an encoded batch."""

    def sequence_scores(self, enc: EncodedPairs) -> torch.Tensor:
        """The model's own pooled scores (Hugging Face's forward), one per pair."""
        out = self.model(input_ids=enc.input_ids.to(self.device), attention_mask=enc.attention_mask.to(self.device))
        return out.logits.squeeze(-1).float().cpu()
