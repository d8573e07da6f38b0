"""Per-token log-probabilities of a causal LM from its hidden states, in chunks of positions.

For a row `h` of the final hidden states and the LM head `z = cap * tanh((W h + b) / cap) / tau`
(`cap` the config's `final_logit_softcapping` when it has one, `tau` the sampling temperature):

- log-prob of target `y`: `lp = z_y - logsumexp_v z_v`;
- entropy: `H = logsumexp_v z_v - sum_v p_v z_v`, `p = softmax(z)`;
- KL to a reference head `z'` (same vocabulary): `KL(q || p) = sum_v q_v (log q_v - log p_v)`,
  `q = softmax(z')` (TDPO's per-token term).

The model is run once as usual (`model(...)`, so wrappers such as DDP see the call); a forward
pre-hook on its output embedding captures what that linear map receives at every position
(after whatever the architecture applies before it, e.g. ModernBERT-decoder's prediction
head) and lets it compute the last position only. The head is then applied to `chunk`
rows at a time, so no `[B, T, V]` logits tensor (nor a float copy of one) ever exists: peak
memory is a few `[chunk, V]` float32 blocks. The backward pass recomputes each block's logits
(as fused linear cross-entropy kernels do) and needs no stored softmax. The model's own
last-position logits check that the head was read right; an architecture whose head does
something else is refused with its name.
"""

from __future__ import annotations

import inspect
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from tokenreward.errors import UserInputError

#: bytes of one `[chunk, V]` float32 block; a chunk holds as many rows as fit
DEFAULT_CHUNK_BYTES = 64 * 2**20


@dataclass
class TokenStats:
    """Per selected row: log-prob of the target, and optionally entropy, KL to a reference and
    the hidden state the prediction was read from (`[..., H]`)."""

    logprobs: torch.Tensor
    entropy: torch.Tensor | None = None
    kl: torch.Tensor | None = None
    hidden: torch.Tensor | None = None


def unwrap(model: nn.Module) -> nn.Module:
    """The Hugging Face model inside DDP / accelerate / compile wrappers."""
    while isinstance(getattr(model, "module", None), nn.Module):
        model = model.module
    return getattr(model, "_orig_mod", model)


def forward_parameters(model: nn.Module) -> Collection[str]:
    """The parameter names of the Hugging Face model's own forward, also through wrappers that
    take `**kwargs` and pass them on (a PEFT model, `tokenreward.lora.BaseModelView`)."""
    inner = unwrap(model)
    while hasattr(inner, "get_base_model") and inner.get_base_model() is not inner:
        inner = inner.get_base_model()
    return inspect.signature(inner.forward).parameters


def position_kwargs(model: nn.Module, attention_mask: torch.Tensor) -> dict:
    """`position_ids` counted from each row's first real token (so a left-padded row is read as
    if unpadded), for models whose forward takes them."""
    if "position_ids" not in forward_parameters(model):
        return {}
    return {"position_ids": (attention_mask.long().cumsum(-1) - 1).clamp_min(0)}


@contextmanager
def last_position_only(head: nn.Module, store: dict) -> Iterator[None]:
    """While active, calls of `head` record their input `[B, T, H]` in `store["rows"]` and compute
    only the last position (so the model's own logits are `[B, 1, V]`)."""

    def pre_hook(_module, inputs):
        rows = inputs[0]
        store["rows"] = rows
        return (rows[:, -1:], *inputs[1:]) if rows.dim() == 3 else None

    handle = head.register_forward_pre_hook(pre_hook)
    try:
        yield
    finally:
        handle.remove()


def softcap_of(model: nn.Module) -> float | None:
    """The final-logit soft cap of the config (Gemma 2 style), if any."""
    cap = getattr(model.config, "final_logit_softcapping", None)
    return float(cap) if cap else None


def hidden_states(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """What the model feeds its output embedding at every position, `[B, T, H]`, from one ordinary
    forward call (in which the output embedding itself computes the last position only).

    Checks that the head applied here to the last position gives the model's own logits there."""
    inner = unwrap(model)
    store: dict = {}
    with last_position_only(inner.get_output_embeddings(), store):
        own = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            use_cache=False,
            **position_kwargs(model, attention_mask),
        ).logits
    rows = store.get("rows")
    if rows is None or rows.dim() != 3 or rows.shape[:2] != input_ids.shape or own.shape[1] != 1:
        raise UserInputError(
            f"{type(inner).__name__}: its output embedding does not see one hidden state per position; cannot read its "
            "log-probs in chunks"
        )
    check_head(inner, rows[:, -1], own[:, -1])
    return rows


def check_head(model: nn.Module, last_hidden: torch.Tensor, own_logits: torch.Tensor) -> None:
    """Refuse a model whose logits are not `head(last hidden state)` as computed here, compared
    at the precision the model's own logits carry (bf16 / fp16 weights or autocast: 2e-2 of the
    largest logit; float32: 1e-4)."""
    head = model.get_output_embeddings()
    with torch.no_grad():
        last_hidden = last_hidden.detach().to(head.weight.device)  # a device map may put the head on another GPU
        ours = head_logits(last_hidden, head.weight, getattr(head, "bias", None), softcap_of(model), 1.0)
        theirs = own_logits.detach().float().to(ours.device)
    finite = theirs[theirs.isfinite()]
    half = any(torch.equal(finite, finite.to(dtype).float()) for dtype in (torch.bfloat16, torch.float16))
    tolerance = 2e-2 if half or head.weight.dtype != torch.float32 else 1e-4
    scale = max(float(finite.abs().max()) if finite.numel() else 1.0, 1.0)
    if ours.shape != theirs.shape or not torch.allclose(ours, theirs, rtol=0, atol=tolerance * scale, equal_nan=True):
        raise UserInputError(
            f"{type(model).__name__}: its logits are not its LM head applied to its last hidden state (the architecture "
            "transforms them in a way tokenreward does not reproduce); per-token log-probs would be wrong"
        )


def head_logits(
    rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, cap: float | None, temperature: float
) -> torch.Tensor:
    """`z = cap * tanh((W h + b) / cap) / tau` for a block of rows, in float32 (matmul in the weight's dtype)."""
    z = rows.to(weight.dtype) @ weight.t()
    if bias is not None:
        z += bias
    z = z.float()
    if cap is not None:
        z.div_(cap).tanh_().mul_(cap)
    if temperature != 1.0:
        z.div_(temperature)
    return z


def row_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """`sum_v a[c, v] b[c, v]` without a `[c, V]` temporary."""
    return torch.einsum("cv,cv->c", a, b)


class _ChunkedHead(torch.autograd.Function):
    """Log-probs (and entropy / KL) of targets from hidden rows, chunk by chunk; see the module docstring."""

    @staticmethod
    def forward(ctx, rows, weight, bias, targets, reference_rows, reference_weight, reference_bias, config):
        cap, reference_cap, temperature, chunk, want_entropy = config
        n = rows.shape[0]
        lp, lse = rows.new_empty(n, dtype=torch.float32), rows.new_empty(n, dtype=torch.float32)
        entropy = rows.new_empty(n, dtype=torch.float32) if want_entropy else None
        kl = rows.new_empty(n, dtype=torch.float32) if reference_rows is not None else None
        for start in range(0, n, chunk):
            part = slice(start, start + chunk)
            z = head_logits(rows[part], weight, bias, cap, temperature)
            lse[part] = z.logsumexp(-1)
            lp[part] = z.gather(1, targets[part, None]).squeeze(1) - lse[part]
            if want_entropy:
                entropy[part] = lse[part] - row_dot(torch.softmax(z, -1), z)
            if kl is not None:
                log_q = head_logits(
                    reference_rows[part], reference_weight, reference_bias, reference_cap, temperature
                ).log_softmax(-1)
                q = log_q.exp()
                kl[part] = (
                    row_dot(q, log_q) - row_dot(q, z) + lse[part]
                )  # KL(q || p) = sum q log q - sum q z + logsumexp z
        ctx.save_for_backward(
            rows, weight, bias, targets, reference_rows, reference_weight, reference_bias, lse, entropy
        )
        ctx.config = config
        return lp, entropy, kl

    @staticmethod
    def backward(ctx, grad_lp, grad_entropy, grad_kl):
        rows, weight, bias, targets, reference_rows, reference_weight, reference_bias, lse, entropy = ctx.saved_tensors
        cap, reference_cap, temperature, chunk, _ = ctx.config
        grad_rows = torch.zeros_like(rows) if ctx.needs_input_grad[0] else None
        grad_weight = torch.zeros_like(weight) if ctx.needs_input_grad[1] else None
        grad_bias = torch.zeros_like(bias) if bias is not None and ctx.needs_input_grad[2] else None
        zero = rows.new_zeros(rows.shape[0], dtype=torch.float32)
        g_lp = zero if grad_lp is None else grad_lp
        g_ent = zero if grad_entropy is None or entropy is None else grad_entropy
        g_kl = zero if grad_kl is None or reference_rows is None else grad_kl
        for start in range(0, rows.shape[0], chunk):
            part = slice(start, start + chunk)
            z = head_logits(rows[part], weight, bias, cap, temperature)
            capped = z * temperature if cap is not None else None
            grad_z = block_gradient(
                z,
                lse[part],
                targets[part],
                g_lp[part],
                g_ent[part],
                g_kl[part],
                None if entropy is None else entropy[part],
            )
            del z
            if reference_rows is not None and bool(g_kl[part].any()):
                q = head_logits(
                    reference_rows[part], reference_weight, reference_bias, reference_cap, temperature
                ).softmax(-1)
                grad_z.sub_(q.mul_(g_kl[part, None]))
                del q
            if temperature != 1.0:
                grad_z.div_(temperature)
            if capped is not None:  # d(cap tanh(u / cap)) / du = 1 - (capped / cap)^2
                grad_z.mul_(capped.div_(cap).square_().neg_().add_(1.0))
                del capped
            grad_z = grad_z.to(weight.dtype)
            if grad_rows is not None:
                grad_rows[part] = grad_z @ weight
            if grad_weight is not None:
                grad_weight.addmm_(grad_z.t(), rows[part].to(weight.dtype))
            if grad_bias is not None:
                grad_bias += grad_z.sum(0)
        return grad_rows, grad_weight, grad_bias, None, None, None, None, None


def block_gradient(z, lse, targets, g_lp, g_ent, g_kl, entropy) -> torch.Tensor:
    """d(g_lp lp + g_ent H + g_kl KL)/dz for one block, except KL's `-g_kl q` term (added by the caller):
    `p (g_kl - g_lp - g_ent (log p + H)) + g_lp onehot(y)`. Overwrites `z`."""
    log_p = z.sub_(lse[:, None])
    p = log_p.exp()
    coefficient = (g_kl - g_lp)[:, None]
    if entropy is not None and bool(g_ent.any()):
        coefficient = log_p.add_(entropy[:, None]).mul_(-g_ent[:, None]).add_(coefficient)
    grad = p.mul_(coefficient)
    grad.scatter_add_(1, targets[:, None], g_lp[:, None])
    return grad


def chunk_rows(vocab_size: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Rows per chunk so that one `[rows, V]` float32 block stays within `chunk_bytes`."""
    return max(1, chunk_bytes // (4 * vocab_size))


def head_stats(
    rows: torch.Tensor,
    head: nn.Module,
    targets: torch.Tensor,
    cap: float | None = None,
    temperature: float = 1.0,
    entropy: bool = False,
    reference: tuple[torch.Tensor, nn.Module, float | None] | None = None,
    chunk: int | None = None,
) -> TokenStats:
    """`TokenStats` of `[N, H]` hidden rows through a linear LM `head`, chunked (see the module docstring).

    `reference` is `(reference rows, reference head, reference cap)` for the KL; its rows get no gradient."""
    if temperature <= 0:
        raise UserInputError(f"temperature must be positive, got {temperature}")
    weight, bias = head.weight, getattr(head, "bias", None)
    device = weight.device  # under a device map the rows may come from another GPU than the head's
    rows, targets = rows.to(device), targets.to(device)
    ref_rows, ref_weight, ref_bias, ref_cap = None, None, None, None
    if reference is not None:
        ref_rows, ref_head, ref_cap = reference
        ref_bias = getattr(ref_head, "bias", None)
        ref_rows, ref_weight = ref_rows.detach().to(device), ref_head.weight.detach().to(device)
        ref_bias = None if ref_bias is None else ref_bias.detach().to(device)
        if ref_weight.shape[0] != weight.shape[0]:
            raise UserInputError(
                f"the reference's vocabulary ({ref_weight.shape[0]}) differs from the model's ({weight.shape[0]})"
            )
    size = chunk or chunk_rows(weight.shape[0])
    lp, ent, kl = _ChunkedHead.apply(
        rows, weight, bias, targets, ref_rows, ref_weight, ref_bias, (cap, ref_cap, temperature, size, entropy)
    )
    return TokenStats(lp, ent, kl)


def token_stats(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    positions: torch.Tensor | None = None,
    temperature: float = 1.0,
    entropy: bool = False,
    reference: nn.Module | None = None,
    chunk: int | None = None,
    hidden: bool = False,
) -> TokenStats:
    """Per-token stats of `input_ids[b, p]` given `input_ids[b, :p]`, for every `p` in `positions[b]`
    (`[B, K]`, each >= 1), or for `p = 1 .. T-1` (the shifted frame, `[B, T-1]`) by default.

    `reference` (a causal LM with the same vocabulary) adds `KL(ref || model)` per token; `hidden`
    adds the hidden state each prediction reads, the one at `p - 1` (`[B, K, H]`, with its gradient)."""
    if positions is None:
        positions = torch.arange(1, input_ids.shape[1], device=input_ids.device).expand(input_ids.shape[0], -1)
    if positions.numel() and int(positions.min()) < 1:
        raise ValueError("positions must be >= 1: the first input token has no prediction")
    batch = torch.arange(input_ids.shape[0], device=input_ids.device)[:, None].expand_as(positions)
    targets = input_ids.gather(1, positions).reshape(-1)

    def rows_of(lm: nn.Module) -> torch.Tensor:
        hidden = hidden_states(lm, input_ids, attention_mask).to(input_ids.device)
        return hidden[batch, positions - 1].reshape(-1, hidden.shape[-1])

    ref = None
    if reference is not None:
        with torch.no_grad():
            ref = (rows_of(reference), unwrap(reference).get_output_embeddings(), softcap_of(unwrap(reference)))
    inner = unwrap(model)
    rows = rows_of(model)
    stats = head_stats(
        rows, inner.get_output_embeddings(), targets, softcap_of(inner), temperature, entropy, ref, chunk
    )
    shape = positions.shape
    values = (stats.logprobs, stats.entropy, stats.kl)
    read_from = rows.reshape(*shape, rows.shape[-1]) if hidden else None
    return TokenStats(*(None if t is None else t.reshape(shape).to(input_ids.device) for t in values), read_from)


def token_logprobs(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    positions: torch.Tensor | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """`log P(input[b, p] | input[b, :p])` at `positions` (default: the shifted frame `p = 1 .. T-1`)."""
    return token_stats(model, input_ids, attention_mask, positions, temperature).logprobs
