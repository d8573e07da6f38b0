"""A segment reward model trained with `tokenreward train segment-reward-model` gives the same token
rewards on the policy's tokens in every stack: TRL's GRPO trainer (TokenRewardGRPOTrainer's reward
function, called by TRL's own `_calculate_rewards`), `tokenreward serve` (a real uvicorn server
answering `/get_reward` for response ids) and verl's reward loop (verl's RewardLoopWorker with the
`tokenreward` manager on verl's own DataProto; run where verl is installed), for each interpolation.
The segment model and its reference share a tokenizer that differs from the policy's; the threshold
is the median entropy of the reference on the responses, so they fall into segments of several tokens;
the model's saved location normaliser is not the identity."""

from __future__ import annotations

import json
import random
import statistics

import pytest
import stack_cases
import torch
from stack_cases import largest_gap

from tokenreward.cli import main
from tokenreward.jsonl import write_jsonl
from tokenreward.rewarders._location_normaliser import LocationNormaliser
from tokenreward.rewarders.segment import INTERPOLATIONS, SEGMENT_FILE, response_entropies, segment_ends
from tokenreward.rewards import build_rewarder
from tokenreward.testing import tiny_causal_lm, train_tokenizer

PROMPTS = ["What is 17 + 25?", "Say something kind."]
RESPONSES = [
    " 17 + 25 is 42. Thank you for asking.",
    " You are stupid. So there.",
    " Have a lovely day, friend!",
]
# (prompt, response, ends with EOS, uid)
ROWS = [(0, 0, True, "p0"), (1, 1, False, "p1"), (0, 2, True, "p0"), (1, 1, True, "p1")]
CASES = (PROMPTS, RESPONSES, ROWS)


def pairs(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    kind = ["Thank you.", "Have a nice day.", "Well done."]
    rude = ["You are stupid.", "Go away, idiot.", "What a dumb question."]
    return [
        {
            "prompt": f"What is {a} + {a}?",
            "chosen": f" {2 * a}. {rng.choice(kind)}",
            "rejected": f" {rng.choice(rude)}",
        }
        for a in (rng.randint(1, 50) for _ in range(n))
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`train segment-reward-model` on a tiny backbone (also the reference) at the reference's median
    entropy on the responses; a policy (tokenizer and model folder) with another vocabulary."""
    from tokenreward.encoding import encode_pairs

    root = tmp_path_factory.mktemp("segment_stacks")
    tokenizer = train_tokenizer()
    reference = tiny_causal_lm("llama", tokenizer)
    reference.save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    enc = encode_pairs(tokenizer, [PROMPTS[p] for p, *_ in ROWS], [RESPONSES[r] for _, r, *_ in ROWS])
    entropies = response_entropies(reference.eval(), enc, "cpu")
    threshold = statistics.median(float(e) for row in entropies for e in row)
    write_jsonl(root / "pairs.jsonl", pairs(24, seed=0))
    args = f"train segment-reward-model --data {root / 'pairs.jsonl'} --model {root / 'base'} --out {root / 'seg'}"
    options = ["--entropy-threshold", repr(threshold), "--batch-size", "8", "--lr", "3e-3", "--no-progress"]
    assert main([*args.split(), *options, "--normaliser-pairs", "0"]) == 0
    # a location normaliser written as docs/rewarders.md describes (fitting one needs scipy, which verl's env lacks)
    normaliser = LocationNormaliser(mean_slope=0.3, mean_intercept=-0.1, std_slope=-0.2, std_intercept=1.5)
    settings = {"entropy_threshold": threshold, "normaliser": normaliser.to_json()}
    (root / "seg" / "final" / SEGMENT_FILE).write_text(json.dumps(settings))
    policy = train_tokenizer(corpus=[p + r for p in PROMPTS for r in RESPONSES], vocab_size=280)
    policy.save_pretrained(root / "policy")
    tiny_causal_lm("llama", policy).save_pretrained(root / "policy")  # verl's validate_config reads its config
    ends = [segment_ends(row.tolist(), threshold) for row in entropies]
    assert any(len(e) > 1 and e[-1] + 1 > len(e) for e in ends)  # segments of several tokens, several per response
    paths = {"segment": str(root / "seg" / "final"), "reference": str(root / "base"), "policy": str(root / "policy")}
    return paths, policy


def resources(paths, interpolation: str) -> dict:
    return {
        "reward_model": paths["segment"],
        "reference": paths["reference"],
        "device": "cpu",
        "interpolation": interpolation,
    }


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_trl_and_serve_give_equal_token_rewards(trained, tmp_path, interpolation):
    paths, policy = trained
    given = resources(paths, interpolation)
    trl, returns = stack_cases.trl_rows(paths["policy"], policy, "segment", given, CASES, tmp_path)
    served, answer = stack_cases.served_rows(policy, "segment", given, CASES)
    assert largest_gap(trl, served) <= 1e-6
    assert returns == pytest.approx([sum(r) for r in trl], abs=1e-5)  # TRL's reward of the function: the return
    direct = build_rewarder("segment", **given).score(
        [PROMPTS[p] for p, *_ in ROWS], [RESPONSES[r] for _, r, *_ in ROWS]
    )
    assert answer["rewards"] == pytest.approx(direct.sequence_rewards.tolist(), abs=1e-6)
    assert build_rewarder("segment", **given).normaliser.mean_slope == 0.3  # the saved normaliser is read


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_verl_gives_the_token_rewards_of_trl_and_serve(trained, tmp_path, interpolation):
    pytest.importorskip("verl", reason="verl is not installed (pip install 'tokenreward[verl]')")
    from verl_cases import batch_of_rows, local, verl_config, worker_rm_scores

    paths, policy = trained
    data = batch_of_rows(policy, "left", CASES)
    options = (
        f"+reward.tokenreward.reference={paths['reference']}",
        f"+reward.tokenreward.interpolation={interpolation}",
    )
    config = verl_config(paths, "segment", *local("segment", *options))
    rm_scores, outputs, _ = worker_rm_scores(config, data)
    valid = data.batch["response_mask"].sum(1).tolist()
    verl = [rm_scores[i, : valid[i]].tolist() for i in range(len(ROWS))]
    assert all(torch.all(rm_scores[i, valid[i] :] == 0) for i in range(len(ROWS)))
    given = resources(paths, interpolation)
    trl, _ = stack_cases.trl_rows(paths["policy"], policy, "segment", given, CASES, tmp_path)
    served, _ = stack_cases.served_rows(policy, "segment", given, CASES)
    assert largest_gap(verl, trl) <= 1e-6 and largest_gap(verl, served) <= 1e-6
    assert [o["reward_extra_info"]["tokenreward_rewarder"] for o in outputs] == ["segment"] * len(ROWS)
