"""`align.offsets_from_ids` time at 512 and 4096 tokens (run by hand; prints the ratio).

Linear time means the 4096 / 512 ratio stays near 8 (target <= 10); decoding every prefix
whole (the definition) grows quadratically. Each length's time is the fastest of alternated
runs (on a busy machine the fastest run is the one least disturbed), and the definition's
quadratic time is printed beside it for comparison.

    python benchmarks/offsets_speed.py
"""

from __future__ import annotations

import argparse
import random
import time

from tokenreward.align import offsets_from_ids
from tokenreward.testing import DEFAULT_CORPUS, train_tokenizer


def token_ids(tokenizer, count: int, seed: int = 0) -> list[int]:
    """`count` ids of sentences drawn from the corpus (with some multi-byte characters)."""
    rng = random.Random(seed)
    sentences = DEFAULT_CORPUS + ["Un café coûte 5€ à Paris.", "日本語のテキスト 🙂."]
    ids: list[int] = []
    while len(ids) < count:
        ids += tokenizer(" " + rng.choice(sentences), add_special_tokens=False)["input_ids"]
    return ids[:count]


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def prefix_decoding(tokenizer, ids: list[int]) -> None:
    """The definition: decode every prefix whole (quadratic)."""
    for k in range(1, len(ids) + 1):
        tokenizer.decode(ids[:k], skip_special_tokens=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", type=int, default=512)
    parser.add_argument("--long", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    tokenizer = train_tokenizer(vocab_size=400)
    short, long = token_ids(tokenizer, args.short), token_ids(tokenizer, args.long)
    times: dict[int, list[float]] = {len(short): [], len(long): []}
    for _ in range(args.repeats):
        for ids in (short, long):
            times[len(ids)].append(seconds(lambda ids=ids: offsets_from_ids(tokenizer, ids)))
    t_short, t_long = min(times[len(short)]), min(times[len(long)])
    print(
        f"offsets_from_ids: {len(short)} tokens {1000 * t_short:.1f} ms, {len(long)} tokens {1000 * t_long:.1f} ms, "
        f"ratio {t_long / t_short:.2f} (target <= 10)"
    )
    q_short, q_long = (
        seconds(lambda: prefix_decoding(tokenizer, short)),
        seconds(lambda: prefix_decoding(tokenizer, long)),
    )
    print(
        f"prefix decoding (the definition): {1000 * q_short:.1f} ms, {1000 * q_long:.1f} ms, ratio {q_long / q_short:.2f}"
    )


if __name__ == "__main__":
    main()
