"""ABC, attention-based credit ("Dense Reward for Free"): one reward-model pass with eager
attention; `A` = last layer's attention averaged over heads; the row of the final input token
(where the model reads its score), restricted to the response and renormalised:
`a_t = A[T, t] / sum_t' A[T, t']`; `r_t = beta * a_t * R + (1 - beta) * R * [t = T]`, `beta = 0.8`.
The rewards sum to `R`. Input positions after the last response token (template tokens) are
counted with the last response token, as in RED.
"""

from __future__ import annotations

import torch

from tokenreward.encoding import EncodedPairs
from tokenreward.models import PathOrModel
from tokenreward.rewarders._reward_model import RewardModelRewarder
from tokenreward.rewards import register_rewarder


def attention_credit(row: torch.Tensor, token_starts: list[int], last_position: int) -> torch.Tensor:
    """Share of the final-token attention row that falls on each response token's positions."""
    bounds = token_starts + [last_position + 1]
    mass = torch.stack([row[bounds[k] : bounds[k + 1]].sum() for k in range(len(token_starts))])
    return mass / mass.sum().clamp_min(1e-12)


@register_rewarder("abc")
class AbcRewarder(RewardModelRewarder):
    attn_implementation = "eager"

    def __init__(
        self,
        reward_model: PathOrModel,
        tokenizer: PathOrModel | None = None,
        beta: float = 0.8,
        device: str | None = None,
        batch_size: int = 8,
    ):
        super().__init__(reward_model, tokenizer, device, batch_size)
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must lie in [0, 1], got {beta}")
        self.beta = beta

    def rewards_from_encoding(self, enc: EncodedPairs) -> tuple[list[torch.Tensor], torch.Tensor]:
        out = self.model(
            input_ids=enc.input_ids.to(self.device),
            attention_mask=enc.attention_mask.to(self.device),
            output_attentions=True,
        )
        scores = out.logits.squeeze(-1).float().cpu()
        attention = out.attentions[-1].float().mean(dim=1).cpu()  # [B, L, L]
        rows = []
        for i in range(len(scores)):
            last = enc.last_positions[i]
            share = attention_credit(attention[i, last], enc.response_positions[i], last)
            row = self.beta * share * scores[i]
            row[-1] += (1.0 - self.beta) * scores[i]
            rows.append(row)
        return rows, scores
