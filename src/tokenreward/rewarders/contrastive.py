"""T-REG's self-generated contrastive token reward (arXiv 2412.02685, docs/methods.md):

`r^_t = sigma( log ref(y_t | x_better, y_<t) - log ref(y_t | x_worse, y_<t) ) - 0.5`, in (-0.5, 0.5),

where `x_better` / `x_worse` wrap the prompt and the response in a revision prompt asking for
a more / less helpful, correct, coherent and concise answer, after which the response is
scored again as the "revised" answer: two forward passes of the `reference` model per batch.
The templates are `REVISION_BETTER` / `REVISION_WORSE` below (the world trains its SFT policy
to follow them) unless given; both are `str.format` templates with `{prompt}` and `{response}`. A conversational prompt is flattened to "role: content" lines and the
revision prompt becomes one user turn. If the two wrapped inputs tokenize the response
differently, the worse pass's log-probabilities are summed onto the better pass's tokens by
character offsets. If a revision prompt would not fit the model's context, its copy of the
response (not the response being scored) is cut, the same in both prompts, to the longest
prefix for which both fit. The sequence reward is `sum_t r^_t`.

For a preference dataset the rewards are computed once and cached next to it (see
`tokenreward.preference_data.pair_token_rewards`), which the preference trainer does on its
first run.
"""

from __future__ import annotations

import torch

from tokenreward.align import project_rewards
from tokenreward.encoding import encode_pairs, response_text
from tokenreward.errors import UserInputError
from tokenreward.models import ModelLoading, PathOrModel, context_length, input_device, loading_options
from tokenreward.rewarders._causal_lm import load_lm_and_tokenizer, response_logprobs
from tokenreward.rewards import Rewarder, TextOrMessages, TokenRewards, register_rewarder

#: the revision instructions (`str.format` templates with `{prompt}` and `{response}`); the
#: world's SFT policy learns to follow them, so its policy can serve as the reference
REVISION_BETTER = "Rewrite the answer below to be better: more helpful, correct, coherent and concise.\n{prompt}{response}\nBetter answer:"
REVISION_WORSE = "Rewrite the answer below to be worse: less helpful, correct, coherent and concise.\n{prompt}{response}\nWorse answer:"


def revision_templates() -> tuple[str, str]:
    """The default (better, worse) revision templates."""
    return REVISION_BETTER, REVISION_WORSE


def prompt_text(prompt: TextOrMessages) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n".join(f"{m.get('role', 'user')}: {m.get('content', '')}" for m in prompt)


def wrap(template: str, prompt: TextOrMessages, response: str) -> TextOrMessages:
    """The revision prompt for (prompt, response); conversational prompts stay conversational."""
    text = template.format(prompt=prompt_text(prompt), response=response)
    return text if isinstance(prompt, str) else [{"role": "user", "content": text}]


@register_rewarder("contrastive")
class ContrastiveRewarder(Rewarder):
    combine = "mean"  # bounded per-token rewards: average when several fall in one target token

    def __init__(
        self,
        reference: PathOrModel,
        tokenizer: PathOrModel | None = None,
        better_template: str | None = None,
        worse_template: str | None = None,
        device: str | None = None,
        batch_size: int = 8,
        loading: ModelLoading | None = None,
    ):
        options = loading_options(loading, device)
        self.model, self.tokenizer = load_lm_and_tokenizer(reference, tokenizer, options, "contrastive rewarder")
        self.device = input_device(self.model)
        self.max_batch_tokens = options.max_batch_tokens
        default_better, default_worse = revision_templates()
        self.better_template = better_template or default_better
        self.worse_template = worse_template or default_worse
        for name, template in (("better", self.better_template), ("worse", self.worse_template)):
            if "{response}" not in template or "{prompt}" not in template:
                raise UserInputError(
                    f"contrastive rewarder: the {name} template needs both {{prompt}} and {{response}}"
                )
        self.batch_size = batch_size

    def fits(self, prompt: TextOrMessages, copy: str, text: str, limit: int) -> bool:
        """Whether both revision prompts, holding `copy` of the response, fit with `text` after them."""
        return all(
            int(encode_pairs(self.tokenizer, [wrap(t, prompt, copy)], [text]).attention_mask.sum()) <= limit
            for t in (self.better_template, self.worse_template)
        )

    def copy_length(self, prompt: TextOrMessages, text: str, limit: int | None) -> int:
        """Characters of the response kept in the revision prompts: all of it, else the longest
        prefix for which both inputs fit the context (the scored response stays whole)."""
        if limit is None or self.fits(prompt, text, text, limit):
            return len(text)
        if not self.fits(prompt, "", text, limit):
            raise UserInputError(
                f"contrastive rewarder: the revision prompt with the response is over the model's context of {limit} "
                "tokens even without its copy of the response"
            )
        low, high = 0, len(text)  # low fits, high does not
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if self.fits(prompt, text[:middle], text, limit) else (low, middle)
        return low

    def logprobs(self, template: str, prompts: list[TextOrMessages], copies: list[str], texts: list[str]):
        wrapped = [wrap(template, p, c) for p, c in zip(prompts, copies)]
        enc = encode_pairs(self.tokenizer, wrapped, texts, context_length(self.model))
        return enc, response_logprobs(self.model, enc, self.device)

    @torch.no_grad()
    def _score_batch(self, prompts: list[TextOrMessages], responses: list[TextOrMessages]) -> TokenRewards:
        texts = [response_text(r, i) for i, r in enumerate(responses)]
        limit = context_length(self.model)
        copies = [t[: self.copy_length(p, t, limit)] for p, t in zip(prompts, texts)]
        better_enc, better = self.logprobs(self.better_template, prompts, copies, texts)
        worse_enc, worse = self.logprobs(self.worse_template, prompts, copies, texts)
        rows = []
        for i, text in enumerate(texts):
            worse_i = worse[i]
            if worse_enc.offsets[i] != better_enc.offsets[i]:
                worse_i = torch.tensor(
                    project_rewards(worse_enc.offsets[i], worse_i.tolist(), better_enc.offsets[i], len(text), "sum")
                )
            rows.append(torch.sigmoid(better[i] - worse_i) - 0.5)
        return TokenRewards.from_lists(self.name, texts, better_enc.offsets, rows, [float(r.sum()) for r in rows])
