"""A PRM trained with `tokenreward train prm` gives the same token rewards on the policy's tokens in
every stack: TRL's GRPO trainer (TokenRewardGRPOTrainer's reward function, called by TRL's own
`_calculate_rewards`), `tokenreward serve` (a real uvicorn server answering `/get_reward` for
response ids) and verl's reward loop (verl's RewardLoopWorker with the `tokenreward` manager on
verl's own DataProto; run where verl is installed). The PRM's tokenizer differs from the
policy's. `serve` answers the rewards on the tokens as the rewarder aligns them; tokenreward's
RL layout (`align.terminal_layout`, what verl and TRL get) moves the reward of the token that
completes the text onto the EOS."""

from __future__ import annotations

import random

import pytest
import stack_cases
import torch
from stack_cases import largest_gap

from tokenreward.cli import main
from tokenreward.jsonl import write_jsonl
from tokenreward.rewards import build_rewarder
from tokenreward.testing import tiny_causal_lm, train_tokenizer

PROMPTS = ["What is 17 + 25?", "What is 5 + 3?"]
RESPONSES = [
    " 17 + 25 is 42.\nThank you for asking.",
    " 5 + 3 is 8.\nYou are stupid.\nSo the answer is 8.",
    " The answer is 42.",
]
# (prompt, response, ends with EOS, uid)
ROWS = [(0, 0, True, "p0"), (1, 1, False, "p1"), (0, 2, True, "p0"), (1, 1, True, "p1")]
PLACEMENTS = ["last", "spread", "difference"]


def stepwise(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(1, 99), rng.randint(1, 99)
        steps = [f"{a} + {b} is {a + b}.", rng.choice(["Thank you for asking.", "You are stupid."])]
        rows.append(
            {"prompt": f"What is {a} + {b}?", "completions": steps, "labels": [True, "stupid" not in steps[1]]}
        )
    return rows


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`train prm` on a tiny backbone; a policy (tokenizer and model folder) with another vocabulary."""
    root = tmp_path_factory.mktemp("prm_stacks")
    tokenizer = train_tokenizer()
    tiny_causal_lm("llama", tokenizer).save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    write_jsonl(root / "steps.jsonl", stepwise(32, seed=0))
    args = f"train prm --data {root / 'steps.jsonl'} --model {root / 'base'} --out {root / 'prm'} --epochs 2"
    assert main([*args.split(), "--batch-size", "8", "--lr", "3e-3", "--no-progress"]) == 0
    policy = train_tokenizer(corpus=[p + r for p in PROMPTS for r in RESPONSES], vocab_size=280)
    policy.save_pretrained(root / "policy")
    tiny_causal_lm("llama", policy).save_pretrained(root / "policy")  # verl's validate_config reads its config
    return {"prm": str(root / "prm" / "final"), "policy": str(root / "policy")}, policy


CASES = (PROMPTS, RESPONSES, ROWS)


def trl_rows(paths, policy, placement: str, tmp_path):
    resources = {"reward_model": paths["prm"], "device": "cpu", "placement": placement}
    return stack_cases.trl_rows(paths["policy"], policy, "prm", resources, CASES, tmp_path)


def served_rows(paths, policy, placement: str) -> tuple[list[list[float]], list[list[float]]]:
    resources = {"reward_model": paths["prm"], "device": "cpu", "placement": placement}
    rows, answer = stack_cases.served_rows(policy, "prm", resources, CASES)
    return rows, answer["step_scores"]


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_trl_and_serve_give_equal_token_rewards(trained, tmp_path, placement):
    paths, policy = trained
    trl, returns = trl_rows(paths, policy, placement, tmp_path)
    served, step_scores = served_rows(paths, policy, placement)
    assert largest_gap(trl, served) <= 1e-6
    assert returns == pytest.approx([sum(r) for r in trl], abs=1e-5)  # TRL's reward of the function: the return
    rewarder = build_rewarder("prm", reward_model=paths["prm"], device="cpu", placement=placement)
    direct = rewarder.score([PROMPTS[p] for p, *_ in ROWS], [RESPONSES[r] for _, r, *_ in ROWS])
    for got, expected in zip(step_scores, direct.step_scores):
        assert got == pytest.approx(expected, abs=1e-6)
    assert [len(s) for s in step_scores] == [2, 3, 1, 3]
    if placement != "spread":  # one nonzero reward per step, on the policy's tokens
        assert [sum(v != 0 for v in row) for row in trl] == [2, 3, 1, 3]


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_verl_gives_the_token_rewards_of_trl_and_serve(trained, tmp_path, placement):
    pytest.importorskip("verl", reason="verl is not installed (pip install 'tokenreward[verl]')")
    from verl_cases import batch_of_rows, local, verl_config, worker_rm_scores

    paths, policy = trained
    data = batch_of_rows(policy, "left", (PROMPTS, RESPONSES, ROWS))
    config = verl_config(paths, "prm", *local("prm", f"+reward.tokenreward.placement={placement}"))
    rm_scores, outputs, _ = worker_rm_scores(config, data)
    valid = data.batch["response_mask"].sum(1).tolist()
    verl = [rm_scores[i, : valid[i]].tolist() for i in range(len(ROWS))]
    assert all(torch.all(rm_scores[i, valid[i] :] == 0) for i in range(len(ROWS)))
    trl, _ = trl_rows(paths, policy, placement, tmp_path)
    served, _ = served_rows(paths, policy, placement)
    assert largest_gap(verl, trl) <= 1e-6 and largest_gap(verl, served) <= 1e-6
    assert [o["reward_extra_info"]["tokenreward_rewarder"] for o in outputs] == ["prm"] * len(ROWS)


def test_serve_answers_step_scores_in_both_endpoints_and_an_empty_list_for_a_blank_response(trained):
    import httpx

    from tokenreward.serve import build_state
    from tokenreward.testing.serving import ThreadServer

    paths, policy = trained
    rewarder = build_rewarder("prm", reward_model=paths["prm"], device="cpu")
    expected = rewarder.score(PROMPTS, RESPONSES[:2]).step_scores
    server = ThreadServer(build_state(rewarder, {"reward_model": paths["prm"]}, policy))
    try:
        records = httpx.post(
            server.url + "/v1/token_rewards", json={"prompts": PROMPTS, "responses": RESPONSES[:2]}, timeout=60
        ).json()["results"]
        ids = [policy(RESPONSES[0])["input_ids"], [policy.eos_token_id]]
        body = {"query": ["unused"] * 2, "prompts": PROMPTS, "response_ids": ids}
        answer = httpx.post(server.url + "/get_reward", json=body, timeout=60).json()
    finally:
        server.stop()
    for record, scores in zip(records, expected):
        assert record["step_scores"] == pytest.approx(scores, abs=1e-6)
    assert answer["step_scores"][0] == pytest.approx(expected[0], abs=1e-6)
    assert answer["step_scores"][1] == [] and answer["token_rewards"][1] == [0.0]  # blank: the empty reward
