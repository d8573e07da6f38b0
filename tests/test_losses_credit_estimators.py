"""gtpo and grpo_s against naive per-token loops written from the paper's equations (arXiv
2508.04349, Eqs. 3, 5, 6 and GRPO-S), ktae against a transcription of the authors' own functions
(github.com/xiaolizh1/KTAE, `compute_key_tokens.py` and `compute_ktae_outcome_advantage_and_keytokens`)
and its Fisher p-values against scipy's; on random groups with scattered rows, mixed lengths and
1/0 rewards, plus the degenerate groups."""

from __future__ import annotations

import statistics
from collections import defaultdict

import pytest
import torch

from tokenreward.losses.advantages import AdvantageBatch, AdvantageSettings, estimate_advantages
from tokenreward.losses.key_tokens import fisher_exact_p

EPS = 1e-6


def random_groups(seed: int, groups: int = 3, size: int = 5, vocab: int = 9):
    """Binary 1/0 rewards on the last token, entropies in (0, 3), token ids from a small vocabulary,
    the rows of a group scattered over the batch."""
    g = torch.Generator().manual_seed(seed)
    rows = groups * size
    lengths = torch.randint(1, 8, (rows,), generator=g).tolist()
    group = torch.arange(groups).repeat_interleave(size)[torch.randperm(rows, generator=g)]
    correct = torch.rand(rows, generator=g) < 0.5
    for k in range(groups):  # each group mixed: one correct and one wrong at least
        members = (group == k).nonzero().squeeze(-1)
        correct[members[0]], correct[members[1]] = True, False
    width = max(lengths)
    mask = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]
    rewards = torch.zeros(rows, width, dtype=torch.float64)
    rewards[torch.arange(rows), torch.tensor(lengths) - 1] = correct.double()
    entropy = (torch.rand(rows, width, generator=g, dtype=torch.float64) * 3).masked_fill(~mask, float("nan"))
    ids = torch.randint(0, vocab, (rows, width), generator=g).masked_fill(~mask, vocab + 1)
    return AdvantageBatch(rewards, mask, group=group, entropy=entropy, token_ids=ids), lengths


def check(advantages, expected, lengths):
    for i, n in enumerate(lengths):
        want = torch.tensor(expected[i] + [0.0] * (advantages.shape[1] - n), dtype=torch.float64)
        torch.testing.assert_close(advantages[i].double(), want, atol=1e-6, rtol=0)


def members(batch):
    index = defaultdict(list)
    for i, k in enumerate(batch.group.tolist()):
        index[k].append(i)
    return index.values()


def normalised(values: dict, keys) -> dict:
    """`(v - mean) / (stdev + eps)` over `keys` (std 0 for a single value)."""
    pool = [values[k] for k in keys]
    mean = statistics.fmean(pool)
    std = statistics.stdev(pool) if len(pool) > 1 else 0.0
    return {k: (values[k] - mean) / (std + EPS) for k in keys}


def naive_gtpo(batch, lengths, a1, a2):
    H = batch.entropy.tolist()
    correct = [float(batch.rewards[i].nansum()) > 0.5 for i in range(len(lengths))]
    advantages = [[0.0] * n for n in lengths]
    for rows in members(batch):
        shaped = {}
        for i in rows:
            side = [k for k in rows if correct[k] == correct[i]]
            for t in range(lengths[i]):
                active = [k for k in side if lengths[k] > t]
                if correct[i]:  # Eq. 3
                    total = sum(H[k][t] for k in active)
                    shaped[i, t] = a1 + a2 * H[i][t] / (total + EPS) * len(active)
                else:  # Eq. 5
                    total = sum(1 / (H[k][t] + EPS) for k in active)
                    shaped[i, t] = -a1 - a2 * (1 / (H[i][t] + EPS)) / total * len(active)
        for side in (True, False):  # Eq. 6, each side on its own
            keys = [(i, t) for i in rows if correct[i] == side for t in range(lengths[i])]
            if keys:
                for (i, t), value in normalised(shaped, keys).items():
                    advantages[i][t] = value
    return advantages


def naive_grpo_s(batch, lengths, b1, b2):
    H = batch.entropy.tolist()
    correct = [float(batch.rewards[i].nansum()) > 0.5 for i in range(len(lengths))]
    mean_entropy = [statistics.fmean(H[i][: lengths[i]]) for i in range(len(lengths))]
    advantages = [None] * len(lengths)
    for rows in members(batch):
        shaped = {}
        for i in rows:
            side = [k for k in rows if correct[k] == correct[i]]
            if correct[i]:
                total = sum(mean_entropy[k] for k in side)
                shaped[i] = b1 + b2 * mean_entropy[i] / (total + EPS) * len(side)
            else:
                total = sum(1 / (mean_entropy[k] + EPS) for k in side)
                shaped[i] = -b1 - b2 * (1 / (mean_entropy[i] + EPS)) / total * len(side)
        for i, value in normalised(shaped, rows).items():
            advantages[i] = [value] * lengths[i]
    return advantages


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("alpha", [(1.0, 0.1), (0.5, 2.0)])
def test_gtpo_equals_the_papers_equations_token_by_token(seed, alpha):
    batch, lengths = random_groups(seed)
    adv, returns = estimate_advantages("gtpo", batch, AdvantageSettings(gtpo_alpha=alpha))
    check(adv, naive_gtpo(batch, lengths, *alpha), lengths)
    assert returns is None


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("beta", [(1.0, 0.1), (0.5, 2.0)])
def test_grpo_s_equals_the_papers_equations(seed, beta):
    batch, lengths = random_groups(seed)
    adv, _ = estimate_advantages("grpo_s", batch, AdvantageSettings(grpo_s_beta=beta))
    check(adv, naive_grpo_s(batch, lengths, *beta), lengths)


# ---- the authors' KTAE functions, transcribed (two changes, marked: the p == 1 test and ties
# compared with a tolerance instead of exactly in float32; the hard-coded Qwen token id 151643 is
# the `ignored` argument)


def authors_compute_cohen(a, b):
    a = torch.clamp(a, min=0, max=1)
    b = torch.clamp(b, min=0, max=1)
    return torch.asin(torch.sqrt(a)) - torch.asin(torch.sqrt(b))


def authors_fisher_exact_test(input_tensor):
    a, b, c, d = torch.unbind(input_tensor, dim=1)
    R1, R2, C1 = a + b, c + d, a + c
    n = R1 + R2
    k_min = torch.max(torch.tensor(0, dtype=torch.float32), R1 + C1 - n)
    k_max = torch.min(R1, C1)
    k_values = torch.arange(torch.max(k_max) + 1, dtype=torch.float32)
    k_grid = torch.tile(k_values, (input_tensor.size(0), 1))
    mask = (k_grid >= k_min.unsqueeze(1)) & (k_grid <= k_max.unsqueeze(1))
    C1_grid, R1_grid, n_grid = (x.unsqueeze(1).expand_as(k_grid) for x in (C1, R1, n))

    def log_comb(n, k):
        return torch.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)

    log_p_k = log_comb(C1_grid, k_grid) + log_comb(n_grid - C1_grid, R1_grid - k_grid) - log_comb(n_grid, R1_grid)
    p_k = torch.exp(log_p_k) * mask.float()
    p_obs = torch.exp(log_comb(C1, a) + log_comb(n - C1, R1 - a) - log_comb(n, R1))
    tie = p_obs.unsqueeze(1) * (1 + 1e-5)  # changed: the authors compare p_k <= p_obs exactly
    return torch.sum(torch.where((p_k <= tie) & mask, p_k, 0.0), dim=1)


def authors_calculate_ig(table):
    t_a, t_b, t_c, t_d = table[:, 0], table[:, 1], table[:, 2], table[:, 3]
    t_n = t_a + t_b + t_c + t_d

    def safe_log(x):
        return torch.where(x > 0, torch.log2(x), torch.tensor(0.0))

    def entropy(p):
        return -p * safe_log(p)

    h_y = entropy((t_a + t_c) / t_n) + entropy((t_b + t_d) / t_n)

    def conditional_entropy(x1, x2):
        total = x1 + x2
        return torch.where(total > 0, entropy(x1 / total) + entropy(x2 / total), torch.tensor(0.0))

    h_y_x = ((t_a + t_b) / t_n) * conditional_entropy(t_a, t_b) + ((t_c + t_d) / t_n) * conditional_entropy(t_c, t_d)
    ig = h_y - h_y_x
    ig[t_n == 0] = 0
    return ig


def authors_compute_tf(correct_tensor, correct_mask, wrong_tensor, wrong_mask, table):
    k1, b = 2.0, 0.5
    correct_tokens, wrong_tokens = correct_tensor[correct_mask == 1], wrong_tensor[wrong_mask == 1]
    total_correct, total_wrong = correct_tokens.numel(), wrong_tokens.numel()
    avg_len = (total_correct + total_wrong) / 2
    correct_k = k1 * (1 - b + b * (total_correct / avg_len))
    wrong_k = k1 * (1 - b + b * (total_wrong / avg_len))
    correct_hist = torch.bincount(correct_tokens, minlength=table.size(0)).float() / total_correct
    wrong_hist = torch.bincount(wrong_tokens, minlength=table.size(0)).float() / total_wrong
    return torch.stack(
        [correct_hist * (k1 + 1) / (correct_hist + correct_k), wrong_hist * (k1 + 1) / (wrong_hist + wrong_k)], dim=1
    )


def authors_key_tokens(ids, mask, rewards, max_token_num, ignored, alpha=1.0, beta_ig=1.0, gamma_tf=1.0, top=1.0):
    correct, wrong = ids[rewards > 0.0], ids[rewards <= 0.0]
    correct_mask, wrong_mask = mask[rewards > 0.0], mask[rewards <= 0.0]
    result = torch.zeros(max_token_num + 1, dtype=torch.float32)
    if correct.size(0) == 0 or wrong.size(0) == 0:
        return result

    def distribution(tensor, tensor_mask):
        rows = torch.arange(tensor.shape[0])[:, None].expand_as(tensor).flatten()[tensor_mask.flatten() == 1]
        values = tensor.flatten()[tensor_mask.flatten() == 1]
        unique, inverse = torch.unique(values, return_inverse=True)
        return {v: len(torch.unique(rows[inverse == i])) for i, v in enumerate(unique.tolist())}

    correct_dist, wrong_dist = distribution(correct, correct_mask), distribution(wrong, wrong_mask)
    table = torch.zeros((max_token_num + 1, 4), dtype=torch.float32)
    for token in set(ids.flatten().tolist()):
        c, w = correct_dist.get(token, 0), wrong_dist.get(token, 0)
        if c + w:
            table[token] = torch.tensor([c, w, correct.size(0) - c, wrong.size(0) - w], dtype=torch.float32)
    ig = authors_calculate_ig(table)
    p = authors_fisher_exact_test(table)
    fisher = torch.where((p - 1.0).abs() > 1e-5, torch.exp(-2 * p), torch.tensor(0.0))  # changed: p != 1.0
    x = authors_compute_cohen(
        table[:, 0] / (table[:, 0] + table[:, 2] + 1e-10), table[:, 1] / (table[:, 1] + table[:, 3] + 1e-10)
    )
    if gamma_tf:
        tf = authors_compute_tf(correct, correct_mask, wrong, wrong_mask, table)
        x += tf[:, 0] / (tf[:, 1] + 1e-5) - tf[:, 1] / (tf[:, 0] + 1e-5)
    result = ((alpha * fisher + beta_ig * ig) * x) / (alpha + beta_ig)
    result = (torch.sigmoid(result) - 0.5) * 2 * top
    result[ignored] = 0.0
    return result


def authors_ktae(rewards, responses, mask, index, ignored, epsilon=1e-6, **options):
    scores = rewards.sum(dim=-1)
    by_id = defaultdict(list)
    for i in range(len(scores)):
        by_id[index[i]].append(i)
    means, stds, keys = {}, {}, {}
    for idx, rows in by_id.items():
        group_scores = torch.tensor([float(scores[i]) for i in rows])
        means[idx], stds[idx] = torch.mean(group_scores), torch.std(group_scores)
        keys[idx] = authors_key_tokens(
            responses[rows], mask[rows], group_scores, int(responses.max()), ignored, **options
        )
    normalised = torch.stack([(scores[i] - means[index[i]]) / (stds[index[i]] + epsilon) for i in range(len(scores))])
    weights = torch.stack([keys[index[i]][responses[i]] for i in range(len(scores))])
    return normalised[:, None] * mask + weights * mask


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("term_frequency", [True, False])
def test_ktae_equals_the_authors_functions(seed, term_frequency):
    batch, _ = random_groups(seed, groups=3, size=6)
    settings = AdvantageSettings(ktae_ignored_token=3, ktae_term_frequency=term_frequency)
    adv, returns = estimate_advantages("ktae", batch, settings)
    want = authors_ktae(
        batch.rewards.float(),
        batch.token_ids,
        batch.mask.float(),
        batch.group.tolist(),
        ignored=3,
        gamma_tf=float(term_frequency),
    )
    torch.testing.assert_close(adv.float(), want, atol=1e-6, rtol=0)
    assert returns is None
    assert (adv[batch.token_ids == 3] != want.new_zeros(())).any()  # the GRPO term stays on ignored tokens


def test_fisher_p_values_equal_scipys():
    stats = pytest.importorskip("scipy.stats")
    tables = [(a, b, c, d) for a in range(4) for b in range(4) for c in range(3) for d in range(3) if a + b + c + d]
    ours = fisher_exact_p(*(torch.tensor(column) for column in zip(*tables)))
    for table, p in zip(tables, ours.tolist()):
        assert p == pytest.approx(stats.fisher_exact([[table[0], table[1]], [table[2], table[3]]]).pvalue, abs=1e-9)


def degenerate(correct: bool):
    batch, lengths = random_groups(5, groups=1, size=4)
    last = torch.tensor(lengths) - 1
    batch.rewards.zero_()
    batch.rewards[torch.arange(4), last] = float(correct)
    return batch, lengths


@pytest.mark.parametrize("correct", [True, False])
def test_a_group_all_correct_or_all_wrong(correct):
    """ktae: no contrast, so 0 everywhere; gtpo and grpo_s keep their entropy term, normalised over
    the one side (the paper's equations with an empty other side)."""
    batch, lengths = degenerate(correct)
    assert torch.count_nonzero(estimate_advantages("ktae", batch)[0]) == 0
    gtpo, _ = estimate_advantages("gtpo", batch)
    check(gtpo, naive_gtpo(batch, lengths, 1.0, 0.1), lengths)
    assert float(gtpo[batch.mask].sum()) == pytest.approx(0.0, abs=1e-9) and gtpo[batch.mask].abs().max() > 0.1
    grpo_s, _ = estimate_advantages("grpo_s", batch)
    check(grpo_s, naive_grpo_s(batch, lengths, 1.0, 0.1), lengths)


@pytest.mark.parametrize("name", ["gtpo", "grpo_s", "ktae"])
def test_single_sample_groups_and_missing_inputs_are_refused(name):
    batch, _ = random_groups(0)
    lonely = AdvantageBatch(batch.rewards, batch.mask, torch.arange(len(batch.rewards)), batch.values)
    lonely.entropy, lonely.token_ids = batch.entropy, batch.token_ids
    with pytest.raises(ValueError, match=rf"{name}.*single sample"):
        estimate_advantages(name, lonely)
    missing = "token_ids" if name == "ktae" else "entropy"
    setattr(batch, missing, None)
    with pytest.raises(ValueError, match=f"needs {missing}"):
        estimate_advantages(name, batch)
