"""Per-response-token log-probabilities from a causal LM, shared by the `implicit`,
`contrastive` and `rto` rewarders."""

from __future__ import annotations

from pathlib import Path

import torch

from tokenreward.encoding import EncodedPairs
from tokenreward.errors import UserInputError
from tokenreward.models import ModelLoading, PathOrModel, load_causal_lm, load_tokenizer, padded_token_logprobs


def response_logprobs(model: torch.nn.Module, enc: EncodedPairs, device: torch.device) -> list[torch.Tensor]:
    """`log P(y_t | x, y_<t)` for every response token of every pair, on CPU.

    Input positions after the last response token (a chat template's end-of-turn) are added
    to the last token, as `EncodedPairs.token_ends` prescribes, so that the values of a
    response sum to the log-probability of everything after the prompt."""
    vocab = model.get_input_embeddings().num_embeddings
    if enc.input_ids.numel() and int(enc.input_ids.max()) >= vocab:
        raise UserInputError(
            f"token id {int(enc.input_ids.max())} is outside the model's vocabulary of {vocab}; "
            "the tokenizer does not belong to this model"
        )
    lp = padded_token_logprobs(model, enc.input_ids.to(device), enc.attention_mask.to(device)).cpu()
    cumulative = lp.cumsum(-1)
    rows = []
    for i, positions in enumerate(enc.response_positions):
        ends = torch.tensor(enc.token_ends(i))
        starts = torch.tensor(positions)
        rows.append(cumulative[i, ends] - cumulative[i, starts] + lp[i, starts])
    return rows


def load_lm_and_tokenizer(model: PathOrModel, tokenizer: PathOrModel | None, loading: ModelLoading, what: str):
    """A causal LM in eval mode (placed as `loading` says) and its tokenizer (`tokenizer`, else the model's folder)."""
    if tokenizer is None and not isinstance(model, (str, Path)):
        raise UserInputError(f"{what}: pass `tokenizer` when the model is given as a loaded object")
    return load_causal_lm(model, loading=loading).eval(), load_tokenizer(tokenizer if tokenizer is not None else model)
