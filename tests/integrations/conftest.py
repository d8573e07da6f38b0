"""Fixtures shared by the TRL integration tests."""

from __future__ import annotations

import pytest
from tokenizers import processors

from tokenreward.testing import train_tokenizer


@pytest.fixture(scope="module")
def tok():
    """A tokenizer that adds a BOS like Llama's (so TRL's DPO tokenization and ours agree)."""
    tokenizer = train_tokenizer()
    tokenizer._tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", tokenizer.bos_token_id)]
    )
    return tokenizer
