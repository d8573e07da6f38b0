"""RTO's PPO reward (arXiv 2404.18922, docs/methods.md) without its KL term:

`r_t = clip(beta1 * rho_t, -c, c) + [t = T] * clip(R(x, y), -R_max, R_max)`,
`beta1 = 0.05`, `c = 0.05`, `R_max = 10`,

with `rho_t = log pi_dpo(y_t|.) - log ref(y_t|.)` the DPO-implicit token reward (`policy` is
the DPO-trained model, `reference` its starting point) and `R` the `reward_model`'s sequence
score. RTO's full reward also has `- kl * KL_t` (`kl = 0.01`): the PPO trainer adds the
per-token KL to the policy being trained itself, so it is not part of this rewarder; run PPO
with `--kl-coef 0.01` to match the paper. Tokens are the policy's; the reward model reads the
response with its own tokenizer (`reward_tokenizer`, else `tokenizer`, else its folder's).
The sequence reward is `R(x, y)` unclipped.
"""

from __future__ import annotations

import torch

from tokenreward.errors import UserInputError
from tokenreward.models import ModelLoading, PathOrModel
from tokenreward.rewarders.implicit import ImplicitRewarder
from tokenreward.rewarders.sparse import SparseRewarder
from tokenreward.rewards import Rewarder, TextOrMessages, TokenRewards, register_rewarder


@register_rewarder("rto")
class RtoRewarder(Rewarder):
    def __init__(
        self,
        policy: PathOrModel,
        reference: PathOrModel,
        reward_model: PathOrModel,
        tokenizer: PathOrModel | None = None,
        reward_tokenizer: PathOrModel | None = None,
        beta1: float = 0.05,
        clip: float = 0.05,
        reward_clip: float = 10.0,
        device: str | None = None,
        batch_size: int = 8,
        loading: ModelLoading | None = None,
    ):
        if clip <= 0 or reward_clip <= 0:
            raise UserInputError(f"rto: clip bounds must be positive, got clip={clip}, reward_clip={reward_clip}")
        self.implicit = ImplicitRewarder(
            policy, reference, tokenizer, device=device, batch_size=batch_size, loading=loading
        )
        self.sequence = SparseRewarder(
            reward_model,
            reward_tokenizer if reward_tokenizer is not None else tokenizer,
            device=device,
            batch_size=batch_size,
            loading=loading,
        )
        self.beta1, self.clip, self.reward_clip = beta1, clip, reward_clip
        self.batch_size = batch_size

    @torch.no_grad()
    def _score_batch(self, prompts: list[TextOrMessages], responses: list[TextOrMessages]) -> TokenRewards:
        implicit = self.implicit._score_batch(prompts, responses)
        scores = self.sequence._score_batch(prompts, responses).sequence_rewards
        rows = []
        for i in range(len(implicit)):
            row = (self.beta1 * implicit.rewards[i, implicit.mask[i]]).clamp(-self.clip, self.clip)
            row[-1] += scores[i].clamp(-self.reward_clip, self.reward_clip)
            rows.append(row)
        return TokenRewards.from_lists(self.name, implicit.responses, implicit.offsets, rows, scores)
