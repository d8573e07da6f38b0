"""Speed of the TLCR edit-op alignment (`tokenreward.labels.edit_ops`) on response-length
token sequences, against rapidfuzz's own `editops` (different ties, the floor) and a
pure-Python full-table DP with the same ties (what a hand-written implementation costs);
and how often rapidfuzz's own ties give another edit script than the public TLCR code's.

    python benchmarks/labels_speed.py [--length 200] [--edits 20] [--pairs 200]
"""

from __future__ import annotations

import argparse
import random
import time

from rapidfuzz.distance import Levenshtein

from tokenreward.labels import edit_ops
from tokenreward.testing import reference_edit_ops


def make_pairs(count: int, length: int, edits: int, seed: int = 0):
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        source = [rng.randrange(2000) for _ in range(length)]
        target = list(source)
        for _ in range(edits):
            k = rng.randrange(len(target))
            kind = rng.randrange(3)
            if kind == 0:
                target[k] = rng.randrange(2000)
            elif kind == 1:
                del target[k]
            else:
                target.insert(k, rng.randrange(2000))
        pairs.append((source, target))
    return pairs


def timed(fn, pairs) -> float:
    start = time.perf_counter()
    for source, target in pairs:
        fn(source, target)
    return (time.perf_counter() - start) / len(pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--edits", type=int, default=20)
    parser.add_argument("--pairs", type=int, default=200)
    args = parser.parse_args()
    pairs = make_pairs(args.pairs, args.length, args.edits)
    ours = timed(edit_ops, pairs)
    floor = timed(Levenshtein.editops, pairs)
    naive = timed(reference_edit_ops, pairs[: max(1, args.pairs // 10)])
    print(f"{args.pairs} pairs of {args.length} tokens, {args.edits} random edits each")
    print(f"tokenreward.labels.edit_ops (public-code ties): {ours * 1e3:8.3f} ms / pair")
    print(
        f"rapidfuzz Levenshtein.editops (its own ties):   {floor * 1e3:8.3f} ms / pair   ours / rapidfuzz = {ours / floor:6.1f}x"
    )
    print(
        f"pure-Python DP, same ties:                      {naive * 1e3:8.3f} ms / pair   python / ours    = {naive / ours:6.1f}x"
    )
    rng = random.Random(1)
    small = [
        ([rng.randrange(4) for _ in range(rng.randrange(10))], [rng.randrange(4) for _ in range(rng.randrange(10))])
        for _ in range(3000)
    ]
    differ = sum(
        [tuple(o) for o in edit_ops(a, b)] != [(o.tag, o.src_pos, o.dest_pos) for o in Levenshtein.editops(a, b)]
        for a, b in small
    )
    print(
        f"rapidfuzz editops gives another script than the public code's ties on {differ} of {len(small)} random pairs "
        "(alphabet 4, lengths 0-9)"
    )


if __name__ == "__main__":
    main()
