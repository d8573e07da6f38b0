"""PPO-family losses and advantage estimators against naive loops, closed forms and hand values."""

from __future__ import annotations

import math

import pytest
import torch

from tokenreward.losses.ppo import (
    gae,
    held_reward_to_go,
    kl_estimate,
    masked_mean,
    masked_whiten,
    policy_loss,
    ppo_rewards,
    reward_to_go,
    sequence_returns,
    value_loss,
)

LENGTHS = [5, 2, 7, 1]


def padded_batch(lengths=LENGTHS, fill=float("nan"), seed=0):
    """Random rewards and values, right-padded with `fill` (which must never be read)."""
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    mask = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]
    rewards = torch.randn(len(lengths), width, generator=g)
    values = torch.randn(len(lengths), width, generator=g)
    return rewards.masked_fill(~mask, fill), values.masked_fill(~mask, fill), mask


def naive_gae(rewards, values, lengths, gamma, lam):
    """A_t = sum_l (gamma lam)^l delta_{t+l}, written out per sequence (double loop)."""
    out = torch.zeros(len(lengths), max(lengths), dtype=torch.float64)
    for i, n in enumerate(lengths):
        r = [float(v) for v in rewards[i, :n]]
        v = [float(x) for x in values[i, :n]] + [0.0]
        deltas = [r[t] + gamma * v[t + 1] - v[t] for t in range(n)]
        for t in range(n):
            out[i, t] = sum((gamma * lam) ** l * deltas[t + l] for l in range(n - t))
    return out


@pytest.mark.parametrize("gamma, lam", [(1.0, 0.95), (0.9, 0.8), (0.99, 0.0)])
def test_gae_matches_a_naive_backwards_sum(gamma, lam):
    rewards, values, mask = padded_batch()
    advantages, returns = gae(rewards, values, mask, gamma, lam)
    expected = naive_gae(rewards, values, LENGTHS, gamma, lam)
    torch.testing.assert_close(advantages.double(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(returns[mask], (expected.float() + values)[mask], rtol=1e-5, atol=1e-5)
    assert torch.all(advantages[~mask] == 0) and torch.all(returns[~mask] == 0)


def test_gae_with_lambda_one_is_reward_to_go_minus_value():
    rewards, values, mask = padded_batch(fill=0.0)
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    for i, n in enumerate(LENGTHS):
        for t in range(n):
            assert advantages[i, t].item() == pytest.approx(
                rewards[i, t:n].sum().item() - values[i, t].item(), abs=1e-5
            )
            assert returns[i, t].item() == pytest.approx(rewards[i, t:n].sum().item(), abs=1e-5)


def test_policy_loss_against_hand_computation():
    # ratios 1.5, 0.5, 1.1 with advantages 1, -2, 3 and clip 0.2:
    # token 0: max(-1*1.5, -1*1.2) = -1.2 (clipped); token 1: max(2*0.5, 2*0.8) = 1.6 (clipped);
    # token 2: max(-3.3, -3.3) = -3.3 (inside the range). Loss = (-1.2 + 1.6 - 3.3) / 3.
    old = torch.tensor([[-1.0, -2.0, -0.5, -9.0]])
    logprobs = old + torch.log(torch.tensor([[1.5, 0.5, 1.1, 7.0]]))
    advantages = torch.tensor([[1.0, -2.0, 3.0, 100.0]])
    mask = torch.tensor([[True, True, True, False]])
    loss, stats = policy_loss(logprobs, old, advantages, mask, clip=0.2)
    assert loss.item() == pytest.approx((-1.2 + 1.6 - 3.3) / 3, abs=1e-6)
    assert stats["clip_frac"].item() == pytest.approx(2 / 3)
    expected_kl = (math.log(1.5) ** 2 + math.log(0.5) ** 2 + math.log(1.1) ** 2) / 6
    assert stats["approx_kl"].item() == pytest.approx(expected_kl, abs=1e-6)


def test_policy_loss_gradient_is_zero_where_clipped():
    old = torch.zeros(1, 2)
    logprobs = torch.log(torch.tensor([[1.5, 1.1]])).requires_grad_()
    loss, _ = policy_loss(logprobs, old, torch.tensor([[1.0, 1.0]]), torch.ones(1, 2, dtype=torch.bool))
    loss.backward()
    # d/dlogp of -A * exp(logp - old) / 2 = -A * ratio / 2 for the unclipped token only
    torch.testing.assert_close(logprobs.grad, torch.tensor([[0.0, -1.1 / 2]]))


def test_value_loss_against_hand_computation():
    # old 0, new 1, return 0.5: unclipped (1-.5)^2=.25, clipped (0.2-.5)^2=.09 -> .25
    # old 0, new -1, return -1: unclipped 0, clipped (-0.2+1)^2=.64 -> .64 (clipped taken)
    # old 1, new 1.1, return 3: both inside the clip range -> (1.1-3)^2 = 3.61
    values = torch.tensor([[1.0, -1.0, 1.1, 5.0]])
    old = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    returns = torch.tensor([[0.5, -1.0, 3.0, 0.0]])
    mask = torch.tensor([[True, True, True, False]])
    loss, stats = value_loss(values, old, returns, mask, clip=0.2)
    assert loss.item() == pytest.approx(0.5 * (0.25 + 0.64 + 3.61) / 3, abs=1e-6)
    assert stats["value_clip_frac"].item() == pytest.approx(1 / 3)


def test_global_token_count_makes_shard_gradients_average_to_the_full_batch():
    """What data parallelism relies on: per-shard losses normalised by the global token count
    times the number of shards, averaged, give the full batch's token-mean gradient."""
    rewards, _, mask = padded_batch(fill=0.0)
    old = torch.randn_like(rewards)
    logprobs = (old + 0.3 * torch.randn_like(rewards)).requires_grad_()
    full, _ = policy_loss(logprobs, old, rewards, mask)
    (full_grad,) = torch.autograd.grad(full, logprobs)
    shard_grads = torch.zeros_like(logprobs)
    for rows in (slice(0, 2), slice(2, 4)):
        part, _ = policy_loss(logprobs[rows], old[rows], rewards[rows], mask[rows], count=mask.sum() / 2)
        (grad,) = torch.autograd.grad(part, logprobs)
        shard_grads += grad / 2
    torch.testing.assert_close(shard_grads, full_grad)


def test_whitening_uses_only_real_tokens():
    values, _, mask = padded_batch(fill=1e6)
    whitened = masked_whiten(values, mask)
    real = values[mask].double()
    expected = (real - real.mean()) / torch.sqrt(real.var(unbiased=False) + 1e-8)
    torch.testing.assert_close(whitened[mask].double(), expected, rtol=1e-5, atol=1e-5)
    assert torch.all(whitened[~mask] == 0)
    kept = masked_whiten(values, mask, shift_mean=False)
    torch.testing.assert_close(kept[mask].double(), expected + real.mean(), rtol=1e-5, atol=1e-5)


def two_distributions(vocab=11, seed=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(vocab, generator=g, dtype=torch.float64), torch.randn(vocab, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_unbiased_kl_estimators_have_the_exact_kl_as_expectation(estimator):
    policy_logits, ref_logits = two_distributions()
    logp, ref_logp = policy_logits.log_softmax(-1), ref_logits.log_softmax(-1)
    expectation = (logp.exp() * kl_estimate(logp, ref_logp, estimator)).sum()
    exact = torch.distributions.kl_divergence(
        torch.distributions.Categorical(logits=policy_logits), torch.distributions.Categorical(logits=ref_logits)
    )
    assert expectation.item() == pytest.approx(exact.item(), rel=1e-9)


def test_k3_is_never_negative_and_k1_is_the_log_ratio():
    logp, ref_logp = torch.randn(1000, dtype=torch.float64), torch.randn(1000, dtype=torch.float64)
    assert torch.all(kl_estimate(logp, ref_logp, "k3") >= 0)
    torch.testing.assert_close(kl_estimate(logp, ref_logp, "k1"), logp - ref_logp)
    torch.testing.assert_close(kl_estimate(logp, ref_logp, "k2"), 0.5 * (logp - ref_logp) ** 2)
    with pytest.raises(ValueError, match="k4"):
        kl_estimate(logp, ref_logp, "k4")


def kl_loss_gradient(estimator, policy_logits, ref_logits):
    """On-policy expected gradient of `mean_{y ~ pi} k(y)` (sampling weights held fixed)."""
    logits = policy_logits.clone().requires_grad_()
    logp = logits.log_softmax(-1)
    loss = (logp.exp().detach() * kl_estimate(logp, ref_logits.log_softmax(-1), estimator)).sum()
    (grad,) = torch.autograd.grad(loss, logits)
    return grad


def exact_kl_gradient(policy_logits, ref_logits, reverse):
    logits = policy_logits.clone().requires_grad_()
    pi = torch.distributions.Categorical(logits=logits)
    ref = torch.distributions.Categorical(logits=ref_logits)
    kl = torch.distributions.kl_divergence(ref, pi) if reverse else torch.distributions.kl_divergence(pi, ref)
    (grad,) = torch.autograd.grad(kl, logits)
    return grad


def test_kl_estimators_as_losses_have_the_documented_gradients():
    policy_logits, ref_logits = two_distributions(seed=5)
    torch.testing.assert_close(kl_loss_gradient("k1", policy_logits, ref_logits), torch.zeros_like(policy_logits))
    torch.testing.assert_close(
        kl_loss_gradient("k2", policy_logits, ref_logits), exact_kl_gradient(policy_logits, ref_logits, False)
    )
    torch.testing.assert_close(
        kl_loss_gradient("k3", policy_logits, ref_logits), exact_kl_gradient(policy_logits, ref_logits, True)
    )


def test_ppo_rewards_subtract_the_kl_on_real_tokens_only():
    token_rewards, _, mask = padded_batch(fill=float("nan"))
    kl = torch.rand_like(token_rewards)
    rewards = ppo_rewards(token_rewards, kl, mask, kl_coef=0.1)
    for i, n in enumerate(LENGTHS):
        for t in range(rewards.shape[1]):
            expected = token_rewards[i, t].item() - 0.1 * kl[i, t].item() if t < n else 0.0
            assert rewards[i, t].item() == pytest.approx(expected, abs=1e-6)


def test_reward_to_go_against_naive_loop():
    rewards, _, mask = padded_batch()
    rtg = reward_to_go(rewards, mask)
    for i, n in enumerate(LENGTHS):
        for t in range(n):
            assert rtg[i, t].item() == pytest.approx(sum(float(v) for v in rewards[i, t:n]), abs=1e-5)
    assert torch.all(rtg[~mask] == 0)
    torch.testing.assert_close(sequence_returns(rewards, mask), rtg[:, 0])


def test_held_reward_to_go_keeps_the_last_tokens_value_past_the_end():
    lengths = [3, 1]
    rewards, _, mask = padded_batch(lengths, fill=float("nan"))
    held = held_reward_to_go(rewards, mask, width=5)
    assert held.shape == (2, 5)
    torch.testing.assert_close(held[0, :3], reward_to_go(rewards, mask)[0, :3])
    torch.testing.assert_close(held[0, 3:], rewards[0, 2].expand(2))
    torch.testing.assert_close(held[1], rewards[1, 0].expand(5))


def test_masked_mean_ignores_padding_and_honours_count():
    values, _, mask = padded_batch()
    assert masked_mean(values, mask).item() == pytest.approx(values[mask].mean().item(), abs=1e-6)
    assert masked_mean(values, mask, count=100).item() == pytest.approx(values[mask].sum().item() / 100, abs=1e-6)
