"""Where a rewarder places credit, per task family and per planted defect kind (run by hand).

For each response of a world split, the within-response AUROC of finding the defect tokens
(lower reward = defect; `tokenreward.bench.credit.auroc_within`), grouped by the response's
family and by each defect kind planted in it (responses with several kinds count in each).

    python benchmarks/credit_by_kind.py --rewarders red,uniform,tlcr [--world DIR] [--limit N]
"""

from __future__ import annotations

import argparse
from collections import defaultdict

from tokenreward.bench.credit import auroc_within
from tokenreward.rewards import build_rewarder
from tokenreward.world import open_world
from tokenreward.world.oracle import defect_tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", default=None)
    parser.add_argument("--rewarders", default="red,uniform")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    world = open_world(args.world)
    responses = world.responses(args.split)[: args.limit]
    for name in args.rewarders.split(","):
        scored = build_rewarder(name, **world.resources()).score(
            [r["prompt"] for r in responses], [r["response"] for r in responses]
        )
        groups: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
        for i, response in enumerate(responses):
            record = scored.record(i)
            flags = defect_tokens(response["credit_spans"], record["offsets"])
            for key in [f"family:{response['family']}"] + [f"kind:{k}" for k in response["kinds"]]:
                groups[key][0].append(record["rewards"])
                groups[key][1].append(flags)
        print(f"{name}: within-response AUROC (responses with both token classes)")
        for key in sorted(groups):
            rewards, flags = groups[key]
            if any(any(f) and not all(f) for f in flags):
                print(f"  {key:<28} {auroc_within(rewards, flags):.3f}  ({len(rewards)} responses)")


if __name__ == "__main__":
    main()
