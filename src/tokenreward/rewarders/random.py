"""The `random` baseline: an independent N(0, 1) reward per token of a given tokenizer.

Each response's rewards come from a generator seeded by `seed` and the response's own text
(CRC32 of the seed, prompt and response), so they do not depend on batching or order. The sequence
reward is the rewards' sum.
"""

from __future__ import annotations

import zlib

import torch

from tokenreward.encoding import encode_pairs, response_text
from tokenreward.models import PathOrModel, load_tokenizer
from tokenreward.rewards import Rewarder, TextOrMessages, TokenRewards, register_rewarder


@register_rewarder("random")
class RandomRewarder(Rewarder):
    def __init__(self, tokenizer: PathOrModel, seed: int = 0, batch_size: int = 64):
        self.tokenizer = load_tokenizer(tokenizer)
        self.seed = seed
        self.batch_size = batch_size

    def _score_batch(self, prompts: list[TextOrMessages], responses: list[TextOrMessages]) -> TokenRewards:
        enc = encode_pairs(self.tokenizer, prompts, responses)
        rows = []
        for i, (prompt, response) in enumerate(zip(prompts, responses)):
            key = f"{self.seed}\x00{prompt!r}\x00{response_text(response, i)}".encode()
            generator = torch.Generator().manual_seed(zlib.crc32(key))
            rows.append(torch.randn(len(enc.offsets[i]), generator=generator))
        return TokenRewards.from_lists(self.name, enc.responses, enc.offsets, rows, [float(r.sum()) for r in rows])
