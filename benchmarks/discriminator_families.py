"""Held-out token accuracy of a TLCR discriminator per world family and side (positive tokens
of the revisions, negative tokens of the rejected responses), on the same held-out prompts
as `tokenreward train discriminator` (same `--eval-fraction` and `--seed`).

    python benchmarks/discriminator_families.py --discriminator RUN/final --labels labels.jsonl --world WORLD
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import torch

from tokenreward.labels import read_labels, split_by_prompt
from tokenreward.models import load_tokenizer
from tokenreward.trainers.discriminator import batch_tensors, examples_of, load_discriminator
from tokenreward.world import SPLITS, open_world


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--discriminator", required=True)
    parser.add_argument("--labels", required=True)
    parser.add_argument("--world", required=True)
    parser.add_argument("--eval-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    world = open_world(args.world)
    family = {r["prompt"]: r["family"] for split in SPLITS for r in world.prompts(split)}
    _, held_out = split_by_prompt(read_labels(args.labels), args.eval_fraction, args.seed)
    tokenizer, model = load_tokenizer(args.discriminator), load_discriminator(args.discriminator).eval()
    right, total = defaultdict(int), defaultdict(int)
    examples = examples_of(held_out, args.labels)
    for start in range(0, len(examples), 32):
        chunk = examples[start : start + 32]
        batch = batch_tensors(tokenizer, chunk, None)
        with torch.no_grad():
            probs = torch.sigmoid(
                model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[..., 0]
            )
        for i, example in enumerate(chunk):
            side = example["where"].rsplit("(", 1)[1].rstrip(")")
            for p, label in zip(probs[i][batch["mask"][i]].tolist(), example["labels"]):
                if label != 0.5:
                    key = (family[example["prompt"]], side)
                    right[key] += (p > 0.5) == (label == 1.0)
                    total[key] += 1
    print(f"{'family':<12} {'side':<9} {'tokens':>7} {'accuracy':>9}")
    for key in sorted(total):
        print(f"{key[0]:<12} {key[1]:<9} {total[key]:>7} {right[key] / total[key]:>9.3f}")
    print(f"{'all':<12} {'':<9} {sum(total.values()):>7} {sum(right.values()) / sum(total.values()):>9.3f}")


if __name__ == "__main__":
    main()
