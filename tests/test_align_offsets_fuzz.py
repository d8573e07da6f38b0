"""`offsets_from_ids` (incremental decoding) against the definition: decode every prefix whole."""

from __future__ import annotations

import json
import random

import pytest

from tokenreward.align import offsets_from_ids
from tokenreward.testing import DEFAULT_CORPUS, train_tokenizer

PIECES = [
    "The",
    " answer",
    " is",
    " 42",
    ".",
    " café",
    " naïve",
    " 5€",
    " 日本語",
    " 🙂",
    "!!",
    "  ",
    "\n",
    " don't",
    " Paris",
    " hello",
    " world",
    " ,",
    " ?",
    "x",
    " ü",
]


def prefix_decoding_offsets(tokenizer, ids):
    """The definition, quadratic: token k ends at the common prefix of decode(ids[:k+1]) and the text."""
    text = tokenizer.decode(ids, skip_special_tokens=True)
    offsets, previous = [], 0
    for k in range(1, len(ids) + 1):
        prefix = tokenizer.decode(ids[:k], skip_special_tokens=True)
        n = 0
        while n < min(len(prefix), len(text)) and prefix[n] == text[n]:
            n += 1
        offsets.append((previous, max(n, previous)))
        previous = max(n, previous)
    return text, offsets


def sentencepiece_with_byte_fallback():
    """A Llama-2-style tokenizer: Metaspace pieces, a small alphabet, unknown characters as <0xXX> bytes."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=200, special_tokens=["<unk>", "<s>", "</s>"], limit_alphabet=40, show_progress=False
    )
    tok.train_from_iterator(DEFAULT_CORPUS, trainer=trainer)
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    for byte in range(256):
        vocab.setdefault(f"<0x{byte:02X}>", len(vocab))
    spec["model"]["byte_fallback"] = True
    spec["model"]["unk_token"] = None
    spec["decoder"] = {
        "type": "Sequence",
        "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0},
        ],
    }
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(spec)), unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )


def cleanup_tokenizer():
    tokenizer = train_tokenizer(vocab_size=280)
    tokenizer.clean_up_tokenization_spaces = True
    return tokenizer


TOKENIZERS = {
    "byte-level BPE": lambda: train_tokenizer(vocab_size=280),
    "SentencePiece + byte fallback": sentencepiece_with_byte_fallback,
    "byte-level BPE, space clean-up": cleanup_tokenizer,
}


@pytest.mark.parametrize("name", list(TOKENIZERS))
def test_incremental_offsets_equal_prefix_decoding(name):
    tokenizer = TOKENIZERS[name]()
    rng = random.Random(0)
    specials = list(tokenizer.all_special_ids)
    cases = []
    for _ in range(60):
        text = "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 12)))
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if rng.random() < 0.3:
            ids = ids + [tokenizer.eos_token_id]
        if rng.random() < 0.2 and len(ids) > 2:
            ids.insert(rng.randrange(len(ids)), rng.choice(specials))
        if rng.random() < 0.3 and len(ids) > 1:  # a generation cut off mid-character
            ids = ids[: rng.randrange(1, len(ids))]
        cases.append(ids)
    for _ in range(40):  # arbitrary id sequences, as an untrained policy samples them
        cases.append([rng.randrange(len(tokenizer)) for _ in range(rng.randint(1, 20))])
    multibyte_split = 0
    for ids in cases:
        assert offsets_from_ids(tokenizer, ids) == prefix_decoding_offsets(tokenizer, ids), ids
        text, offsets = prefix_decoding_offsets(tokenizer, ids)
        multibyte_split += any(s == e for s, e in offsets) and any(ord(c) > 127 for c in text)
    assert multibyte_split > 5  # the fuzz does reach tokens that end inside a character
