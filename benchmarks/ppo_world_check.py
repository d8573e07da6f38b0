"""Does PPO raise the world's held-out oracle score, and is the world's reward model a usable
reward? (run by hand; prints a table)

1. How well the world's reward model tracks the oracle: Pearson correlation of its score with
   the oracle's on the world's own test responses and on responses sampled from the SFT policy.
2. PPO runs on the world's RL prompts, each evaluated on the held-out test split (greedy and
   sampled, `tokenreward.evaluation.evaluate_policy`) against the SFT policy:
   - `oracle`: the oracle's score of the response as the sparse reward (what a perfect reward
     model would give): checks that the trainer turns a good reward into a better policy;
   - each `--rewarders` name (default `sparse`): the world's reward model through that rewarder.

    python benchmarks/ppo_world_check.py --world WORLD_DIR --steps 100
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from tokenreward.rewards import Rewarder, TokenRewards


class OracleScoreRewarder(Rewarder):
    """The oracle's holistic score on the last character (a sparse reward from a perfect judge)."""

    name = "oracle"

    def __init__(self, records: dict[str, dict]):
        self.records = records

    def _score_batch(self, prompts, responses):
        from tokenreward.world.oracle import grade

        scores = [grade(self.records[p], r).score for p, r in zip(prompts, responses)]
        offsets = [[(i, i + 1) for i in range(len(r))] for r in responses]
        rewards = [[0.0] * (len(r) - 1) + [s] for r, s in zip(responses, scores)]
        return TokenRewards.from_lists(self.name, responses, offsets, rewards, scores)


def reward_model_agreement(world, n: int) -> tuple[float, float]:
    from tokenreward.generation import generate
    from tokenreward.models import load_causal_lm, load_tokenizer
    from tokenreward.rewards import build_rewarder
    from tokenreward.world.oracle import grade

    sparse = build_rewarder("sparse", **world.resources())
    data = world.responses("test")[:n]
    scores = sparse.score([r["prompt"] for r in data], [r["response"] for r in data]).sequence_rewards.tolist()
    on_data = statistics.correlation(scores, [r["oracle_score"] for r in data])
    records = world.prompts("test")[:n]
    policy, tokenizer = load_causal_lm(world.policy_dir).eval(), load_tokenizer(world.tokenizer_dir)
    samples = generate(
        policy, tokenizer, [r["prompt"] for r in records], 64, do_sample=True, generator_seed=0, batch_size=64
    )
    kept = [i for i, g in enumerate(samples) if g.text.strip()]
    scores = sparse.score(
        [records[i]["prompt"] for i in kept], [samples[i].text for i in kept]
    ).sequence_rewards.tolist()
    on_policy = statistics.correlation(scores, [grade(records[i], samples[i].text).score for i in kept])
    return on_data, on_policy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", type=Path, default=None)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rewarders", default="sparse", help="world rewarders to compare, comma-separated")
    parser.add_argument("--agreement-samples", type=int, default=256)
    parser.add_argument("--kl-coef", type=float, default=None, help="PPO's KL coefficient (default: the trainer's)")
    parser.add_argument("--skip-oracle", action="store_true", help="leave out the run with the oracle as the reward")
    args = parser.parse_args()

    import tokenreward.trainers.ppo.trainer as ppo_module
    from tokenreward.evaluation import evaluate_policy
    from tokenreward.trainers.ppo import PPOConfig, run
    from tokenreward.world import open_world

    world = open_world(args.world)
    on_data, on_policy = reward_model_agreement(world, args.agreement_samples)
    print(f"reward model vs oracle, Pearson r: {on_data:.3f} on the world's test responses, "
          f"{on_policy:.3f} on SFT samples ({args.agreement_samples} each)")  # fmt: skip

    def evaluate(policy) -> dict[str, dict]:
        return {mode: evaluate_policy(policy, world, reference=world.policy_dir, greedy=mode == "greedy", seed=args.seed)
                for mode in ("greedy", "sampled")}  # fmt: skip

    rows = [("sft", evaluate(world.policy_dir), None)]
    records = {r["prompt"]: r for r in world.prompts("rl")}
    build = ppo_module.build_rewarder
    with tempfile.TemporaryDirectory() as tmp:
        for rewarder in ([] if args.skip_oracle else ["oracle"]) + [r for r in args.rewarders.split(",") if r]:
            ppo_module.build_rewarder = (
                (lambda *a, **k: OracleScoreRewarder(records)) if rewarder == "oracle" else build
            )
            config = PPOConfig(
                out=Path(tmp) / rewarder, world=Path(world.root), rewarder=rewarder, steps=args.steps, seed=args.seed,
                critic_init="policy" if rewarder == "oracle" else "reward_model", progress=False, save_every=args.steps,
                **({} if args.kl_coef is None else {"kl_coef": args.kl_coef}),
            )  # fmt: skip
            out = run(config, "ppo")
            log = (out / "log.jsonl").read_text().splitlines()
            rows.append((f"ppo-{rewarder}", evaluate(out / "final"), log))
        ppo_module.build_rewarder = build
    print(f"held-out test split ({rows[0][1]['greedy']['n']} prompts), {args.steps} PPO steps, seed {args.seed}")
    print(
        f"{'policy':<14} {'greedy oracle':>14} {'defects':>8} {'KL':>7} {'len':>6} {'sampled oracle':>15} {'defects':>8} {'KL':>7} {'len':>6}"
    )
    for name, result, _ in rows:
        cells = []
        for mode in ("greedy", "sampled"):
            r = result[mode]
            cells.append(f"{r['oracle_score']:>14.3f} {r['defect_rate']:>8.3f} {r['kl']:>7.2f} {r['length']:>6.1f}")
        print(f"{name:<14} {' '.join(cells)}")


if __name__ == "__main__":
    main()
