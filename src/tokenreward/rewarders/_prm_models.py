"""The process reward model shapes the `prm` rewarder reads, and P(good step) at every position.

- `token-classification`: an `*ForTokenClassification` model (TRL's PRM trainer, `train prm`);
  two labels: `P = softmax(z)[1]`, one label: `P = sigmoid(z)`.
- `two-class`: a model with a two-way head applied at every position, read there:
  a `*ForSequenceClassification` model with `num_labels=2` (its head's output at each position,
  not Hugging Face's pooled one), or a model whose forward returns `[B, T, 2]` logits
  (Qwen2.5-Math-PRM's shape); `P = softmax(z)[1]`.
- `math-shepherd`: a causal LM; `P = softmax(l[+], l[-])[0]`, the LM's logits of the good and
  bad tokens at the step tag's position (Wang et al., 2024; the tokens are those of "+ -", as
  their code takes them).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from tokenreward.errors import UserInputError
from tokenreward.lora import adapter_base, is_adapter_folder, merged_adapter
from tokenreward.models import SCORE_HEAD_NAMES, ModelLoading, load_causal_lm, loading_options

MODEL_KINDS = ("token-classification", "math-shepherd", "two-class")


def kind_of_architecture(name: str, num_labels: int) -> str | None:
    """The PRM kind a Hugging Face architecture name stands for (None when it stands for none)."""
    if name.endswith("ForTokenClassification"):
        return "token-classification"
    if name.endswith(("ForCausalLM", "LMHeadModel")):
        return "math-shepherd"
    if name.endswith(("ForSequenceClassification", "ForProcessRewardModel")) and num_labels == 2:
        return "two-class"
    return None


def detect_kind(source, model_kind: str) -> str:
    """`model_kind`, or with "auto" the kind the model's architecture stands for (an error naming it when none)."""
    if model_kind != "auto":
        if model_kind not in MODEL_KINDS:
            raise UserInputError(f"model_kind must be auto, {', '.join(MODEL_KINDS)}; got {model_kind!r}")
        return model_kind
    if isinstance(source, nn.Module):
        names, labels = [type(source).__name__], getattr(source.config, "num_labels", 0)
    else:
        from transformers import AutoConfig

        folder = adapter_base(source) if is_adapter_folder(source) else source
        config = AutoConfig.from_pretrained(str(folder))
        names, labels = (config.architectures or []), config.num_labels
        if is_adapter_folder(source):
            names = ["ForTokenClassification"]  # `train prm --lora-r` saves a token-classification adapter
    found = {kind_of_architecture(name, labels) for name in names} - {None}
    if len(found) != 1:
        raise UserInputError(
            f"prm: cannot tell the PRM kind of {', '.join(names) or 'this model'} ({labels} labels); "
            f"set model_kind to one of {', '.join(MODEL_KINDS)}"
        )
    return found.pop()


def load_prm(source, kind: str, loading: ModelLoading) -> nn.Module:
    """The model of `kind` from a folder (or an adapter folder of `train prm --lora-r`), in eval mode;
    a loaded object is only moved and cast as `loading` says."""
    if kind == "math-shepherd":
        return load_causal_lm(source, loading=loading).eval()
    if isinstance(source, (str, Path)):
        from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

        loader = (
            AutoModelForTokenClassification if kind == "token-classification" else AutoModelForSequenceClassification
        )
        if is_adapter_folder(source):
            model = merged_adapter(loader.from_pretrained(adapter_base(source), num_labels=2), source)
        else:
            model, info = loader.from_pretrained(str(source), output_loading_info=True)
            missing = sorted(k for k in info["missing_keys"] if k.split(".")[0] in SCORE_HEAD_NAMES)
            if missing:
                raise UserInputError(
                    f"prm: {source} has no trained {kind} head ({', '.join(missing)} missing); "
                    "train one with `tokenreward train prm` or set model_kind"
                )
    else:
        model = source
    options = loading_options(loading)
    if options.dtype != "auto":
        from tokenreward.models import DTYPES

        model = model.to(DTYPES[options.dtype])
    return model.to(options.torch_device()).eval()


def good_token_ids(tokenizer, good: str, bad: str) -> list[int]:
    """The ids of the good and bad tokens as Math-Shepherd's code takes them: the two tokens of
    `f"{good} {bad}"` (without special tokens); anything else is an error naming the options."""
    ids = tokenizer(f"{good} {bad}", add_special_tokens=False)["input_ids"]
    if len(ids) != 2 or ids[0] == ids[1]:
        raise UserInputError(
            f"prm: good_token {good!r} and bad_token {bad!r} must be two different tokens of the PRM's tokenizer "
            f"({f'{good} {bad}'!r} is {len(ids)} tokens)"
        )
    return ids


def per_position_logits(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """`[B, T, C]` logits at every position: the forward's own when they are per position, else
    (a sequence-classification model) its head's output at each position, captured by a hook."""
    head = next((getattr(model, n) for n in SCORE_HEAD_NAMES if isinstance(getattr(model, n, None), nn.Module)), None)
    store: dict = {}
    handle = head.register_forward_hook(lambda _m, _i, out: store.update(out=out)) if head is not None else None
    try:
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    finally:
        if handle is not None:
            handle.remove()
    if logits.dim() == 3:
        return logits.float()
    captured = store.get("out")
    if captured is None or captured.dim() != 3 or captured.shape[:2] != input_ids.shape:
        raise UserInputError(
            f"prm: {type(model).__name__} gives no logits at every position; it is not a two-class PRM"
        )
    return captured.float()


def good_probabilities(
    model: nn.Module, kind: str, input_ids: torch.Tensor, attention_mask: torch.Tensor, good_bad: list[int]
) -> torch.Tensor:
    """`P[b, p]`: the model's probability that the step ending at position p is good (module docstring)."""
    logits = per_position_logits(model, input_ids, attention_mask)
    if kind == "math-shepherd":
        return logits[..., good_bad].softmax(-1)[..., 0]
    classes = logits.shape[-1]
    if kind == "token-classification" and classes == 1:
        return torch.sigmoid(logits[..., 0])
    if classes != 2:
        raise UserInputError(f"prm: a {kind} PRM needs 2 classes per token, {type(model).__name__} has {classes}")
    return logits.softmax(-1)[..., 1]
