"""RED: redistribute a sequence reward model's score over the response tokens.

`s_t = R(x, y_<=t)` from one forward pass (the score head on every position), `s_0` the
score at the last prompt token (0 when the response starts the input). Eq. 6:
`r~_t = s_t - s_{t-1}`, which telescopes to `R(x, y) - s_0`. Eq. 7:
`r^_t = beta_c * r~_t + (1 - beta_c) * R(x, y) * [t = T]`. With `keep_sum=True`, `beta_c * s_0`
is added to the last token so the rewards sum to `R(x, y)` exactly. Tokens after the response
(e.g. an end-of-turn template token) are folded into the last response token, so `s_T` is the
model's own score of the full input. With a `cost_model` (helpful reward + harmless cost):
`r_t = 0.5 * (r^_t + alpha * c^_t)`, `alpha = -1`, the cost's rewards (same `beta_c`,
`keep_sum`) projected onto the reward model's tokens by character offsets.
"""

from __future__ import annotations

import torch

from tokenreward.align import project_rewards
from tokenreward.encoding import EncodedPairs
from tokenreward.errors import UserInputError
from tokenreward.models import ModelLoading, PathOrModel, check_causal, prefix_scores
from tokenreward.rewarders._reward_model import RewardModelRewarder
from tokenreward.rewards import TextOrMessages, TokenRewards, register_rewarder


def redistribute(scores: torch.Tensor, token_ends: list[int], prompt_end: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 6 for one sequence: `r~_t = s[end_t] - s[end_{t-1}]` with `s[end_0] = s_0 = s[prompt_end]`
    (0 when `prompt_end < 0`); `scores` holds the prefix score at every input position.
    Returns `(r~, s_0)`."""
    s0 = scores[prompt_end] if prompt_end >= 0 else scores.new_zeros(())
    ends = scores[token_ends]
    return ends - torch.cat([s0.reshape(1), ends[:-1]]), s0


@register_rewarder("red")
class RedRewarder(RewardModelRewarder):
    def __init__(
        self,
        reward_model: PathOrModel,
        tokenizer: PathOrModel | None = None,
        beta_c: float = 1.0,
        keep_sum: bool = False,
        cost_model: PathOrModel | None = None,
        cost_tokenizer: PathOrModel | None = None,
        alpha: float = -1.0,
        device: str | None = None,
        batch_size: int = 8,
        loading: ModelLoading | None = None,
    ):
        super().__init__(reward_model, tokenizer, device, batch_size, loading)
        if not 0.0 <= beta_c <= 1.0:
            raise UserInputError(f"beta_c must lie in [0, 1], got {beta_c}")
        check_causal(self.model)
        self.beta_c, self.keep_sum, self.alpha = beta_c, keep_sum, alpha
        self.cost = (
            RedRewarder(
                cost_model, cost_tokenizer, beta_c, keep_sum, device=device, batch_size=batch_size, loading=loading
            )
            if cost_model is not None
            else None
        )

    def rewards_from_encoding(self, enc: EncodedPairs) -> tuple[list[torch.Tensor], torch.Tensor]:
        scores = prefix_scores(self.model, enc.input_ids.to(self.device), enc.attention_mask.to(self.device)).cpu()
        rows, sequence = [], []
        for i in range(len(enc.responses)):
            full = scores[i, enc.last_positions[i]]
            diffs, s0 = redistribute(scores[i], enc.token_ends(i), enc.prompt_end(i))
            row = self.beta_c * diffs
            row[-1] += (1.0 - self.beta_c) * full + (self.beta_c * s0 if self.keep_sum else 0.0)
            rows.append(row)
            sequence.append(full)
        return rows, torch.stack(sequence)

    @torch.no_grad()
    def _score_batch(self, prompts: list[TextOrMessages], responses: list[TextOrMessages]) -> TokenRewards:
        reward = super()._score_batch(prompts, responses)
        if self.cost is None:
            return reward
        cost = self.cost._score_batch(prompts, responses)
        rows = []
        for i, text in enumerate(reward.responses):
            projected = project_rewards(cost.offsets[i], cost.token_rewards(i), reward.offsets[i], len(text))
            rows.append(0.5 * (reward.rewards[i, reward.mask[i]] + self.alpha * torch.tensor(projected)))
        sequence = 0.5 * (reward.sequence_rewards + self.alpha * cost.sequence_rewards)
        return TokenRewards.from_lists(self.name, reward.responses, reward.offsets, rows, sequence)
