"""Batches of preference pairs: the padded `[2B, L]` inputs (chosen rows, then rejected) in the
shifted frame, and the reference log-probs computed once per dataset and cached."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from tokenreward.logprobs import token_logprobs
from tokenreward.models import ModelLoading, input_device, load_causal_lm
from tokenreward.preference_data import PreferenceData, path_fingerprint
from tokenreward.progress import progress_bar
from tokenreward.rewards import token_budget_batches


def collate(
    data: PreferenceData,
    indices: list[int],
    pad_id: int,
    per_position: dict[str, tuple[list[torch.Tensor], list[torch.Tensor]]] | None = None,
) -> dict[str, torch.Tensor]:
    """Right-padded `[2B, L]` inputs (chosen rows, then rejected), the shifted-frame loss and
    response-token masks `[2B, L-1]`, and each per-completion-position vector of
    `per_position` (name -> (chosen list, rejected list)) placed in the shifted frame."""
    seqs = [data.chosen[i] for i in indices] + [data.rejected[i] for i in indices]
    width = max(len(s.input_ids) for s in seqs)
    out = {
        "input_ids": torch.full((len(seqs), width), pad_id, dtype=torch.long),
        "attention_mask": torch.zeros((len(seqs), width), dtype=torch.long),
        "mask": torch.zeros((len(seqs), width - 1)),
        "tokens": torch.zeros((len(seqs), width - 1), dtype=torch.bool),
    }
    for name in per_position or {}:
        out[name] = torch.zeros((len(seqs), width - 1))
    for row, seq in enumerate(seqs):
        n, start = len(seq.input_ids), seq.completion_start
        out["input_ids"][row, :n] = torch.tensor(seq.input_ids)
        out["attention_mask"][row, :n] = 1
        out["mask"][row, start - 1 : n - 1] = 1.0
        out["tokens"][row, torch.tensor(seq.token_positions) - 1] = True
        side, i = (0, indices[row]) if row < len(indices) else (1, indices[row - len(indices)])
        for name, values in (per_position or {}).items():
            out[name][row, start - 1 : n - 1] = values[side][i]
    return out


def pair_batches(data: PreferenceData, batch_size: int, max_tokens: int | None) -> list[list[int]]:
    """Pairs in order of length, `batch_size` at a time, or, with a budget, grouped while the
    padded `[2B, L]` batch holds at most `max_tokens` tokens (so little is spent on padding)."""
    lengths = [2 * max(len(data.chosen[i].input_ids), len(data.rejected[i].input_ids)) for i in range(len(data))]
    if max_tokens is not None:
        return token_budget_batches(lengths, batch_size, max_tokens)
    order = sorted(range(len(data)), key=lambda i: lengths[i])
    return [order[start : start + batch_size] for start in range(0, len(data), batch_size)]


@torch.no_grad()
def reference_logps(
    model, data: PreferenceData, pad_id: int, batch_size: int, progress: bool, max_tokens: int | None = None
):
    """Per completion position, `log ref(token | prefix)` for every chosen and rejected response
    (batched by `pair_batches`), computed where the model takes its inputs."""
    chosen: list[torch.Tensor | None] = [None] * len(data)
    rejected: list[torch.Tensor | None] = [None] * len(data)
    device = input_device(model)
    with progress_bar(len(data), "reference log-probs", enabled=progress) as advance:
        for indices in pair_batches(data, batch_size, max_tokens):
            batch = collate(data, indices, pad_id)
            lp = token_logprobs(model, batch["input_ids"].to(device), batch["attention_mask"].to(device)).cpu()
            for row, i in enumerate(indices):
                for values, side, shift in ((chosen, data.chosen, 0), (rejected, data.rejected, len(indices))):
                    seq = side[i]
                    values[i] = lp[row + shift, seq.completion_start - 1 : len(seq.input_ids) - 1].clone()
            advance(len(indices))
    return chosen, rejected


def cached_reference_logps(
    reference: str,
    data: PreferenceData,
    pad_id: int,
    batch_size: int,
    directory: Path,
    loading: ModelLoading,
    progress: bool,
    write: bool,
    model=None,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """`reference_logps` of the reference loaded as `loading` says (or of `model`, the reference
    already in memory, float32: a LoRA policy's base), computed once and kept in `directory`,
    keyed by the tokenized pairs, the reference folder's files and a `--dtype` other than auto:
    later runs, seeds and methods reuse it."""
    dtype = "float32" if model is not None else "" if loading.dtype == "auto" else loading.dtype
    key = hashlib.sha256((data.fingerprint() + path_fingerprint(reference) + dtype).encode()).hexdigest()[:16]
    cache = directory / f"reference-logps-{key}.pt"
    if cache.is_file():
        return torch.load(cache)
    model = model if model is not None else load_causal_lm(reference, loading=loading).eval()
    values = reference_logps(model, data, pad_id, batch_size, progress, loading.max_batch_tokens)
    if write:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        torch.save(values, tmp)
        os.replace(tmp, cache)
    return values
