"""TLCR: token rewards from the token discriminator's confidence (Section 4.3).

`D_t = sigma(z_t)`, the discriminator's probability that response token `t` is positive, read
at the token's own position (`tokenreward.trainers.discriminator`).
- `tlcr` (Eq. 7): `r_t = 2 * D_t - 1`, in [-1, 1].
- `tlcr_fixed`: `+1` when `D_t >= band`, `-1` when `1 - D_t >= band`, else `0`
  (neutral when the larger class confidence is below `band = 0.6`).
There is no holistic score in TLCR; `sequence_rewards` is the sum of the token rewards (the
undiscounted return PPO sees). Rewards are bounded, so re-projection onto another tokenizer
averages them (`combine = "mean"`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from tokenreward.encoding import encode_pairs
from tokenreward.errors import UserInputError
from tokenreward.gguf import resolve_model_source
from tokenreward.models import (
    DTYPES,
    ModelLoading,
    PathOrModel,
    context_length,
    input_device,
    load_tokenizer,
    loading_options,
)
from tokenreward.rewards import Rewarder, TextOrMessages, TokenRewards, register_rewarder


def load_discriminator(source: PathOrModel, num_labels: int = 1):
    """A token-classification model from a folder or GGUF file. A causal LM gets a new head by
    design, so Hugging Face's missing-weights report is not printed for it (it is for a
    discriminator folder that lost its head)."""
    from transformers import AutoConfig, AutoModelForTokenClassification
    from transformers.utils import logging as hf_logging

    source = resolve_model_source(source)
    architectures = AutoConfig.from_pretrained(str(source)).architectures or []
    new_head = not any(name.endswith("ForTokenClassification") for name in architectures)
    verbosity = hf_logging.get_verbosity()
    if new_head:
        hf_logging.set_verbosity_error()
    try:
        model = AutoModelForTokenClassification.from_pretrained(str(source), num_labels=num_labels)
    finally:
        hf_logging.set_verbosity(verbosity)
    model.config.id2label, model.config.label2id = {0: "positive"}, {"positive": 0}
    return model


@register_rewarder("tlcr")
class TlcrRewarder(Rewarder):
    combine = "mean"

    def __init__(
        self,
        discriminator: PathOrModel,
        tokenizer: PathOrModel | None = None,
        device: str | None = None,
        batch_size: int = 8,
        loading: ModelLoading | None = None,
    ):
        options = loading_options(loading, device)
        if isinstance(discriminator, (str, Path)):
            discriminator = resolve_model_source(discriminator)
            if not Path(discriminator).is_dir():
                raise FileNotFoundError(
                    f"{self.name}: no discriminator folder at {discriminator} (train one with `tokenreward train discriminator`)"
                )
            # the discriminator's own tokenizer, saved beside it, wins over a shared one
            if (Path(discriminator) / "tokenizer_config.json").exists():
                tokenizer = discriminator
            discriminator = load_discriminator(discriminator)
        elif tokenizer is None:
            raise UserInputError(f"{self.name}: pass `tokenizer` when the discriminator is given as a loaded object")
        if tokenizer is None:
            raise UserInputError(f"{self.name}: the discriminator folder has no tokenizer; pass `tokenizer`")
        if discriminator.config.num_labels != 1:
            raise UserInputError(
                f"{self.name}: the discriminator needs one logit per token, it has {discriminator.config.num_labels}"
            )
        self.model = discriminator.to(options.torch_device()).eval()
        if options.dtype != "auto":
            self.model = self.model.to(DTYPES[options.dtype])
        self.device = input_device(self.model)
        self.max_batch_tokens = options.max_batch_tokens
        self.tokenizer = load_tokenizer(tokenizer)
        self.batch_size = batch_size

    def token_rewards(self, probs: torch.Tensor) -> torch.Tensor:
        """Eq. 7: `2 D - 1`."""
        return 2 * probs - 1

    @torch.no_grad()
    def _score_batch(self, prompts: list[TextOrMessages], responses: list[TextOrMessages]) -> TokenRewards:
        enc = encode_pairs(self.tokenizer, prompts, responses, context_length(self.model))
        logits = self.model(
            input_ids=enc.input_ids.to(self.device), attention_mask=enc.attention_mask.to(self.device)
        ).logits
        probs = torch.sigmoid(logits[..., 0].float()).cpu()
        rows = [self.token_rewards(probs[i, enc.response_positions[i]]) for i in range(len(enc.responses))]
        return TokenRewards.from_lists(self.name, enc.responses, enc.offsets, rows, [float(r.sum()) for r in rows])


@register_rewarder("tlcr_fixed")
class TlcrFixedRewarder(TlcrRewarder):
    def __init__(
        self,
        discriminator: PathOrModel,
        tokenizer: PathOrModel | None = None,
        band: float = 0.6,
        device: str | None = None,
        batch_size: int = 8,
        loading: ModelLoading | None = None,
    ):
        super().__init__(discriminator, tokenizer, device, batch_size, loading)
        if not 0.5 <= band <= 1.0:
            raise UserInputError(f"band must lie in [0.5, 1], got {band}")
        self.band = band

    def token_rewards(self, probs: torch.Tensor) -> torch.Tensor:
        """+1 / -1 by the larger class, 0 when its confidence is below `band`."""
        sign = torch.where(probs > 0.5, 1.0, -1.0)
        return torch.where(torch.maximum(probs, 1 - probs) >= self.band, sign, torch.zeros_like(probs))
