"""Tiny models and tokenizers built on the spot (no downloads), for tests, benchmarks and docs."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from tokenreward import bpe
from tokenreward.errors import UserInputError

DEFAULT_CORPUS = [
    "What is 17 + 25? The answer is 42.",
    "The capital of France is Paris. The capital of Peru is Lima.",
    "The first five primes are 2, 3, 5, 7, 11.",
    "Thank you for asking, I am happy to help you with that question.",
    "You are stupid and this is a terrible, awful question.",
    "Samosa is a fried pastry with a savoury filling. Hello world!",
]


def train_tokenizer(corpus: Iterable[str] = DEFAULT_CORPUS, vocab_size: int = 300, chat_template: str | None = None):
    """`tokenreward.bpe.train_tokenizer` with small defaults: a BPE tokenizer of `DEFAULT_CORPUS`."""
    return bpe.train_tokenizer(corpus, vocab_size, chat_template)


_DECODER = dict(
    num_hidden_layers=2,
    hidden_size=32,
    intermediate_size=64,
    num_attention_heads=2,
    num_key_value_heads=2,
    max_position_embeddings=128,
)

#: Hugging Face `model_type` -> config overrides giving a 2-layer, 32-wide model
TINY_ARCHITECTURES: dict[str, dict[str, Any]] = {
    "gpt2": dict(n_layer=2, n_embd=32, n_head=2, n_positions=128),
    "llama": _DECODER,
    "qwen2": _DECODER,
    "mistral": dict(_DECODER, sliding_window=None),
    "gemma2": dict(_DECODER, head_dim=16, sliding_window=16, query_pre_attn_scalar=16),
    "qwen3": dict(_DECODER, head_dim=16),
    "phi3": dict(_DECODER, original_max_position_embeddings=128),
    "gpt_neox": dict(_DECODER),
    "opt": dict(
        num_hidden_layers=2,
        hidden_size=32,
        ffn_dim=64,
        num_attention_heads=2,
        word_embed_proj_dim=32,
        max_position_embeddings=128,
    ),
    "modernbert-decoder": dict(
        num_hidden_layers=2,
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=2,
        max_position_embeddings=128,
        global_attn_every_n_layers=1,
        local_attention=16,
    ),
}


def tiny_config(arch: str, vocab_size: int, pad_token_id: int, **overrides):
    """A 2-layer config of `arch`, a Hugging Face model type among `TINY_ARCHITECTURES`."""
    from transformers import AutoConfig

    if arch not in TINY_ARCHITECTURES:
        raise UserInputError(f"unknown tiny architecture {arch!r}; known: {', '.join(TINY_ARCHITECTURES)}")
    common = dict(
        vocab_size=vocab_size, pad_token_id=pad_token_id, bos_token_id=pad_token_id, eos_token_id=pad_token_id
    )
    cfg = AutoConfig.for_model(arch, **TINY_ARCHITECTURES[arch], **common)
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def tiny_reward_model(arch: str, tokenizer, seed: int = 0):
    """A randomly initialised scalar-head `*ForSequenceClassification` model."""
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    cfg = tiny_config(arch, len(tokenizer), tokenizer.pad_token_id, num_labels=1)
    model = AutoModelForSequenceClassification.from_config(cfg)
    # a random head on a 32-d state gives scores near 0; scale it so differences are visible
    from tokenreward.models import score_head

    with torch.no_grad():
        score_head(model).weight.mul_(20.0)
    return model.eval()


def hf_reward_score(folder: str | Path, prompt: str, response: str) -> float:
    """A saved reward model's score of prompt + response, read by plain Hugging Face classes
    (its own tokenizer, no padding): the independent value rewarders are checked against."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    ids = AutoTokenizer.from_pretrained(str(folder))(prompt + response)["input_ids"]
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0, 0].item()


def tiny_causal_lm(arch: str, tokenizer, seed: int = 0):
    """A randomly initialised causal LM."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(tiny_config(arch, len(tokenizer), tokenizer.pad_token_id)).eval()


def crash_on_call(function: Callable[..., Any], call: int) -> Callable[..., Any]:
    """`function`, except that its `call`-th call raises `KeyboardInterrupt` (a run killed mid-way)."""
    calls = 0

    def crashing(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == call:
            raise KeyboardInterrupt("killed")
        return function(*args, **kwargs)

    return crashing


def reference_edit_ops(source: Sequence, target: Sequence) -> tuple[list[tuple[str, int, int]], int]:
    """An independent edit script and distance, from the textbook Levenshtein table
    `D[i][j] = min(D[i-1][j] + 1, D[i][j-1] + 1, D[i-1][j-1] + [source_i != target_j])`,
    walked back from the end preferring delete > insert > diagonal (the ties of
    `tokenreward.labels.edit_ops`). Ops are `(tag, source position, target position)`."""
    n, m = len(source), len(target)
    table = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        for j in range(m + 1):
            if i == 0 or j == 0:
                table[i][j] = i + j
            else:
                table[i][j] = min(
                    table[i - 1][j] + 1,
                    table[i][j - 1] + 1,
                    table[i - 1][j - 1] + (source[i - 1] != target[j - 1]),
                )
    ops, i, j = [], n, m
    while i > 0 or j > 0:
        if i > 0 and table[i][j] == table[i - 1][j] + 1:
            i -= 1
            ops.append(("delete", i, j))
        elif j > 0 and table[i][j] == table[i][j - 1] + 1:
            j -= 1
            ops.append(("insert", i, j))
        else:
            i, j = i - 1, j - 1
            if source[i] != target[j]:
                ops.append(("replace", i, j))
    return ops[::-1], table[n][m]
