"""The registered advantage estimators against naive per-row loops, with groups given by ids
(rows of one prompt not adjacent), groups of one, and the sparse-reward reductions."""

from __future__ import annotations

import statistics

import pytest
import torch

from tokenreward.losses.advantages import ESTIMATORS, AdvantageBatch, AdvantageSettings, estimate_advantages
from tokenreward.losses.ppo import gae


def padded(lengths, seed=0, fill=float("nan")):
    """Random rewards right-padded with `fill` (never to be read)."""
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    mask = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]
    rewards = torch.randn(len(lengths), width, generator=g)
    return rewards.masked_fill(~mask, fill), mask


def rtg_lists(rewards, lengths):
    return [[sum(float(v) for v in rewards[i, t:n]) for t in range(n)] for i, n in enumerate(lengths)]


LENGTHS = [5, 2, 7, 3, 4, 6, 1]
GROUP = [2, 0, 2, 1, 0, 2, 7]  # prompt ids: rows of one prompt are scattered; prompt 7 has one sample


def check(advantages, expected, lengths):
    for i, n in enumerate(lengths):
        for t in range(advantages.shape[1]):
            want = expected[i][t] if t < n else 0.0
            assert advantages[i, t].item() == pytest.approx(want, abs=1e-5), (i, t)


def test_rloo_return_is_reward_to_go_minus_the_others_mean_return():
    rewards, mask = padded(LENGTHS)
    adv, returns = estimate_advantages("rloo_return", AdvantageBatch(rewards, mask, group=torch.tensor(GROUP)))
    rtg = rtg_lists(rewards, LENGTHS)
    expected = []
    for i in range(len(LENGTHS)):
        others = [rtg[j][0] for j in range(len(LENGTHS)) if GROUP[j] == GROUP[i] and j != i]
        baseline = sum(others) / len(others) if others else 0.0
        expected.append([g - baseline for g in rtg[i]])
    check(adv, expected, LENGTHS)
    assert returns is None


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_grpo_return_normalises_by_the_group_or_batch_std(scale):
    rewards, mask = padded(LENGTHS, seed=1)
    settings = AdvantageSettings(scale=scale, eps=1e-4)
    adv, _ = estimate_advantages("grpo_return", AdvantageBatch(rewards, mask, group=torch.tensor(GROUP)), settings)
    rtg = rtg_lists(rewards, LENGTHS)
    totals = [r[0] for r in rtg]
    expected = []
    for i in range(len(LENGTHS)):
        members = [totals[j] for j in range(len(LENGTHS)) if GROUP[j] == GROUP[i]]
        mean = statistics.fmean(members) if len(members) > 1 else 0.0
        std = {"group": statistics.stdev(members) if len(members) > 1 else 1.0, "batch": statistics.stdev(totals)}.get(
            scale
        )
        expected.append([(g - mean) / (std + 1e-4) if std is not None else g - mean for g in rtg[i]])
    check(adv, expected, LENGTHS)


def test_rloo_token_uses_the_others_reward_to_go_at_the_same_position():
    rewards, mask = padded(LENGTHS, seed=2)
    adv, _ = estimate_advantages("rloo_token", AdvantageBatch(rewards, mask, group=torch.tensor(GROUP)))
    rtg = rtg_lists(rewards, LENGTHS)
    expected = []
    for i, n in enumerate(LENGTHS):
        others = [j for j in range(len(LENGTHS)) if GROUP[j] == GROUP[i] and j != i]
        row = []
        for t in range(n):
            held = [rtg[j][min(t, LENGTHS[j] - 1)] for j in others]
            row.append(rtg[i][t] - (sum(held) / len(held) if held else 0.0))
        expected.append(row)
    check(adv, expected, LENGTHS)


def test_remax_token_and_sequence_use_the_greedy_response():
    lengths, greedy_lengths = [3, 5, 2], [6, 1, 2]
    rewards, mask = padded(lengths, seed=3)
    greedy, greedy_mask = padded(greedy_lengths, seed=4)
    batch = AdvantageBatch(rewards, mask, baseline_rewards=greedy, baseline_mask=greedy_mask)
    token, _ = estimate_advantages("remax_token", batch)
    sequence, _ = estimate_advantages("remax_sequence", batch)
    rtg, grtg = rtg_lists(rewards, lengths), rtg_lists(greedy, greedy_lengths)
    check(
        token,
        [[rtg[i][t] - grtg[i][min(t, greedy_lengths[i] - 1)] for t in range(n)] for i, n in enumerate(lengths)],
        lengths,
    )
    check(sequence, [[rtg[i][0] - grtg[i][0]] * n for i, n in enumerate(lengths)], lengths)


def test_gae_entry_is_the_gae_function_and_needs_values():
    rewards, mask = padded(LENGTHS, seed=5)
    values = torch.randn(rewards.shape, generator=torch.Generator().manual_seed(6))
    adv, returns = estimate_advantages(
        "gae", AdvantageBatch(rewards, mask, values=values), AdvantageSettings(gamma=0.9, lam=0.8)
    )
    expected_adv, expected_returns = gae(rewards, values, mask, 0.9, 0.8)
    torch.testing.assert_close(adv, expected_adv)
    torch.testing.assert_close(returns, expected_returns)
    with pytest.raises(ValueError, match="needs values"):
        estimate_advantages("gae", AdvantageBatch(rewards, mask))
    assert ESTIMATORS.get("gae").critic and not ESTIMATORS.get("rloo_token").critic


@pytest.mark.parametrize("token, sequence", [("rloo_token", "rloo_sequence"), ("rloo_return", "rloo_sequence")])
def test_with_a_sparse_reward_the_token_forms_are_the_sequence_forms(token, sequence):
    lengths = [3, 5, 2, 4, 6, 2]
    _, mask = padded(lengths)
    sparse = torch.zeros(mask.shape)
    sparse[torch.arange(6), torch.tensor(lengths) - 1] = torch.tensor([0.3, -1.2, 2.0, 0.7, 0.1, -0.4])
    batch = AdvantageBatch(sparse, mask, group=torch.tensor([1, 0, 1, 0, 2, 2]))
    torch.testing.assert_close(estimate_advantages(token, batch)[0], estimate_advantages(sequence, batch)[0])


def test_rloo_token_with_red_rewards_credits_each_token_past_its_prefix_score():
    """RED's r_t = s_t - s_{t-1} telescope: the sequence form collapses to plain RLOO, the token
    form gives A_it = A_i^RLOO - (s_{i,t-1} - s_{j,min(t,T_j)-1}) for the other sample j."""
    lengths = [4, 2, 3, 3]
    _, mask = padded(lengths)
    g = torch.Generator().manual_seed(1)
    s0 = torch.tensor([0.5, 0.5, -0.2, -0.2])
    prefix = [torch.cat([s0[i : i + 1], torch.randn(n, generator=g)]) for i, n in enumerate(lengths)]
    red = torch.zeros(mask.shape)
    for i, s in enumerate(prefix):
        red[i, : lengths[i]] = s[1:] - s[:-1]
    batch = AdvantageBatch(red, mask, group=torch.tensor([0, 0, 1, 1]))
    token, _ = estimate_advantages("rloo_token", batch)
    sequence, _ = estimate_advantages("rloo_sequence", batch)
    final = [float(s[-1]) for s in prefix]
    for i, n in enumerate(lengths):
        j = i ^ 1
        for t in range(n):
            expected = final[i] - final[j] - (float(prefix[i][t]) - float(prefix[j][min(t, lengths[j] - 1)]))
            assert token[i, t].item() == pytest.approx(expected, abs=1e-5)
            assert sequence[i, t].item() == pytest.approx(final[i] - final[j], abs=1e-5)
