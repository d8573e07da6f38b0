"""The chunked log-prob helper against the naive full-logits computation, values and gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tokenreward.logprobs import head_stats, token_logprobs, token_stats
from tokenreward.testing import tiny_causal_lm, train_tokenizer


def naive_stats(rows, head, targets, cap, temperature, reference=None):
    """Full `[N, V]` logits, then log_softmax: the textbook computation."""
    z = head(rows).float()
    if cap is not None:
        z = cap * torch.tanh(z / cap)
    log_p = (z / temperature).log_softmax(-1)
    lp = log_p.gather(1, targets[:, None]).squeeze(1)
    entropy = -(log_p.exp() * log_p).sum(-1)
    kl = None
    if reference is not None:
        ref_rows, ref_head = reference
        log_q = (ref_head(ref_rows).float() / temperature).log_softmax(-1)
        kl = (log_q.exp() * (log_q - log_p)).sum(-1)
    return lp, entropy, kl


@pytest.mark.parametrize(
    "cap,temperature,bias,chunk", [(None, 1.0, False, 3), (30.0, 0.7, True, 5), (None, 1.3, True, 64)]
)
def test_values_and_gradients_equal_the_naive_computation(cap, temperature, bias, chunk):
    torch.manual_seed(0)
    n, hidden, vocab = 11, 8, 37
    head, ref_head = nn.Linear(hidden, vocab, bias=bias).double(), nn.Linear(hidden, vocab, bias=bias).double()
    with torch.no_grad():
        head.weight.mul_(4.0)
    rows = torch.randn(n, hidden, dtype=torch.float64, requires_grad=True)
    ref_rows = torch.randn(n, hidden, dtype=torch.float64)
    targets = torch.randint(0, vocab, (n,))
    weights = [torch.randn(n, dtype=torch.float64) for _ in range(3)]

    def run(fn):
        head.zero_grad()
        rows.grad = None
        lp, entropy, kl = fn()
        (weights[0] * lp + weights[1] * entropy + weights[2] * kl).sum().backward()
        grads = [rows.grad.clone(), head.weight.grad.clone()] + ([head.bias.grad.clone()] if bias else [])
        return [lp.detach(), entropy.detach(), kl.detach()], grads

    ours = run(
        lambda: (lambda s: (s.logprobs, s.entropy, s.kl))(
            head_stats(
                rows, head, targets, cap, temperature, entropy=True, reference=(ref_rows, ref_head, None), chunk=chunk
            )
        )
    )
    naive = run(lambda: naive_stats(rows, head, targets, cap, temperature, (ref_rows, ref_head)))
    for got, expected in zip(ours[0] + ours[1], naive[0] + naive[1]):
        torch.testing.assert_close(got.double(), expected.double(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ["gpt2", "gemma2", "modernbert-decoder"])
def test_token_logprobs_of_a_model_equal_log_softmax_of_its_logits(arch):
    tokenizer = train_tokenizer()
    model = tiny_causal_lm(arch, tokenizer)
    reference = tiny_causal_lm(arch, tokenizer, seed=1)
    ids = torch.tensor([tokenizer("The capital of France is Paris.")["input_ids"]] * 2)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # a left-padded row, read as if unpadded (positions count from its first real token)
    positions_ids = (mask.cumsum(-1) - 1).clamp_min(0)
    with torch.no_grad():
        log_p = (
            model(input_ids=ids, attention_mask=mask, position_ids=positions_ids)
            .logits.float()
            .log_softmax(-1)[:, :-1]
        )
        log_q = (
            reference(input_ids=ids, attention_mask=mask, position_ids=positions_ids)
            .logits.float()
            .log_softmax(-1)[:, :-1]
        )
        stats = token_stats(model, ids, mask, entropy=True, reference=reference, chunk=4)
    torch.testing.assert_close(stats.logprobs, log_p.gather(2, ids[:, 1:, None]).squeeze(-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(stats.entropy, -(log_p.exp() * log_p).sum(-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(stats.kl, (log_q.exp() * (log_q - log_p)).sum(-1), atol=1e-5, rtol=0)
    positions = torch.tensor([[3, 5], [4, 6]])
    picked = token_logprobs(model, ids, mask, positions, temperature=0.5)
    naive = (model(input_ids=ids, attention_mask=mask, position_ids=positions_ids).logits.float() / 0.5).log_softmax(
        -1
    )
    expected = torch.stack([naive[b, positions[b] - 1, ids[b, positions[b]]] for b in range(2)])
    torch.testing.assert_close(picked, expected, atol=1e-5, rtol=0)


def test_gradient_reaches_the_model_like_the_naive_loss():
    tokenizer = train_tokenizer()
    ids = torch.tensor([tokenizer("What is 17 + 25? The answer is 42.")["input_ids"]])
    mask = torch.ones_like(ids)
    grads = []
    for chunked in (True, False):
        model = tiny_causal_lm("llama", tokenizer).train()
        if chunked:
            lp = token_logprobs(model, ids, mask)
        else:
            lp = (
                model(input_ids=ids, attention_mask=mask)
                .logits.float()
                .log_softmax(-1)[:, :-1]
                .gather(2, ids[:, 1:, None])
                .squeeze(-1)
            )
        lp.sum().backward()
        grads.append({name: p.grad for name, p in model.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grad, grads[1][name], atol=1e-5, rtol=1e-4, msg=name)


def test_a_model_whose_logits_are_not_its_head_is_refused():
    tokenizer = train_tokenizer()
    model = tiny_causal_lm("llama", tokenizer)
    model.config.final_logit_softcapping = 5.0  # we would cap; the model does not
    ids = torch.tensor([tokenizer("Hello world!")["input_ids"]])
    with pytest.raises(ValueError, match="LlamaForCausalLM: its logits are not its LM head"):
        token_logprobs(model, ids, torch.ones_like(ids))
