"""Loading Hugging Face models by local path or hub id, prefix scores, per-token log-probs.

Every function accepts either a path / hub id or an already loaded object, so trainers can
pass the models they hold in memory and users can pass folders.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from tokenreward.errors import NonFiniteError, UserInputError
from tokenreward.gguf import resolve_model_source
from tokenreward.io import damaged_file
from tokenreward.logprobs import position_kwargs, unwrap
from tokenreward.logprobs import token_logprobs as shifted_logprobs
from tokenreward.lora import adapter_base, is_adapter_folder, merged_adapter

PathOrModel = Any  # str | Path | a loaded transformers object

SCORE_HEAD_NAMES = ("score", "classifier")


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


@dataclass
class ModelLoading:
    """How every command and API loads its models; the fields are the `--dtype`, `--device`,
    `--device-map` and `--max-batch-tokens` flags (commands inherit or embed this dataclass).
    Errors name the fields as `NAME=VALUE` (the CLI shows them as the flags)."""

    dtype: Literal["auto", "bfloat16", "float16", "float32"] = field(
        default="auto", metadata={"help": "weights dtype; auto: as saved in the checkpoint"}
    )
    device: str = field(default="auto", metadata={"help": "torch device; auto: cuda when available, else cpu"})
    device_map: Literal["auto"] | None = field(
        default=None, metadata={"help": "auto: shard each model over every visible GPU (Accelerate's device map)"}
    )
    max_batch_tokens: int | None = field(
        default=None, metadata={"help": "scoring: length-sorted batches of at most this many padded tokens"}
    )

    def __post_init__(self) -> None:
        if self.dtype != "auto" and self.dtype not in DTYPES:
            raise UserInputError(f"dtype={self.dtype}: choose auto, {', '.join(DTYPES)}")
        if self.device_map not in (None, "auto"):
            raise UserInputError(f"device_map={self.device_map}: only 'auto' is supported")
        if self.max_batch_tokens is not None and self.max_batch_tokens < 1:
            raise UserInputError(f"max_batch_tokens={self.max_batch_tokens}: must be at least 1")
        resolve_device(self.device)

    def torch_device(self) -> torch.device:
        return resolve_device(self.device)

    @classmethod
    def of(cls, config: Any) -> ModelLoading:
        """The loading options of a command's config that inherits or mirrors these fields."""
        return cls(**{f.name: getattr(config, f.name) for f in fields(cls)})


def loading_options(loading: ModelLoading | None, device: str | torch.device | None = None) -> ModelLoading:
    """`loading` (defaults when None) with `device`, when given, taking precedence."""
    loading = loading or ModelLoading()
    return replace(loading, device=str(device)) if device is not None else loading


def resolve_device(name: str | torch.device | None) -> torch.device:
    """`auto` / None: cuda when available, else cpu; a CUDA device on a machine without CUDA is a clear error."""
    if name is None or str(name) == "auto":
        return default_device()
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise UserInputError(f"device={name}: not a torch device (auto, cpu, cuda, cuda:1, ...)") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserInputError(
            f"device={name}: CUDA is not available on this machine (torch {torch.__version__}); use device=cpu"
        )
    return device


def input_device(model: nn.Module) -> torch.device:
    """Where a model's inputs go (the device of its input embeddings, also under a device map)."""
    return model.get_input_embeddings().weight.device


def _pretrained_kwargs(loading: ModelLoading) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"dtype": "auto" if loading.dtype == "auto" else DTYPES[loading.dtype]}
    if loading.device_map:
        kwargs["device_map"] = loading.device_map
    return kwargs


def _place(model: nn.Module, loading: ModelLoading, loaded_here: bool, move: bool) -> nn.Module:
    """Cast a model given as an object to the requested dtype; move it (when asked) unless a device map placed it."""
    if loading.dtype != "auto" and not loaded_here:
        model = model.to(DTYPES[loading.dtype])
    if move and not loading.device_map and getattr(model, "hf_device_map", None) is None:
        model = model.to(loading.torch_device())
    return model


def _from_pretrained(loader, source: str | Path, what: str, **kwargs: Any):
    """`loader.from_pretrained`, with a missing local folder reported as FileNotFoundError; a GGUF
    file (or a folder holding one) loads from its converted folder (`tokenreward.gguf`)."""
    source = resolve_model_source(source)
    text = str(source)
    looks_local = Path(text).is_absolute() or text.startswith((".", "~")) or text.count("/") > 1
    if looks_local and not Path(text).expanduser().exists():
        raise FileNotFoundError(f"the {what} folder {text} does not exist")
    if (
        what != "tokenizer"
        and Path(text).expanduser().is_dir()
        and not (Path(text).expanduser() / "config.json").is_file()
    ):
        raise FileNotFoundError(f"the {what} folder {text} has no config.json (is it a Hugging Face model folder?)")
    try:
        return loader.from_pretrained(str(source), **kwargs)
    except OSError as err:
        raise FileNotFoundError(f"cannot load the {what} from {str(source)!r}: {err}") from err
    except Exception as err:
        damaged = damaged_file(Path(text).expanduser()) if looks_local or Path(text).is_dir() else None
        if damaged is None:
            raise
        raise UserInputError(f"cannot load the {what} from {text}: {damaged}") from err


def load_tokenizer(source: PathOrModel):
    """A tokenizer from a path / hub id, or the object itself if already loaded."""
    if not isinstance(source, (str, Path)):
        return source
    from transformers import AutoTokenizer

    return _from_pretrained(AutoTokenizer, source, "tokenizer")


def score_head(model: nn.Module) -> nn.Module:
    """The scalar head of a `*ForSequenceClassification` model; a clear error if it has none."""
    for name in SCORE_HEAD_NAMES:
        head = getattr(model, name, None)
        if isinstance(head, nn.Module):
            out = getattr(head, "out_features", None)
            if out is not None and out != 1:
                raise UserInputError(
                    f"{type(model).__name__} has a {out}-way head `{name}`; a reward model needs a scalar "
                    "head (num_labels=1)"
                )
            return head
    raise UserInputError(
        f"{type(model).__name__} has no scalar score head (looked for {', '.join(SCORE_HEAD_NAMES)}); "
        "load a *ForSequenceClassification model with num_labels=1"
    )


def load_reward_model(
    source: PathOrModel,
    device: torch.device | str | None = None,
    attn_implementation: str | None = None,
    loading: ModelLoading | None = None,
):
    """A sequence-classification reward model with a trained scalar head, in eval mode.

    Refuses a checkpoint whose head is missing (e.g. a causal LM folder, which Hugging Face
    would silently give a random head), a head with more than one output, and a config
    without `pad_token_id` (the model could not find the last token of a padded batch).
    `loading` sets dtype / device map (`device`, when given, wins over its device); without
    either the model stays where it was loaded. A LoRA adapter folder (`adapter_config.json`,
    e.g. `OUT/final` of `train reward-model --lora-r R`) loads its base with the adapter and
    the trained head merged in.
    """
    options = loading_options(loading, device)
    if is_adapter_folder(source):
        model = adapted_reward_model(source, options)
    elif isinstance(source, (str, Path)):
        from transformers import AutoModelForSequenceClassification

        kwargs = _pretrained_kwargs(options)
        if attn_implementation:
            kwargs["attn_implementation"] = attn_implementation
        model, info = _from_pretrained(
            AutoModelForSequenceClassification, source, "reward model", output_loading_info=True, **kwargs
        )
        missing = sorted(k for k in info["missing_keys"] if k.split(".")[0] in SCORE_HEAD_NAMES)
        if missing:
            architectures = ", ".join(model.config.architectures or ["unknown"])
            raise UserInputError(
                f"{source} holds a {architectures} checkpoint without a trained score head ({', '.join(missing)} "
                "missing); a reward model must be a *ForSequenceClassification checkpoint with num_labels=1"
            )
    else:
        model = source
        if attn_implementation and hasattr(model, "set_attn_implementation"):
            model.set_attn_implementation(attn_implementation)
    score_head(model)
    if model.config.pad_token_id is None:
        raise UserInputError(
            f"reward model {type(model).__name__} has no pad_token_id in its config; it cannot find the last "
            "token of a padded batch (set config.pad_token_id to the tokenizer's pad token id)"
        )
    return _place(
        model, options, isinstance(source, (str, Path)), move=device is not None or loading is not None
    ).eval()


def adapted_reward_model(folder: str | Path, options: ModelLoading) -> nn.Module:
    """The reward model of a LoRA adapter folder: its base with a scalar head, the adapter and
    the trained head merged in, `pad_token_id` from the folder's tokenizer when the base has none."""
    import json

    from tokenreward.lora import ADAPTER_CONFIG

    saved = json.loads((Path(folder).expanduser() / ADAPTER_CONFIG).read_text()).get("modules_to_save") or []
    if not set(saved) & set(SCORE_HEAD_NAMES):
        raise UserInputError(f"{folder} holds a LoRA adapter without a trained score head; it is not a reward model")
    device_map = {"device_map": options.device_map} if options.device_map else {}
    model = merged_adapter(scalar_head_from_lm(adapter_base(folder), **device_map), folder)
    if options.dtype != "auto":
        model = model.to(DTYPES[options.dtype])
    if model.config.pad_token_id is None and (Path(folder).expanduser() / "tokenizer_config.json").is_file():
        model.config.pad_token_id = load_tokenizer(str(folder)).pad_token_id
    return model


def check_causal(model: nn.Module, probe_length: int = 6) -> None:
    """Raise unless the model's hidden state at a position ignores later tokens (a causal decoder).

    Prefix scores from one pass (`prefix_scores`) are only the scores of the prefixes for such
    a model; a bidirectional encoder (BERT-like) would give silently wrong numbers. The probe
    compares the first half of a short input run alone and inside the whole input.
    """
    vocab = model.get_input_embeddings().num_embeddings
    pad = model.config.pad_token_id or 0
    device = next(model.parameters()).device
    ids = torch.tensor([[(pad + 1 + 7 * k) % vocab for k in range(probe_length)]], device=device)
    ids[ids == pad] = (pad + 1) % vocab
    half = probe_length // 2
    with torch.no_grad():
        full = model.base_model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[:, :half].float()
        short = model.base_model(
            input_ids=ids[:, :half], attention_mask=torch.ones_like(ids[:, :half])
        ).last_hidden_state.float()
    if not (torch.isfinite(full).all() and torch.isfinite(short).all()):
        raise NonFiniteError(f"{type(model).__name__} gives non-finite hidden states (NaN or inf) on a probe input")
    tolerance = 1e-4 if next(model.parameters()).dtype == torch.float32 else 5e-2
    if (full - short).abs().max() > tolerance * short.abs().max().clamp_min(1e-6):
        raise UserInputError(
            f"{type(model).__name__} is not causal: its hidden state at a position changes with later tokens, so "
            "prefix scores cannot come from one pass; use a decoder (causal) reward model"
        )


def load_causal_lm(source: PathOrModel, device: torch.device | str | None = None, loading: ModelLoading | None = None):
    """A causal language model (policy, reference, discriminator backbone). Without `device`
    and `loading`, a loaded object stays where it is. A LoRA adapter folder
    (`adapter_config.json`) loads its base with the adapter merged in."""
    if is_adapter_folder(source):
        return merged_adapter(load_causal_lm(adapter_base(source), device, loading), source)
    if isinstance(source, (str, Path)):
        from transformers import AutoModelForCausalLM

        options = loading_options(loading, device)
        model = _from_pretrained(AutoModelForCausalLM, source, "causal language model", **_pretrained_kwargs(options))
        return _place(model, options, True, move=device is not None or loading is not None)
    if device is None and loading is None:
        return source
    return _place(source, loading_options(loading, device), False, move=True)


def context_length(model: nn.Module) -> int | None:
    """The model's maximum number of positions, if its config says."""
    cfg = model.config
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(cfg, key, None)
        if isinstance(value, int):
            return value
    return None


def prefix_scores(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """`s[b, p] = R(input[b, :p+1])` for every position p, float32 `[B, T]`, from ONE ordinary forward call.

    A forward hook on the score module captures what the model itself feeds it at every
    position (so whatever the architecture does before its head, e.g. ModernBERT-decoder's
    dense + norm `head`, is included); a linear score module is then re-applied in float32,
    `s = W x + b`, so differences of scores keep their precision in a bf16 / fp16 model. For
    a causal model this equals re-scoring each prefix separately; position ids count from each
    row's first real token, so left-padded rows score like unpadded ones. The model's own pooled
    score checks the result (`check_pooled`). Gradients flow when enabled (the PPO critic).
    """
    inner = unwrap(model)
    head = score_head(inner)
    store: dict = {}

    def hook(_module, inputs, output):
        store["input"], store["output"] = inputs[0], output

    handle = head.register_forward_hook(hook)
    try:
        positions = position_kwargs(model, attention_mask)
        pooled = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **positions).logits
    finally:
        handle.remove()
    features, native = store.get("input"), store.get("output")
    if native is None or native.dim() != 3 or native.shape[:2] != input_ids.shape:
        raise UserInputError(
            f"{type(inner).__name__} applies its score head to a pooled state, not at every position; prefix scores "
            "(RED, the PPO critic) cannot be read from it"
        )
    check_pooled(inner, input_ids, native.squeeze(-1), pooled.squeeze(-1))
    if isinstance(head, nn.Linear):
        bias = None if head.bias is None else head.bias.float()
        return nn.functional.linear(features.float(), head.weight.float(), bias).squeeze(-1)
    return native.squeeze(-1).float()


def pooled_positions(input_ids: torch.Tensor, pad_token_id: int | None) -> torch.Tensor:
    """Where Hugging Face pools a sequence score: the rightmost token that is not the pad token."""
    if pad_token_id is None:
        return torch.full(input_ids.shape[:1], input_ids.shape[1] - 1, device=input_ids.device)
    index = torch.arange(input_ids.shape[1], device=input_ids.device)
    return (index * (input_ids != pad_token_id)).argmax(-1)


def check_pooled(model: nn.Module, input_ids: torch.Tensor, per_position: torch.Tensor, pooled: torch.Tensor) -> None:
    """Refuse a model whose pooled score is not its score module's output at the pooled position."""
    rows = torch.arange(input_ids.shape[0], device=input_ids.device)
    at_last = per_position.detach()[rows, pooled_positions(input_ids, model.config.pad_token_id)].float()
    theirs = pooled.detach().reshape(at_last.shape).float()
    if not torch.allclose(at_last, theirs, rtol=1e-5, atol=1e-5, equal_nan=True):
        gap = float((at_last - theirs).abs().max())
        raise UserInputError(
            f"{type(model).__name__}: its pooled score is not its score head's output at the last token (they differ "
            f"by {gap:.3g}); prefix scores cannot be read from this architecture"
        )


def padded_token_logprobs(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """`[B, T]` (the input's frame, unlike `tokenreward.logprobs.token_logprobs`' `[B, T-1]`): `lp[b, p] = log P(input[b, p] | input[b, :p])` for p >= 1; `lp[:, 0] = 0` (chunked, `tokenreward.logprobs`)."""
    picked = shifted_logprobs(model, input_ids, attention_mask)
    return torch.cat([torch.zeros_like(picked[:, :1]), picked], dim=1)


def enable_activation_checkpointing(model) -> None:
    """Recompute activations in the backward pass (transformers >= 5.2 names it activation
    checkpointing; older releases gradient checkpointing)."""
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable()


def scalar_head_from_lm(source: str | Path, **kwargs: Any) -> nn.Module:
    """`AutoModelForSequenceClassification` (one label, float32) from a causal LM folder or GGUF
    file. Its score head is new by design, so Hugging Face's missing-weights report is not printed."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            str(resolve_model_source(source)), num_labels=1, dtype=torch.float32, **kwargs
        )
    except RuntimeError as err:
        if "mismatched" not in str(err):
            raise
        from transformers import AutoConfig

        labels = AutoConfig.from_pretrained(str(resolve_model_source(source))).num_labels
        raise UserInputError(
            f"{source} holds a model with a {labels}-way head; a reward model needs a scalar head (num_labels=1): "
            "start from a causal LM or a reward model"
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)
