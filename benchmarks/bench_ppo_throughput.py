"""PPO throughput: tokens generated and trained per second, and where a step's time goes.

Runs a short `ppo` training (default: on the world's SFT policy and reward model; with
`--tiny`, on freshly built tiny models) and reads the per-step timings the trainer logs:
generation (KV-cache sampling), rewarding (the rewarder's pass, aligned to the policy's
tokens), scoring (rollout log-probs of policy and reference, critic values), training
(the PPO epochs over mini-batches) and the oracle's grading (only with a world). The first
step is left out (warm-up).

    python benchmarks/bench_ppo_throughput.py --steps 6 --rewarder red
    python benchmarks/bench_ppo_throughput.py --tiny --steps 6
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

PHASES = ("time_generate", "time_reward", "time_score", "time_train", "time_oracle")


def tiny_setup(root: Path) -> dict:
    """A tiny random gpt2 policy and reward model, and a prompt file, under `root`."""
    from tokenreward.testing import DEFAULT_CORPUS, tiny_causal_lm, tiny_reward_model, train_tokenizer

    tokenizer = train_tokenizer()
    tiny_causal_lm("gpt2", tokenizer).save_pretrained(root / "policy")
    tokenizer.save_pretrained(root / "policy")
    tiny_reward_model("gpt2", tokenizer).save_pretrained(root / "rm")
    tokenizer.save_pretrained(root / "rm")
    prompts = [" ".join(line.split(" ")[:3]) for line in DEFAULT_CORPUS]
    (root / "prompts.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    return {"policy": root / "policy", "reward_model": root / "rm", "prompts": root / "prompts.jsonl"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", type=Path, default=None, help="world folder (default: the built world)")
    parser.add_argument("--tiny", action="store_true", help="tiny random models instead of the world")
    parser.add_argument("--rewarder", default="sparse")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--mini-batch-size", type=int, default=8)
    parser.add_argument("--ppo-epochs", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()

    from tokenreward.jsonl import read_jsonl
    from tokenreward.trainers.ppo import PPOConfig, run

    with tempfile.TemporaryDirectory() as tmp:
        sources = tiny_setup(Path(tmp)) if args.tiny else {"world": args.world}
        config = PPOConfig(
            out=Path(tmp) / "run", rewarder=args.rewarder, steps=args.steps, batch_size=args.batch_size,
            mini_batch_size=args.mini_batch_size, ppo_epochs=args.ppo_epochs, max_new_tokens=args.max_new_tokens,
            save_every=args.steps, progress=False, **sources,
        )  # fmt: skip
        log = read_jsonl(run(config, "ppo") / "log.jsonl")
    steps = log[1:] if len(log) > 1 else log
    total = {phase: sum(r.get(phase, 0.0) for r in steps) for phase in PHASES}
    step_seconds = sum(total.values())
    generated = sum(r["tokens_generated"] for r in steps)
    trained = sum(r["tokens_trained"] for r in steps)
    print(
        f"ppo-{args.rewarder} on {'tiny models' if args.tiny else 'the world'}: {len(steps)} timed steps (first left out), "
        f"batch {args.batch_size}, {args.ppo_epochs} epochs of mini-batch {args.mini_batch_size}, "
        f"up to {args.max_new_tokens} new tokens"
    )
    print(f"  mean response length     {statistics.fmean(r['length'] for r in steps):8.1f} tokens")
    print(f"  seconds per step         {step_seconds / len(steps):8.2f}")
    print(f"  tokens generated / s     {generated / total['time_generate']:8.1f}   (generation time only)")
    print(f"  tokens trained / s       {trained / total['time_train']:8.1f}   (tokens x epochs, update time only)")
    print(f"  tokens per step-second   {generated / step_seconds:8.1f}   (whole step)")
    for phase in PHASES:
        print(f"  share {phase[5:]:<18} {total[phase] / step_seconds:8.1%}")


if __name__ == "__main__":
    main()
