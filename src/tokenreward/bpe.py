"""Train a byte-level BPE tokenizer on a corpus (no downloads): the world's tokenizer, and the
tests' and benchmarks' tiny ones (`tokenreward.testing.train_tokenizer`)."""

from __future__ import annotations

from collections.abc import Iterable

SPECIAL_TOKENS = {"pad_token": "<pad>", "eos_token": "<eos>", "bos_token": "<bos>", "unk_token": "<unk>"}


def train_tokenizer(corpus: Iterable[str], vocab_size: int, chat_template: str | None = None):
    """A byte-level BPE `PreTrainedTokenizerFast` trained on `corpus` (Hugging Face `tokenizers`'
    `BpeTrainer`, no prefix space), with the special tokens `SPECIAL_TOKENS` and an optional
    chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)
    if chat_template:
        fast.chat_template = chat_template
    return fast
