"""Sampling responses from a causal LM with the KV cache, reproducibly per response.

Prompts are left-padded and decoded together with the key/value cache (one forward pass per
new token, position ids counted from each row's first real token). Sampling is Gumbel-max,
`y = argmax(logits / temperature + g)` with `g ~ Gumbel(0, 1)` drawn from a generator owned
by each row and seeded from `(generator_seed, row)` (or a per-row seed list), so a response
depends only on its prompt and seed: not on the batch it was generated in, the number of
processes, or the global RNG. That is what lets a resumed or data-parallel PPO run sample
exactly what an unbroken single-process run samples.

A response ends at the tokenizer's EOS (kept in `response_ids`, skipped in `text`) or after
`max_new_tokens`. `offsets` give each response token's characters in `text`
(`tokenreward.align.offsets_from_ids`), which is how rewards from any rewarder's tokenizer are
aligned to the policy's tokens.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from tokenreward.align import offsets_from_ids
from tokenreward.encoding import template_prompt
from tokenreward.errors import UserInputError
from tokenreward.logprobs import TokenStats, forward_parameters, token_stats
from tokenreward.models import context_length
from tokenreward.types import Offsets, TextOrMessages


@dataclass
class Generation:
    """One response: `prompt_ids` + `response_ids` is the full sequence the policy produced."""

    prompt_ids: list[int]
    response_ids: list[int]
    text: str
    offsets: Offsets
    finished: bool


@dataclass
class Generations:
    """A batch of responses, in the order of the prompts."""

    items: list[Generation]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Generation:
        return self.items[i]

    def __iter__(self) -> Iterator[Generation]:
        return iter(self.items)

    @property
    def texts(self) -> list[str]:
        return [g.text for g in self.items]

    @property
    def response_ids(self) -> list[list[int]]:
        return [g.response_ids for g in self.items]

    @property
    def offsets(self) -> list[Offsets]:
        return [g.offsets for g in self.items]


def encode_prompt(tokenizer, prompt: TextOrMessages, chat_template: bool = False, index: int = 0) -> list[int]:
    """Token ids the policy continues: a plain prompt with the tokenizer's special tokens (as
    `tokenreward.encoding` does), a conversation through the chat template with the
    generation prompt (which prompts are conversations: `tokenreward.encoding.template_prompt`)."""
    prompt = template_prompt(tokenizer, prompt, chat_template, index)
    if isinstance(prompt, str):
        return list(tokenizer(prompt)["input_ids"])
    text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


SeedKey = int | tuple[int, ...]


def row_generators(
    count: int, generator_seed: int | Sequence[SeedKey] | None, device: torch.device
) -> list[torch.Generator]:
    """One generator per row, seeded from `(generator_seed, row)`, or from one key per row
    (an int or a tuple of ints, e.g. `(seed, step, sample)`)."""
    if generator_seed is None:
        generator_seed = int(torch.randint(0, 2**31 - 1, ()).item())
    keys = [(generator_seed, row) for row in range(count)] if isinstance(generator_seed, int) else list(generator_seed)
    if len(keys) != count:
        raise ValueError(f"{len(keys)} generator seeds for {count} prompts")
    entropy = [list(k) if isinstance(k, (tuple, list)) else int(k) for k in keys]
    return [
        torch.Generator(device=device).manual_seed(int(np.random.SeedSequence(e).generate_state(1)[0]))
        for e in entropy
    ]


def next_tokens(
    logits: torch.Tensor, do_sample: bool, temperature: float, top_k: int, generators: list[torch.Generator]
) -> torch.Tensor:
    """Greedy argmax, or a Gumbel-max sample from `softmax(logits / temperature)` restricted to
    the `top_k` largest logits (`top_k = 0`: all)."""
    if not do_sample:
        return logits.argmax(-1)
    scaled = logits.float() / temperature
    if 0 < top_k < scaled.shape[-1]:
        kth = torch.topk(scaled, top_k, dim=-1).values[:, -1:]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    uniform = torch.stack([torch.rand(scaled.shape[-1], generator=g, device=g.device) for g in generators])
    gumbel = -torch.log(-torch.log(uniform.clamp(1e-20, 1.0 - 1e-7)))
    return (scaled + gumbel).argmax(-1)


def cache_argument(model: nn.Module) -> str:
    """The name under which the model's forward takes and returns its key/value cache: `cache`
    (current transformers), else `past_key_values` (releases before the rename)."""
    return "cache" if "cache" in forward_parameters(model) else "past_key_values"


@torch.no_grad()
def generate_from_ids(
    policy,
    tokenizer,
    prompt_ids: Sequence[Sequence[int]],
    max_new_tokens: int,
    do_sample: bool,
    temperature: float = 1.0,
    top_k: int = 0,
    generator_seed: int | Sequence[SeedKey] | None = None,
) -> Generations:
    """Generate from tokenized prompts (see the module docstring)."""
    if max_new_tokens < 1:
        raise UserInputError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if do_sample and temperature <= 0:
        raise UserInputError(f"temperature must be positive when sampling, got {temperature}")
    if tokenizer.eos_token_id is None or tokenizer.pad_token_id is None:
        raise UserInputError("the policy's tokenizer needs an EOS token (to stop) and a pad token (to batch)")
    if not prompt_ids:
        return Generations([])
    limit = context_length(policy)
    for i, ids in enumerate(prompt_ids):
        if not ids:
            raise UserInputError(f"prompt {i} is empty")
        if limit is not None and len(ids) + max_new_tokens > limit:
            raise UserInputError(
                f"prompt {i} is {len(ids)} tokens; with {max_new_tokens} new tokens it exceeds the policy's "
                f"context of {limit}"
            )
    device = next(policy.parameters()).device
    was_training = policy.training
    policy.eval()
    try:
        width = max(len(ids) for ids in prompt_ids)
        input_ids = torch.full((len(prompt_ids), width), tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for i, ids in enumerate(prompt_ids):
            input_ids[i, width - len(ids) :] = torch.tensor(list(ids))
            attention_mask[i, width - len(ids) :] = 1
        input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
        position_ids = (attention_mask.cumsum(-1) - 1).clamp_min(0)
        generators = row_generators(len(prompt_ids), generator_seed, device) if do_sample else []
        cache_name = cache_argument(policy)
        out = policy(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=True)
        finished = torch.zeros(len(prompt_ids), dtype=torch.bool, device=device)
        lengths = torch.zeros(len(prompt_ids), dtype=torch.long, device=device)
        generated = []
        for _ in range(max_new_tokens):
            token = next_tokens(out.logits[:, -1], do_sample, temperature, top_k, generators)
            token = torch.where(finished, torch.full_like(token, tokenizer.pad_token_id), token)
            generated.append(token)
            lengths += (~finished).long()
            finished |= token == tokenizer.eos_token_id
            if bool(finished.all()):
                break
            attention_mask = torch.cat([attention_mask, torch.ones_like(attention_mask[:, :1])], dim=1)
            position_ids = position_ids[:, -1:] + 1
            out = policy(
                input_ids=token[:, None],
                attention_mask=attention_mask,
                position_ids=position_ids,
                use_cache=True,
                **{cache_name: getattr(out, cache_name)},
            )
        tokens = torch.stack(generated, dim=1).cpu()
    finally:
        policy.train(was_training)
    items = []
    for i, ids in enumerate(prompt_ids):
        response = tokens[i, : int(lengths[i])].tolist()
        text, offsets = offsets_from_ids(tokenizer, response)
        items.append(Generation(list(ids), response, text, offsets, bool(finished[i])))
    return Generations(items)


def generate(
    policy,
    tokenizer,
    prompts: Sequence[TextOrMessages],
    max_new_tokens: int,
    do_sample: bool,
    temperature: float = 1.0,
    top_k: int = 0,
    generator_seed: int | Sequence[SeedKey] | None = None,
    batch_size: int | None = None,
    chat_template: bool = False,
) -> Generations:
    """Responses to `prompts` (strings the policy continues, or conversations; `chat_template`
    makes each plain string one user message), in mini-batches of `batch_size` (all at once by
    default); row seeds follow the prompt's index."""
    prompt_ids = [encode_prompt(tokenizer, p, chat_template, i) for i, p in enumerate(prompts)]
    size = batch_size or max(len(prompt_ids), 1)
    if generator_seed is None and do_sample:
        generator_seed = int(torch.randint(0, 2**31 - 1, ()).item())
    items: list[Generation] = []
    for start in range(0, len(prompt_ids), size):
        stop = min(start + size, len(prompt_ids))
        seeds = None
        if do_sample:
            seeds = (
                [(generator_seed, i) for i in range(start, stop)]
                if isinstance(generator_seed, int)
                else generator_seed[start:stop]
            )
        part = generate_from_ids(
            policy, tokenizer, prompt_ids[start:stop], max_new_tokens, do_sample, temperature, top_k, seeds
        )
        items.extend(part.items)
    return Generations(items)


@dataclass
class Batch:
    """Generations as model input: right-padded prompt+response rows (positions count from 0
    in every row, so no position ids are needed); `positions[b, t]` is the input position of
    response token t, `tokens[b, t]` its id, `mask[b, t]` whether it is real."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    positions: torch.Tensor
    tokens: torch.Tensor
    mask: torch.Tensor

    def rows(self, index: torch.Tensor) -> Batch:
        return Batch(*(t[index] for t in dataclasses.astuple(self)))


def make_batch(generations: Generations, pad_token_id: int, device: torch.device | str = "cpu") -> Batch:
    full = [g.prompt_ids + g.response_ids for g in generations]
    width, response_width = max(len(f) for f in full), max(len(g.response_ids) for g in generations)
    input_ids = torch.full((len(full), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    positions = torch.zeros((len(full), response_width), dtype=torch.long)
    tokens = torch.full((len(full), response_width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(full), response_width), dtype=torch.bool)
    for i, (ids, g) in enumerate(zip(full, generations)):
        n_prompt, n_response = len(g.prompt_ids), len(g.response_ids)
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention_mask[i, : len(ids)] = 1
        positions[i] = torch.arange(response_width).clamp_max(n_response - 1) + n_prompt
        tokens[i, :n_response] = torch.tensor(g.response_ids)
        mask[i, :n_response] = True
    return Batch(*(t.to(device) for t in (input_ids, attention_mask, positions, tokens, mask)))


def response_token_stats(
    model: nn.Module, batch: Batch, temperature: float, entropy: bool = False, hidden: bool = False
) -> TokenStats:
    """Log-probs (and entropies, and the hidden states they are read from, `[b, t, H]`) of each
    response token `[b, t]` under `softmax(logits / temperature)`, chunked through the LM head
    (`tokenreward.logprobs`)."""
    return token_stats(
        model, batch.input_ids, batch.attention_mask, batch.positions, temperature, entropy, hidden=hidden
    )


def response_logprobs(model: nn.Module, batch: Batch, temperature: float) -> torch.Tensor:
    """`log softmax(logits / temperature)[token]` for each response token `[b, t]`."""
    return response_token_stats(model, batch, temperature).logprobs
