"""The DPO-implicit token reward (RTO, SePO, TGDPO; the T-REG paper's case study):

`rho_t = beta * (log pi_dpo(y_t | x, y_<t) - log ref(y_t | x, y_<t))`, `beta = 1` by default,

with `policy` the preference-trained model and `reference` the model it started from (they
must share the tokenizer). The sequence reward is `sum_t rho_t`, DPO's implicit reward of the
response up to `beta` (its end-of-sequence token not included).
"""

from __future__ import annotations

import torch

from tokenreward.encoding import encode_pairs
from tokenreward.errors import UserInputError
from tokenreward.models import ModelLoading, PathOrModel, context_length, input_device, load_causal_lm, loading_options
from tokenreward.rewarders._causal_lm import load_lm_and_tokenizer, response_logprobs
from tokenreward.rewards import Rewarder, TextOrMessages, TokenRewards, register_rewarder


@register_rewarder("implicit")
class ImplicitRewarder(Rewarder):
    def __init__(
        self,
        policy: PathOrModel,
        reference: PathOrModel,
        tokenizer: PathOrModel | None = None,
        beta: float = 1.0,
        device: str | None = None,
        batch_size: int = 8,
        loading: ModelLoading | None = None,
    ):
        options = loading_options(loading, device)
        self.policy, self.tokenizer = load_lm_and_tokenizer(policy, tokenizer, options, "implicit rewarder")
        self.reference = load_causal_lm(reference, loading=options).eval()
        self.device = input_device(self.policy)
        self.max_batch_tokens = options.max_batch_tokens
        if self.policy.config.vocab_size != self.reference.config.vocab_size:
            raise UserInputError(
                f"implicit rewarder: policy and reference vocabularies differ ({self.policy.config.vocab_size} vs "
                f"{self.reference.config.vocab_size}); the reference must be the model the policy was trained from"
            )
        self.beta = beta
        self.batch_size = batch_size

    @torch.no_grad()
    def _score_batch(self, prompts: list[TextOrMessages], responses: list[TextOrMessages]) -> TokenRewards:
        enc = encode_pairs(self.tokenizer, prompts, responses, context_length(self.policy))
        policy = response_logprobs(self.policy, enc, self.device)
        reference = response_logprobs(self.reference, enc, self.device)
        rows = [self.beta * (p - r) for p, r in zip(policy, reference)]
        return TokenRewards.from_lists(self.name, enc.responses, enc.offsets, rows, [float(r.sum()) for r in rows])
