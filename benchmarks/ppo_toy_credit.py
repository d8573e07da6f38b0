"""Dense vs sparse credit on a toy task, through the real trainers (run by hand; prints a table).

The reward is +1 per letter `e` in the response, given either per character (dense: each
policy token receives the e's it wrote) or as the count on the last token (sparse: the same
total, no credit assignment). A tiny random gpt2 policy, 8 responses of `--max-new-tokens`
per step (RLOO: 2 prompts x 4 samples). `rloo-seq` is RLOO on the whole-sequence return (one
advantage per response, `--estimator rloo_sequence`), i.e. what dense rewards reduce to when summed.
Reported: mean reward over the last 5 steps and the first step whose reward reaches
`--target`, mean and spread over seeds.

    python benchmarks/ppo_toy_credit.py --seeds 3 --steps 30 --max-new-tokens 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from tokenreward.rewards import Rewarder, TokenRewards


class LetterRewarder(Rewarder):
    """+1 per letter `e`: per character (dense) or the count on the last character (sparse)."""

    def __init__(self, dense: bool):
        self.dense = dense
        self.name = "letter-dense" if dense else "letter-sparse"

    def _score_batch(self, prompts, responses):
        offsets = [[(i, i + 1) for i in range(len(r))] for r in responses]
        counts = [[float(c == "e") for c in r] for r in responses]
        rewards = counts if self.dense else [[0.0] * (len(c) - 1) + [sum(c)] for c in counts]
        return TokenRewards.from_lists(self.name, responses, offsets, rewards, [sum(c) for c in counts])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--target", type=float, default=4.0)
    parser.add_argument("--learning-rate", type=float, default=1e-2)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    args = parser.parse_args()

    import tokenreward.trainers.ppo.trainer as ppo_module
    from tokenreward.trainers.ppo import PPOConfig, RLOOConfig, run

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_ppo_throughput import tiny_setup

    variants = [
        ("ppo", "ppo", PPOConfig, 8, "gae"),
        ("rloo", "rloo", RLOOConfig, 2, "rloo_token"),
        ("rloo-seq", "rloo", RLOOConfig, 2, "rloo_sequence"),
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sources = tiny_setup(Path(tmp))
        for label, method, cls, batch, estimator in variants:
            for dense in (True, False):
                ppo_module.build_rewarder = lambda *a, dense=dense, **k: LetterRewarder(dense)
                finals, reached = [], []
                for seed in range(args.seeds):
                    config = cls(
                        out=Path(tmp) / f"{label}-{dense}-{seed}", steps=args.steps, seed=seed, batch_size=batch,
                        mini_batch_size=8, max_new_tokens=args.max_new_tokens, learning_rate=args.learning_rate,
                        estimator=estimator, progress=False, save_every=args.steps, **sources,
                        **({"critic_learning_rate": args.learning_rate} if estimator == "gae" else {}),
                    )  # fmt: skip
                    log = [json.loads(line) for line in (run(config, method) / "log.jsonl").read_text().splitlines()]
                    rewards = [r["reward"] for r in log]
                    finals.append(statistics.fmean(rewards[-5:]))
                    reached.append(next((r["step"] for r in log if r["reward"] >= args.target), None))
                rows.append((label, "dense" if dense else "sparse", finals, reached))
    print(
        f"toy 'count the e's' task, {args.seeds} seeds, {args.steps} steps, {args.max_new_tokens} new tokens, "
        f"lr {args.learning_rate}, target {args.target}"
    )
    print(f"{'method':<8} {'credit':<7} {'last-5 reward':>18} {'step reaching target':>24}  per seed")
    for method, credit, finals, reached in rows:
        hit = [r for r in reached if r is not None]
        spread = statistics.stdev(finals) if len(finals) > 1 else 0.0
        hit_text = (
            f"{statistics.fmean(hit):.1f} ({len(hit)}/{len(reached)} seeds)" if hit else f"never (0/{len(reached)})"
        )
        print(f"{method:<8} {credit:<7} {statistics.fmean(finals):9.2f} +- {spread:4.2f} {hit_text:>24}  {reached}")


if __name__ == "__main__":
    main()
