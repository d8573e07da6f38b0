"""Baselines from the sequence score alone: `sparse` puts `R(x, y)` on the last token,
`uniform` spreads it as `R / T` over all `T` tokens. The score is the reward model's own
pooled output (Hugging Face's forward), read at the last real input token."""

from __future__ import annotations

from abc import abstractmethod

import torch

from tokenreward.encoding import EncodedPairs
from tokenreward.rewarders._reward_model import RewardModelRewarder
from tokenreward.rewards import register_rewarder


class SequenceScoreRewarder(RewardModelRewarder):
    """Spreads the model's own pooled score over the response tokens (`spread`)."""

    @abstractmethod
    def spread(self, score: torch.Tensor, length: int) -> torch.Tensor:
        """The `length` token rewards made from the sequence score."""

    def rewards_from_encoding(self, enc: EncodedPairs) -> tuple[list[torch.Tensor], torch.Tensor]:
        scores = self.sequence_scores(enc)
        return [self.spread(scores[i], len(enc.offsets[i])) for i in range(len(scores))], scores


@register_rewarder("sparse")
class SparseRewarder(SequenceScoreRewarder):
    def spread(self, score: torch.Tensor, length: int) -> torch.Tensor:
        row = torch.zeros(length)
        row[-1] = score
        return row


@register_rewarder("uniform")
class UniformRewarder(SequenceScoreRewarder):
    def spread(self, score: torch.Tensor, length: int) -> torch.Tensor:
        return torch.full((length,), float(score) / length)
