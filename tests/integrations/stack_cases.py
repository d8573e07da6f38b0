"""Shared by the cross-stack tests (`test_prm_stacks.py`, `test_segment_stacks.py`): the token rewards one
rewarder gives on the policy's tokens through TRL's GRPO trainer and through a real `tokenreward serve`.
`cases` are (prompts, responses, rows), each row (prompt, response, ends with EOS, uid)."""

from __future__ import annotations

from typing import Any

from tokenreward.align import offsets_from_ids, terminal_layout


def policy_ids(policy, cases) -> list[list[int]]:
    """The policy's ids of each row's response, with the EOS where the row ends with one."""
    _, responses, rows = cases
    return [policy(responses[r])["input_ids"] + ([policy.eos_token_id] if eos else []) for _, r, eos, _ in rows]


def trl_rows(policy_path: str, policy, rewarder: str, resources: dict[str, Any], cases, tmp_path):
    """The rows TokenRewardGRPOTrainer takes its advantages from, and TRL's reward of the function."""
    from datasets import Dataset
    from trl import GRPOConfig

    from tokenreward.integrations.trl import TokenRewardGRPOTrainer

    texts, _, rows = cases
    args = GRPOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=2, report_to=[], use_cpu=True
    )
    trainer = TokenRewardGRPOTrainer(
        policy_path,
        rewarder,
        rewarder_resources=resources,
        args=args,
        train_dataset=Dataset.from_list([{"prompt": p} for p in texts]),
        processing_class=policy,
    )
    ids = policy_ids(policy, cases)
    prompts = [texts[p] for p, *_ in rows]
    decoded = [policy.decode(row, skip_special_tokens=True) for row in ids]
    per_function = trainer._calculate_rewards([{"prompt": p} for p in prompts], prompts, decoded, ids)
    last = trainer.token_reward_function.last
    return [last.token_rewards(i) for i in range(len(rows))], per_function[:, 0].tolist()


def served_rows(policy, rewarder: str, resources: dict[str, Any], cases) -> tuple[list[list[float]], dict]:
    """`/get_reward` of a real server for the response ids, in tokenreward's RL layout; and its whole answer."""
    import httpx

    from tokenreward.rewards import build_rewarder
    from tokenreward.serve import build_state
    from tokenreward.testing.serving import ThreadServer

    texts, _, rows = cases
    server = ThreadServer(build_state(build_rewarder(rewarder, **resources), resources, policy))
    try:
        ids = policy_ids(policy, cases)
        body = {"query": ["unused"] * len(rows), "prompts": [texts[p] for p, *_ in rows], "response_ids": ids}
        answer = httpx.post(server.url + "/get_reward", json=body, timeout=60).json()
    finally:
        server.stop()
    laid_out = []
    for row, tokens in zip(answer["token_rewards"], ids):
        text, offsets = offsets_from_ids(policy, tokens)
        laid_out.append(terminal_layout(row, offsets, len(text)))
    return laid_out, answer


def largest_gap(a: list[list[float]], b: list[list[float]]) -> float:
    assert [len(r) for r in a] == [len(r) for r in b]
    return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))
