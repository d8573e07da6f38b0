"""Fast sampling for world building: large batches that shrink as responses finish.

A batch of left-padded prompts is decoded with the key/value cache; after every new token
the rows that produced EOS are dropped from the batch (and from the cache), so the work is
proportional to the tokens actually generated rather than to `rows x longest response`.
Tokens are drawn as in `tokenreward.generation` (Gumbel-max with one generator per row,
seeded from `(seed, index of the prompt)`), so a response depends only on its prompt, its
index and the seed, not on the batch it was decoded in.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tokenreward.generation import cache_argument, next_tokens, row_generators


@torch.no_grad()
def sample_ids(
    policy,
    prompt_ids: Sequence[Sequence[int]],
    eos_id: int,
    pad_id: int,
    max_new_tokens: int,
    greedy: bool,
    seeds: Sequence[tuple[int, int]] | None = None,
) -> list[list[int]]:
    """Response token ids (EOS excluded) per prompt: greedy, or sampled at temperature 1 with
    row `i` drawing from the generator seeded by `seeds[i]`."""
    device = next(policy.parameters()).device
    count, width = len(prompt_ids), max(len(ids) for ids in prompt_ids)
    input_ids = torch.full((count, width), pad_id, dtype=torch.long)
    mask = torch.zeros((count, width), dtype=torch.long)
    for i, ids in enumerate(prompt_ids):
        input_ids[i, width - len(ids) :] = torch.tensor(list(ids))
        mask[i, width - len(ids) :] = 1
    input_ids, mask = input_ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    generators = [] if greedy else row_generators(count, list(seeds), device)
    out = policy(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True)
    cache_name = cache_argument(policy)
    cache, logits, last = getattr(out, cache_name), out.logits[:, -1], positions[:, -1]
    active = torch.arange(count)
    responses: list[list[int]] = [[] for _ in range(count)]
    for step in range(max_new_tokens):
        token = next_tokens(logits, not greedy, 1.0, 0, [generators[i] for i in active.tolist()] if generators else [])
        running = token != eos_id
        for row, value, keep in zip(active.tolist(), token.tolist(), running.tolist()):
            if keep:
                responses[row].append(value)
        if step + 1 == max_new_tokens or not bool(running.any()):
            break
        if not bool(running.all()):
            keep = running.nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            active, token, mask, last = active[keep.cpu()], token[keep], mask[keep], last[keep]
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        last = last + 1
        out = policy(
            input_ids=token[:, None],
            attention_mask=mask,
            position_ids=last[:, None],
            use_cache=True,
            **{cache_name: cache},
        )
        cache, logits = getattr(out, cache_name), out.logits[:, -1]
    return responses
