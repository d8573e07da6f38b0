"""Baselines from the sequence score alone: `sparse` puts `R(x, y)` on the last token,
`uniform` spreads it as `R / T` over all `T` tokens. The score is the reward model's own
pooled output (Hugging Face's forward), read at the last real input token."""

from __future__ import annotations

import torch

from tokenreward.encoding import EncodedPairs
from tokenreward.rewarders._reward_model import RewardModelRewarder
from tokenreward.rewards import register_rewarder


class SequenceScoreRewarder(RewardModelRewarder):
    def sequence_scores(self, enc: EncodedPairs) -> torch.Tensor:
        out = self.model(input_ids=enc.input_ids.to(self.device), attention_mask=enc.attention_mask.to(self.device))
        return out.logits.squeeze(-1).float().cpu()

    def spread(self, score: torch.Tensor, length: int) -> torch.Tensor:
        raise NotImplementedError

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
