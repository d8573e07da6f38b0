"""The `verifiable` rewarder: the world oracle's (or a checker's) 1/0 on the response's last token."""

from __future__ import annotations

import pytest

from tokenreward.rewards import build_rewarder
from tokenreward.world.oracle import oracle_reward, verifiable_families


def says_yes(prompt, response: str) -> bool:
    """A checker for the tests: right when the response contains "yes"."""
    return "yes" in response


def says_maybe(prompt, response: str) -> str:
    return "maybe"


def verifiable_records(world, per_family: int = 4) -> list[dict]:
    """Response records of the test split, `per_family` of each verifiable family."""
    chosen = []
    for name in verifiable_families():
        chosen += [r for r in world.responses("test") if r["family"] == name][:per_family]
    return chosen


def test_rewards_are_the_oracles_verdict_on_the_last_token(small_world):
    records = verifiable_records(small_world)
    prompts, responses = [r["prompt"] for r in records], [r["response"] for r in records]
    index = {r["prompt"]: r for r in small_world.prompts("test")}
    expected = [oracle_reward(index[p], y, "verifiable") for p, y in zip(prompts, responses)]
    assert 0 < sum(expected) < len(expected)  # both verdicts occur
    rewarder = build_rewarder("verifiable", small_world.resources())  # the world comes with its resources
    out = rewarder.score(prompts, responses)
    assert out.sequence_rewards.tolist() == expected
    for i, verdict in enumerate(expected):
        rewards = out.token_rewards(i)
        assert len(rewards) == len(rewarder.tokenizer(responses[i], add_special_tokens=False)["input_ids"])
        assert rewards == [0.0] * (len(rewards) - 1) + [verdict]


def test_a_checker_function_replaces_the_oracle_and_needs_no_world(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENREWARD_WORLD", str(tmp_path / "no-world"))  # the oracle would fail here
    rewarder = build_rewarder("verifiable", checker=f"{__name__}:says_yes")
    responses = ["yes, it is.", "no."]
    out = rewarder.score(["q1", "q2"], responses)
    assert out.sequence_rewards.tolist() == [1.0, 0.0]
    # without a tokenizer the response is one span; aligned to other tokens the reward lands on the last one
    assert out.offsets[0] == [(0, len(responses[0]))]
    aligned = rewarder.score(["q"], [responses[0]], align_to=[[(0, 3), (3, 6), (6, 11)]])
    assert aligned.token_rewards(0) == [0.0, 0.0, 1.0]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"checker": "no_such_module_here:f"}, r"checker='no_such_module_here:f': cannot import"),
        ({"checker": f"{__name__}:missing"}, "has no function 'missing'"),
        ({"checker": "just_a_module"}, "expected package.module:function"),
    ],
)
def test_a_bad_checker_is_refused_when_the_rewarder_is_built(options, message):
    with pytest.raises(ValueError, match=message):
        build_rewarder("verifiable", **options)


def test_prompts_the_oracle_cannot_check_are_refused_in_one_line(small_world):
    rewarder = build_rewarder("verifiable", world=str(small_world.root))
    other = next(r for r in small_world.prompts("test") if r["family"] not in verifiable_families())
    families = ", ".join(f for f in verifiable_families() if f in small_world.families)
    with pytest.raises(ValueError, match=f"is of the {other['family']} family .* verifiable families: {families}$"):
        rewarder.score([other["prompt"]], [" yes"])
    with pytest.raises(ValueError, match="prompt 'x{60}' is not a prompt of the world"):
        rewarder.score(["x" * 200], [" yes"])
    with pytest.raises(ValueError, match="returned 'maybe' .* must return a finite number or a bool"):
        build_rewarder("verifiable", checker=f"{__name__}:says_maybe").score(["q"], ["a"])


def has_digit(prompt, response: str) -> bool:
    return any(c.isdigit() for c in response)


def test_rloo_trains_on_the_chosen_families_and_feeds_the_estimator_the_verdicts(small_world, tmp_path, monkeypatch):
    """One GTPO step on arithmetic and facts prompts: the estimator gets each response's 1/0 as its
    return (KL in the loss), the entropies, the token ids and the groups of K samples."""
    import torch

    import tokenreward.trainers.ppo.trainer as ppo_module
    from tokenreward.losses.ppo import sequence_returns
    from tokenreward.models import load_tokenizer
    from tokenreward.trainers.ppo.config import RLOOConfig

    seen = {}
    original = ppo_module.estimate_advantages
    monkeypatch.setattr(ppo_module, "estimate_advantages", lambda n, b, s: seen.update(batch=b) or original(n, b, s))
    settings = dict(world=small_world.root, rewarder="verifiable", estimator="gtpo", steps=1, batch_size=2)
    settings.update(samples_per_prompt=3, mini_batch_size=6, max_new_tokens=12, kl_in="loss", kl_estimator="k3")
    config = RLOOConfig(
        out=tmp_path / "run",
        prompt_families=["arithmetic", "facts"],
        rewarder_options=[f"checker={__name__}:has_digit"],
        **settings,
    )
    trainer = ppo_module.PPOTrainer(config, "rloo")
    expected = [r["prompt"] for r in small_world.prompts("rl") if r["family"] in ("arithmetic", "facts")]
    assert [r["prompt"] for r in trainer.records] == expected
    trainer.train()
    batch, tokenizer = seen["batch"], load_tokenizer(small_world.tokenizer_dir)
    texts = [tokenizer.decode(ids[mask]) for ids, mask in zip(batch.token_ids, batch.mask)]
    verdicts = [float(has_digit("", t)) for t in texts]
    assert sequence_returns(batch.rewards, batch.mask).tolist() == verdicts and 0 < sum(verdicts) < len(verdicts)
    assert batch.group.tolist() == [0, 0, 0, 1, 1, 1]
    assert batch.entropy.shape == batch.mask.shape and torch.all(batch.entropy[batch.mask] > 0)
    with pytest.raises(ValueError, match="--prompt-families: 'nope' is not a family of the world"):
        ppo_module.PPOTrainer(RLOOConfig(out=tmp_path / "bad", prompt_families=["nope"], **settings), "rloo")
    with pytest.raises(ValueError, match="--prompt-families selects among the world's prompts"):
        RLOOConfig(out=tmp_path / "bad", prompt_families=["facts"], prompts=tmp_path / "p.jsonl", **settings)
