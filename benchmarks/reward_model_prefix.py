"""RED's credit against how the reward model was trained (run by hand).

Trains the world's reward model again with each `--prefix-loss` (the world's own recipe:
`worldbuild.build.build_reward_model`'s model, pairs, epochs, batch and learning rate), for each
seed, then prints side by side: held-out pair accuracy against the oracle (data pairs and pairs
of the policy's samples, as `world info` reports them) and RED's credit on the world's test
responses (`bench credit`: pooled AUROC, within-response AUROC, and the within-response AUROC
of each defect kind; lower reward = defect). With `--backbone` the models are that pretrained
causal LM trained with the backbone world's recipe instead (`worldbuild.backbone.RECIPE`: LoRA
through every layer on its pair subsample, its own tokenizer).

    OMP_NUM_THREADS=1 python benchmarks/reward_model_prefix.py --losses none,value,truncated,revision --seeds 3 --work runs/prefix-models
    OMP_NUM_THREADS=1 python benchmarks/reward_model_prefix.py --losses revision --backbone SmolLM2-135M-Instruct.Q4_1.gguf --work runs/prefix-smollm2
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from tokenreward.bench.credit import bench_credit
from tokenreward.jsonl import read_jsonl
from tokenreward.models import load_reward_model, load_tokenizer
from tokenreward.trainers.reward_model import pairwise_accuracy
from tokenreward.world import open_world
from tokenreward.world.sizes import SIZES
from tokenreward.worldbuild.backbone import train_backbone_reward_model
from tokenreward.worldbuild.build import train_world_reward_model
from tokenreward.worldbuild.measure import world_tokenizer


def train_one(root: Path, loss: str, weight: float, seed: int, out: Path, backbone: str | None):
    """The world's reward-model stage (or the backbone's, merged) with `prefix_loss=loss` and
    `seed`, saved to `out/final`."""
    size = SIZES[open_world(root).config["size"]]
    if backbone is None:
        model, tokenizer, _ = train_world_reward_model(
            root, size, seed, False, out, prefix_loss=loss, prefix_weight=weight
        )
    else:
        model, tokenizer, *_ = train_backbone_reward_model(
            root, size, seed, True, backbone, out, prefix_loss=loss, prefix_weight=weight
        )
        model = model.merge_and_unload()
    model.save_pretrained(out / "final")
    tokenizer.save_pretrained(out / "final")
    return model, tokenizer


def trained(root: Path, loss: str, weight: float, seed: int, work: Path, backbone: str | None) -> tuple[Path, dict]:
    """The model's folder and its accuracies against the oracle; reuses a model trained before in `work`."""
    out = work / f"{loss}-w{weight:g}-seed{seed}"
    if (out / "final" / "config.json").is_file():
        model = load_reward_model(out / "final")
        tokenizer = world_tokenizer(root) if backbone is None else load_tokenizer(out / "final")
        row = {}
    else:
        started = time.perf_counter()
        model, tokenizer = train_one(root, loss, weight, seed, out, backbone)
        row = {"train_s": time.perf_counter() - started}
    for name, split in (("acc_data", "pairs.test"), ("acc_policy", "policy_pairs.test")):
        row[name] = pairwise_accuracy(model, tokenizer, read_jsonl(root / "data" / f"{split}.jsonl"), against="oracle")
    return out / "final", row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", default=None, help="world folder (default: the cached world)")
    parser.add_argument("--losses", default="none,value,truncated,revision")
    parser.add_argument("--weight", type=float, default=1.0, help="--prefix-weight of every loss but none")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--work", type=Path, required=True, help="folder of the trained models (reused when rerun)")
    parser.add_argument("--limit", type=int, default=None, help="test responses bench credit scores")
    parser.add_argument(
        "--backbone", default=None, help="a causal LM folder or GGUF: train it with the backbone recipe"
    )
    args = parser.parse_args()
    world = open_world(args.world)
    print(f"{world!r}; prefix weight {args.weight}")
    rows: dict[tuple[str, int], dict] = {}
    folders: dict[str, str] = {}
    for loss in args.losses.split(","):
        for seed in range(args.seeds):
            folder, rows[loss, seed] = trained(world.root, loss, args.weight, seed, args.work, args.backbone)
            folders[f"{loss}/{seed}"] = str(folder)
            print(loss, seed, {k: round(v, 3) for k, v in rows[loss, seed].items()}, flush=True)
    results, _ = bench_credit(world, ["red"], limit=args.limit, progress=False, reward_models=folders)
    for (loss, seed), row in rows.items():
        red = results[f"red [{loss}/{seed}]"]
        row.update(auroc=red["auroc"], auroc_within=red["auroc_within"])
        row.update({f"kind:{k}": v["auroc"] for k, v in red["auroc_within_by_kind"].items()})
    world_red = results["red"]
    print(f"the world's own reward model: RED auroc {world_red['auroc']:.3f}, within {world_red['auroc_within']:.3f}")
    columns = sorted({k for row in rows.values() for k in row if k != "train_s"})
    print("\n| prefix loss | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for loss in args.losses.split(","):
        cells = []
        for column in columns:
            values = [row[column] for (name, _), row in rows.items() if name == loss and column in row]
            spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
            cells.append(f"{statistics.mean(values):.3f}{spread}" if values else "-")
        print(f"| {loss} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
