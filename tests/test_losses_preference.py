"""Preference losses against hand computations, and DPO / SimPO against TRL's trainers."""

from __future__ import annotations

import math

import pytest
import torch

from tokenreward.losses.preference import (
    dpo_logits,
    dpo_loss,
    logistic_loss,
    select_tokens,
    sepo_selected_means,
    sequence_kl,
    simpo_logits,
    simpo_loss,
    tdpo1_loss,
    tdpo2_loss,
    tgdpo_loss,
    token_regulariser,
    treg_loss,
)
from tokenreward.losses.preference_methods import PREFERENCE_METHODS, PairBatch


def softplus(x: float) -> float:
    """-log sigma(z) = log(1 + exp(-z)), written out for the hand computations."""
    return math.log1p(math.exp(-x))


def sigma(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


@pytest.fixture
def tokens():
    """Per-token log-probs of 3 pairs, padded to 5, with masks and token rewards."""
    g = torch.Generator().manual_seed(1)
    logp_w = -torch.rand(3, 5, generator=g) * 3
    logp_l = -torch.rand(3, 5, generator=g) * 3
    ref_w = -torch.rand(3, 5, generator=g) * 3
    ref_l = -torch.rand(3, 5, generator=g) * 3
    mask_w = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], dtype=torch.float)
    mask_l = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.float)
    r_w = torch.rand(3, 5, generator=g) - 0.5
    r_l = torch.rand(3, 5, generator=g) - 0.5
    return logp_w, logp_l, ref_w, ref_l, mask_w, mask_l, r_w, r_l


def rows(t: torch.Tensor, m: torch.Tensor) -> list[list[float]]:
    """The masked values of each row as plain python lists."""
    return [[float(v) for v, keep in zip(t[i], m[i]) if keep] for i in range(t.shape[0])]


def test_dpo_matches_hand_computation():
    pw, pl, rw, rl = (
        torch.tensor([-3.0, -10.0]),
        torch.tensor([-4.0, -2.0]),
        torch.tensor([-3.5, -9.0]),
        torch.tensor([-3.0, -2.5]),
    )
    expected = [softplus(0.1 * ((-3.0 + 3.5) - (-4.0 + 3.0))), softplus(0.1 * ((-10.0 + 9.0) - (-2.0 + 2.5)))]
    assert dpo_loss(pw, pl, rw, rl, beta=0.1).tolist() == pytest.approx(expected, abs=1e-6)
    assert dpo_loss(pw, pl, rw, rl).tolist() == pytest.approx(expected, abs=1e-6)  # beta = 0.1 by default


def test_simpo_matches_hand_computation():
    pw, pl = torch.tensor([-6.0, -1.0]), torch.tensor([-4.0, -9.0])
    lw, ll = torch.tensor([3.0, 2.0]), torch.tensor([4.0, 3.0])
    expected = [softplus(2.0 * -6 / 3 - 2.0 * -4 / 4 - 1.0), softplus(2.0 * -1 / 2 - 2.0 * -9 / 3 - 1.0)]
    assert simpo_loss(pw, pl, lw, ll, beta=2.0, gamma=1.0).tolist() == pytest.approx(expected, abs=1e-6)
    expected_other = softplus(2.5 * -6 / 3 - 2.5 * -4 / 4 - 0.3)
    assert float(simpo_loss(pw, pl, lw, ll, beta=2.5, gamma=0.3)[0]) == pytest.approx(expected_other, abs=1e-6)


def test_token_regulariser_matches_loop(tokens):
    logp_w, _, _, _, mask_w, _, r_w, _ = tokens
    got = token_regulariser(logp_w, r_w, mask_w)
    for i, (lp, r) in enumerate(zip(rows(logp_w, mask_w), rows(r_w, mask_w))):
        assert float(got[i]) == pytest.approx(-sum(a * b for a, b in zip(r, lp)), abs=1e-6)


def test_dpo_reg_value_matches_hand_computation(tokens):
    logp_w, logp_l, ref_w, ref_l, mask_w, mask_l, r_w, r_l = tokens
    beta, alpha = 0.1, 0.25
    pw, pl = (logp_w * mask_w).sum(-1), (logp_l * mask_l).sum(-1)
    rw, rl = (ref_w * mask_w).sum(-1), (ref_l * mask_l).sum(-1)
    got = treg_loss(
        dpo_logits(pw, pl, rw, rl, beta),
        token_regulariser(logp_w, r_w, mask_w),
        token_regulariser(logp_l, r_l, mask_l),
        alpha,
    )
    for i in range(3):
        dw = sum(rows(logp_w, mask_w)[i]) - sum(rows(ref_w, mask_w)[i])
        dl = sum(rows(logp_l, mask_l)[i]) - sum(rows(ref_l, mask_l)[i])
        reg = -sum(a * b for a, b in zip(rows(r_w, mask_w)[i], rows(logp_w, mask_w)[i]))
        reg -= sum(a * b for a, b in zip(rows(r_l, mask_l)[i], rows(logp_l, mask_l)[i]))
        weight = sigma(beta * dl - beta * dw)
        assert float(got[i]) == pytest.approx(softplus(beta * (dw - dl)) + alpha * weight * reg, abs=1e-6)


def test_treg_with_alpha_zero_is_dpo_exactly(tokens):
    logp_w, logp_l, ref_w, ref_l, mask_w, mask_l, r_w, r_l = tokens
    grads = []
    for regularised in (True, False):
        lw, ll = logp_w.clone().requires_grad_(), logp_l.clone().requires_grad_()
        pw, pl = (lw * mask_w).sum(-1), (ll * mask_l).sum(-1)
        rw, rl = (ref_w * mask_w).sum(-1), (ref_l * mask_l).sum(-1)
        if regularised:
            loss = treg_loss(
                dpo_logits(pw, pl, rw, rl),
                token_regulariser(lw, r_w, mask_w),
                token_regulariser(ll, r_l, mask_l),
                alpha=0.0,
            )
        else:
            loss = dpo_loss(pw, pl, rw, rl)
        loss.sum().backward()
        grads.append((loss.detach(), lw.grad, ll.grad))
    assert torch.equal(grads[0][0], grads[1][0])
    assert torch.equal(grads[0][1], grads[1][1]) and torch.equal(grads[0][2], grads[1][2])


@pytest.mark.parametrize("base", ["dpo", "simpo"])
def test_sequence_weight_carries_no_gradient(tokens, base):
    """d L / d log pi(y_t) equals the hand gradient in which the weight w is a constant."""
    logp_w, logp_l, ref_w, ref_l, mask_w, mask_l, r_w, r_l = tokens
    beta, alpha, gamma = (0.1, 0.5, 0.0) if base == "dpo" else (2.0, 0.5, 1.0)
    lw, ll = logp_w.clone().requires_grad_(), logp_l.clone().requires_grad_()
    pw, pl = (lw * mask_w).sum(-1), (ll * mask_l).sum(-1)
    len_w, len_l = mask_w.sum(-1), mask_l.sum(-1)
    if base == "dpo":
        z = dpo_logits(pw, pl, (ref_w * mask_w).sum(-1), (ref_l * mask_l).sum(-1), beta)
        dz_dw, dz_dl = torch.full((3,), beta), torch.full((3,), -beta)
    else:
        z = simpo_logits(pw, pl, len_w, len_l, beta, gamma)
        dz_dw, dz_dl = beta / len_w, -beta / len_l
    loss = treg_loss(z, token_regulariser(lw, r_w, mask_w), token_regulariser(ll, r_l, mask_l), alpha)
    loss.sum().backward()
    for i in range(3):
        s = sigma(-float(z[i].detach()))  # w = sigma(-z), also -dL_base/dz
        for t in range(5):
            hand_w = (-s * float(dz_dw[i]) - alpha * s * float(r_w[i, t])) * float(mask_w[i, t])
            hand_l = (-s * float(dz_dl[i]) - alpha * s * float(r_l[i, t])) * float(mask_l[i, t])
            assert float(lw.grad[i, t]) == pytest.approx(hand_w, abs=1e-6)
            assert float(ll.grad[i, t]) == pytest.approx(hand_l, abs=1e-6)


def test_sequence_kl_matches_vocabulary_loop():
    g = torch.Generator().manual_seed(3)
    from tokenreward.logprobs import head_stats

    ref_rows, pol_rows = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    ref_head, pol_head = torch.nn.Linear(5, 7), torch.nn.Linear(5, 7)
    with torch.no_grad():
        ref_logits, pol_logits = ref_head(ref_rows).reshape(2, 3, 7), pol_head(pol_rows).reshape(2, 3, 7)
        token_kl = head_stats(
            pol_rows, pol_head, torch.zeros(6, dtype=torch.long), reference=(ref_rows, ref_head, None), chunk=4
        ).kl
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    got = sequence_kl(token_kl.reshape(2, 3), mask)
    for b in range(2):
        total = 0.0
        for t in range(3):
            if mask[b, t]:
                zr = sum(math.exp(v) for v in ref_logits[b, t].tolist())
                zp = sum(math.exp(v) for v in pol_logits[b, t].tolist())
                for v in range(7):
                    p, q = math.exp(float(ref_logits[b, t, v])) / zr, math.exp(float(pol_logits[b, t, v])) / zp
                    total += p * math.log(p / q)
        assert float(got[b]) == pytest.approx(total, abs=1e-5)


def test_tdpo_losses_match_hand_computation():
    pw, pl, rw, rl = torch.tensor([-3.0]), torch.tensor([-5.0]), torch.tensor([-4.0]), torch.tensor([-4.5])
    kw, kl = torch.tensor([0.3], requires_grad=True), torch.tensor([0.8], requires_grad=True)
    margin = (-3.0 + 4.0) - (-5.0 + 4.5)
    assert float(tdpo1_loss(pw, pl, rw, rl, kw, kl, beta=0.1).detach()) == pytest.approx(
        softplus(0.1 * (margin - (0.8 - 0.3))), abs=1e-6
    )
    loss = tdpo2_loss(pw, pl, rw, rl, kw, kl, beta=0.1, alpha=0.5)
    assert float(loss) == pytest.approx(softplus(0.1 * margin - 0.5 * 0.1 * (0.8 - 0.3)), abs=1e-6)
    loss.sum().backward()
    assert kw.grad is None  # sg(SeqKL(y_w)): no gradient reaches it
    z = 0.1 * margin - 0.05 * 0.5
    assert float(kl.grad) == pytest.approx(sigma(-z) * 0.05, abs=1e-7)


def test_tgdpo_matches_hand_computation(tokens):
    logp_w, logp_l, ref_w, ref_l, mask_w, mask_l, rho_w, rho_l = tokens
    rho_w, rho_l = rho_w * 8, rho_l * 8
    beta, a = 0.1, 0.5
    got = tgdpo_loss(logp_w, logp_l, ref_w, ref_l, mask_w, mask_l, rho_w, rho_l, beta, a)
    for i in range(3):
        chosen = sum(
            beta * (1 + a * beta * rho) * (lp - rf)
            for lp, rf, rho in zip(rows(logp_w, mask_w)[i], rows(ref_w, mask_w)[i], rows(rho_w, mask_w)[i])
        )
        rejected = sum(
            beta * (1 - a * beta * rho) * (lp - rf)
            for lp, rf, rho in zip(rows(logp_l, mask_l)[i], rows(ref_l, mask_l)[i], rows(rho_l, mask_l)[i])
        )
        assert float(got[i]) == pytest.approx(softplus(chosen - rejected), abs=1e-6)
    # with rho = 0 TGDPO is DPO
    zero = torch.zeros_like(rho_w)
    dpo = dpo_loss(
        (logp_w * mask_w).sum(-1), (logp_l * mask_l).sum(-1), (ref_w * mask_w).sum(-1), (ref_l * mask_l).sum(-1), beta
    )
    assert torch.allclose(
        tgdpo_loss(logp_w, logp_l, ref_w, ref_l, mask_w, mask_l, zero, zero, beta, a), dpo, atol=1e-7
    )


def test_sepo_matches_hand_selection(tokens):
    logp_w, logp_l, _, _, mask_w, mask_l, s_w, s_l = tokens
    means = sepo_selected_means(logp_w, logp_l, mask_w, mask_l, s_w, s_l, ratio=0.3)
    got = logistic_loss(means[0] - means[1])
    for i in range(3):
        lw, sw = rows(logp_w, mask_w)[i], rows(s_w, mask_w)[i]
        ll, sl = rows(logp_l, mask_l)[i], rows(s_l, mask_l)[i]
        kw, kl = max(1, math.ceil(0.3 * len(lw))), max(1, math.ceil(0.3 * len(ll)))
        top = sorted(range(len(lw)), key=lambda t: -sw[t])[:kw]
        bottom = sorted(range(len(ll)), key=lambda t: sl[t])[:kl]
        chosen = sum(lw[t] for t in top) / kw
        rejected = sum(ll[t] for t in bottom) / kl
        assert float(means[0][i]) == pytest.approx(chosen, abs=1e-6)
        assert float(means[1][i]) == pytest.approx(rejected, abs=1e-6)
        assert float(got[i]) == pytest.approx(softplus(chosen - rejected), abs=1e-6)


def test_select_tokens_never_picks_padding():
    scores = torch.tensor([[5.0, -1.0, 9.0, 9.5]])
    mask = torch.tensor([[1, 1, 1, 0]])
    assert select_tokens(scores, mask, 0.5, highest=True).tolist() == [[True, False, True, False]]
    assert select_tokens(scores, mask, 0.3, highest=False).tolist() == [[False, True, False, False]]


# --- TRL: the same tiny model and batch through TRL's trainers and through ours ------------


@pytest.fixture(scope="module")
def bos_tokenizer():
    """A tokenizer that adds a BOS like Llama's, so TRL's and our tokenization agree."""
    from tokenizers import processors

    from tokenreward.testing import train_tokenizer

    tok = train_tokenizer()
    tok._tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", tok.bos_token_id)]
    )
    return tok


PAIRS = [
    {"prompt": "What is 17 + 25?", "chosen": " The answer is 42.", "rejected": " You are stupid."},
    {"prompt": "The capital of France is", "chosen": " Paris.", "rejected": " Lima, the capital of Peru."},
    {"prompt": "The first five primes are", "chosen": " 2, 3, 5, 7, 11.", "rejected": " 2, 3, 5, 7, 9."},
    {"prompt": "Say hello.", "chosen": " Hello world!", "rejected": " This is a terrible, awful question."},
]


def our_logps(model, tokenizer, rows):
    """Shifted per-token log-probs and masks of the pairs through the preference trainer's path."""
    from tokenreward.logprobs import token_logprobs
    from tokenreward.losses.preference_methods import chosen_and_rejected
    from tokenreward.preference_data import prepare_preference_data
    from tokenreward.trainers.preference_batches import collate

    data = prepare_preference_data(rows, tokenizer, "pairs")
    batch = collate(data, list(range(len(data))), tokenizer.pad_token_id)
    with torch.no_grad():
        logps = token_logprobs(model, batch["input_ids"], batch["attention_mask"])
    return chosen_and_rejected(logps), chosen_and_rejected(batch["mask"]), batch


def test_dpo_equals_trl_dpo_trainer(tmp_path, bos_tokenizer):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from tokenreward.testing import tiny_causal_lm

    policy, reference = tiny_causal_lm("llama", bos_tokenizer, seed=0), tiny_causal_lm("llama", bos_tokenizer, seed=1)
    # bf16=False: TRL otherwise runs the models under bf16 autocast, rounding its logits
    args = DPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=len(PAIRS),
        report_to=[],
        beta=0.1,
        max_length=None,
        use_cpu=True,
        save_strategy="no",
        bf16=False,
    )
    trainer = DPOTrainer(
        model=policy,
        ref_model=reference,
        args=args,
        train_dataset=Dataset.from_list(PAIRS),
        processing_class=bos_tokenizer,
    )
    trl_batch = next(iter(trainer.get_train_dataloader()))
    with torch.no_grad():
        trl_loss = float(trainer.compute_loss(trainer.model, trl_batch))

    (lw, ll), (mw, ml), ours = our_logps(policy, bos_tokenizer, PAIRS)
    (rfw, rfl), _, _ = our_logps(reference, bos_tokenizer, PAIRS)
    assert sorted(map(tuple, trl_batch["input_ids"][trl_batch["attention_mask"].bool().any(-1)].tolist())) == sorted(
        tuple(ids + [0] * (trl_batch["input_ids"].shape[1] - len(ids)))
        for ids in (row[row_mask.bool()].tolist() for row, row_mask in zip(ours["input_ids"], ours["attention_mask"]))
    )
    loss = dpo_loss((lw * mw).sum(-1), (ll * ml).sum(-1), (rfw * mw).sum(-1), (rfl * ml).sum(-1), beta=0.1).mean()
    assert float(loss) == pytest.approx(trl_loss, abs=1e-5)
    assert abs(trl_loss - math.log(2)) > 1e-3  # the two models differ, so the check is not at the trivial point


def test_simpo_equals_trl_cpo_simpo(tmp_path, bos_tokenizer):
    from datasets import Dataset
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    from tokenreward.testing import tiny_causal_lm

    policy = tiny_causal_lm("qwen2", bos_tokenizer, seed=2)
    args = CPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=len(PAIRS),
        report_to=[],
        loss_type="simpo",
        beta=2.0,
        simpo_gamma=1.0,
        cpo_alpha=0.0,
        max_length=128,
        use_cpu=True,
        save_strategy="no",
    )
    trainer = CPOTrainer(
        model=policy, args=args, train_dataset=Dataset.from_list(PAIRS), processing_class=bos_tokenizer
    )
    with torch.no_grad():
        trl_loss, _ = trainer.get_batch_loss_metrics(trainer.model, next(iter(trainer.get_train_dataloader())))

    (lw, ll), (mw, ml), _ = our_logps(policy, bos_tokenizer, PAIRS)
    loss = simpo_loss((lw * mw).sum(-1), (ll * ml).sum(-1), mw.sum(-1), ml.sum(-1), beta=2.0, gamma=1.0).mean()
    assert float(loss) == pytest.approx(float(trl_loss), abs=1e-5)


# --- the registry: the entries the trainer calls, against hand computations -------------------


def registry_batch(tokens):
    """A PairBatch over the fixture's 3 pairs; TDPO's per-token KL from random logits over a
    vocabulary of 4 (kept on the batch as `logits` for the hand computation)."""
    logp_w, logp_l, ref_w, ref_l, mask_w, mask_l, r_w, r_l = tokens
    g = torch.Generator().manual_seed(2)
    logits = (torch.randn(3, 5, 4, generator=g), torch.randn(3, 5, 4, generator=g))
    reference_logits = (torch.randn(3, 5, 4, generator=g), torch.randn(3, 5, 4, generator=g))
    kl = tuple(
        (r.softmax(-1) * (r.log_softmax(-1) - p.log_softmax(-1))).sum(-1) for r, p in zip(reference_logits, logits)
    )
    batch = PairBatch(
        (logp_w, logp_l), (mask_w, mask_l), (mask_w.bool(), mask_l.bool()), (ref_w, ref_l), (r_w, r_l), kl
    )
    return batch, logits, reference_logits


def hand_kl(ref_logits, logits, mask, i):
    """sum_t KL(ref || pi) for row i, by a loop over the vocabulary."""
    total = 0.0
    for t in range(mask.shape[1]):
        if mask[i, t]:
            p = [math.exp(v) for v in ref_logits[i, t].log_softmax(-1).tolist()]
            q = [math.exp(v) for v in logits[i, t].log_softmax(-1).tolist()]
            total += sum(a * math.log(a / b) for a, b in zip(p, q))
    return total


def hand_preference_loss(name, batch, logits, reference_logits, i, beta, alpha, gamma=1.0, ratio=0.3):
    """(loss, reward_w, reward_l) of pair i from the methods' equations, written with python floats."""
    (lw, ll), (mw, ml) = batch.logps, batch.mask
    pw, pl = sum(rows(lw, mw)[i]), sum(rows(ll, ml)[i])
    rw, rl = sum(rows(batch.reference[0], mw)[i]), sum(rows(batch.reference[1], ml)[i])
    nw, nl = len(rows(lw, mw)[i]), len(rows(ll, ml)[i])
    dw, dl = beta * (pw - rw), beta * (pl - rl)
    sw, sl = beta * pw / nw, beta * pl / nl
    reg = sum(-r * v for r, v in zip(rows(batch.rewards[0], mw)[i], rows(lw, mw)[i])) + sum(
        -r * v for r, v in zip(rows(batch.rewards[1], ml)[i], rows(ll, ml)[i])
    )
    if name == "dpo":
        return softplus(dw - dl), dw, dl
    if name == "simpo":
        return softplus(sw - sl - gamma), sw, sl
    if name == "dpo_reg":
        return softplus(dw - dl) + alpha * sigma(-(dw - dl)) * reg, dw, dl
    if name == "simpo_reg":
        z = sw - sl - gamma
        return softplus(z) + alpha * sigma(-z) * reg, sw, sl
    kw, kl = hand_kl(reference_logits[0], logits[0], mw, i), hand_kl(reference_logits[1], logits[1], ml, i)
    if name == "tdpo1":
        return softplus(dw - dl - beta * (kl - kw)), dw, dl
    if name == "tdpo2":
        return softplus(dw - dl - alpha * beta * (kl - kw)), dw, dl
    if name == "tgdpo":
        chosen = sum(
            beta * (1 + alpha * beta * r) * (a - b)
            for a, b, r in zip(rows(lw, mw)[i], rows(batch.reference[0], mw)[i], rows(batch.rewards[0], mw)[i])
        )
        rejected = sum(
            beta * (1 - alpha * beta * r) * (a - b)
            for a, b, r in zip(rows(ll, ml)[i], rows(batch.reference[1], ml)[i], rows(batch.rewards[1], ml)[i])
        )
        return softplus(chosen - rejected), dw, dl
    assert name == "sepo"
    vw, vl, ew, el = rows(lw, mw)[i], rows(ll, ml)[i], rows(batch.rewards[0], mw)[i], rows(batch.rewards[1], ml)[i]
    top = sorted(range(nw), key=lambda t: -ew[t])[: max(1, math.ceil(ratio * nw))]
    bottom = sorted(range(nl), key=lambda t: el[t])[: max(1, math.ceil(ratio * nl))]
    chosen, rejected = beta * sum(vw[t] for t in top) / len(top), beta * sum(vl[t] for t in bottom) / len(bottom)
    return softplus(chosen - rejected), chosen, rejected


@pytest.mark.parametrize("name", PREFERENCE_METHODS.names())
def test_registered_method_matches_hand_computation(name, tokens):
    method = PREFERENCE_METHODS.get(name)
    batch, logits, reference_logits = registry_batch(tokens)
    settings = method.settings()
    result = method.loss(batch, settings)
    for i in range(3):
        loss, reward_w, reward_l = hand_preference_loss(
            name, batch, logits, reference_logits, i, settings.beta, settings.alpha
        )
        assert float(result.losses[i]) == pytest.approx(loss, abs=1e-5)
        assert float(result.reward_chosen[i]) == pytest.approx(reward_w, abs=1e-5)
        assert float(result.reward_rejected[i]) == pytest.approx(reward_l, abs=1e-5)


def test_registry_declares_needs_defaults_and_aliases():
    assert PREFERENCE_METHODS.names() == sorted(
        ["dpo", "simpo", "dpo_reg", "simpo_reg", "tdpo1", "tdpo2", "tgdpo", "sepo"]
    )
    needs = {n: m.needs for n, m in PREFERENCE_METHODS.items()}
    assert [n for n, x in needs.items() if not x.reference_logps] == ["sepo", "simpo", "simpo_reg"]
    assert [n for n, x in needs.items() if x.reference_logits] == ["tdpo1", "tdpo2"]
    assert {n: x.token_rewarder for n, x in needs.items() if x.token_rewarder} == {
        "dpo_reg": "contrastive",
        "simpo_reg": "contrastive",
        "sepo": "implicit",
        "tgdpo": "implicit",
    }
    assert PREFERENCE_METHODS.get("treg") is PREFERENCE_METHODS.get("dpo_reg")
    assert PREFERENCE_METHODS.get("simpo").settings().beta == 2.0


@pytest.mark.parametrize(
    "kwargs, named",
    [
        ({"beta": 0.0}, "beta"),
        ({"beta": -1.0}, "beta"),
        ({"beta": float("nan")}, "beta"),
        ({"alpha": -0.1}, "alpha"),
        ({"sepo_ratio": 0.0}, "sepo_ratio"),
    ],
)
def test_settings_out_of_range_are_refused(kwargs, named):
    with pytest.raises(ValueError, match=named):
        PREFERENCE_METHODS.get("dpo_reg").settings(**kwargs)
