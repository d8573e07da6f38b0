"""ABC, attention-based credit ("Dense Reward for Free"): one reward-model pass with eager
attention; `A` = last layer's attention averaged over heads; the row of the final input token
(where the model reads its score), restricted to the response and renormalised:
`a_t = A[T, t] / sum_t' A[T, t']`; `r_t = beta * a_t * R + (1 - beta) * R * [t = T]`, `beta = 0.8`.
The rewards sum to `R`. `T` is the position where the model reads its score (the rightmost
non-pad token); only the columns of response tokens are kept, so attention to the prompt and
to template tokens after the response (an end-of-turn, an EOS) is dropped before renormalising.
"""

from __future__ import annotations

import torch

from tokenreward.encoding import EncodedPairs
from tokenreward.errors import NonFiniteError, UserInputError
from tokenreward.models import ModelLoading, PathOrModel
from tokenreward.rewarders._reward_model import RewardModelRewarder
from tokenreward.rewards import register_rewarder


def attention_credit(row: torch.Tensor, response_positions: list[int]) -> torch.Tensor:
    """`a_t = A[T, p_t] / sum_t' A[T, p_t']`: the final-token attention row on the response tokens."""
    mass = row[response_positions]
    total = mass.sum()
    if not total > 0:
        raise NonFiniteError(
            f"the final token gives the response no attention (total {float(total)}); cannot share credit"
        )
    return mass / total


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
        loading: ModelLoading | None = None,
    ):
        super().__init__(reward_model, tokenizer, device, batch_size, loading)
        if not 0.0 <= beta <= 1.0:
            raise UserInputError(f"beta must lie in [0, 1], got {beta}")
        self.beta = beta

    def rewards_from_encoding(self, enc: EncodedPairs) -> tuple[list[torch.Tensor], torch.Tensor]:
        out = self.model(
            input_ids=enc.input_ids.to(self.device),
            attention_mask=enc.attention_mask.to(self.device),
            output_attentions=True,
        )
        if not out.attentions:
            raise UserInputError(
                f"{type(self.model).__name__} returned no attentions; ABC needs attn_implementation='eager'"
            )
        scores = out.logits.squeeze(-1).float().cpu()
        attention = out.attentions[-1].float().mean(dim=1).cpu()  # [B, L, L]
        rows = []
        for i in range(len(scores)):
            last = enc.last_positions[i]
            share = attention_credit(attention[i, last], enc.response_positions[i])
            row = self.beta * share * scores[i]
            row[-1] += (1.0 - self.beta) * scores[i]
            rows.append(row)
        return rows, scores
