"""RED speed on a tiny random reward model (run by hand; prints ratios).

1. One pass vs re-scoring every prefix: RED's rewards for one response from ONE forward pass
   (the score head on every position) against `T + 1` separate Hugging Face forwards of the
   prefixes (the naive way); the two must agree, and the max difference is printed.
   Target: at least 20x at 128 tokens.
2. RED vs a plain sequence score: `red.score` against `sparse.score` (the same pipeline with
   one ordinary Hugging Face forward reading the pooled score), and the bare forwards
   (`prefix_scores` vs `model(...)`), on a batch of pairs. Target: at most 1.2x.

    python benchmarks/bench_red.py                        # llama, lengths 32/128/512
    python benchmarks/bench_red.py --arch gpt2 --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from tokenreward import build_rewarder
from tokenreward.encoding import encode_pairs
from tokenreward.models import prefix_scores
from tokenreward.testing import DEFAULT_CORPUS, tiny_config, train_tokenizer

PROMPT = "Question: what is the capital of France, and what are the first five primes?"


def timed(fn, repeats: int, sync) -> float:
    """Median seconds of `fn()` over `repeats` runs after one warm-up run."""
    return timed_pair(fn, fn, repeats, sync)[0]


def timed_pair(first, second, repeats: int, sync) -> tuple[float, float]:
    """Median seconds of two functions run alternately (so a busy machine slows both alike)."""
    first(), second()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, out in ((first, times[0]), (second, times[1])):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            out.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def response_of_length(tokenizer, tokens: int, seed: int) -> str:
    """A response whose own tokenization has exactly `tokens` tokens (text from the corpus)."""
    words = " ".join(DEFAULT_CORPUS).split()
    generator = torch.Generator().manual_seed(seed)
    text = ""
    while len(tokenizer(text)["input_ids"]) < tokens + 1:
        text += " " + words[int(torch.randint(len(words), (1,), generator=generator))]
    return text[: tokenizer(text, return_offsets_mapping=True)["offset_mapping"][tokens - 1][1]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="llama", choices=["gpt2", "llama", "qwen2"])
    parser.add_argument("--lengths", default="32,128,512", help="response lengths in tokens")
    parser.add_argument("--hidden", type=int, default=64, help="hidden size of the tiny model")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8, help="pairs per batch for the overhead comparison")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs (3x as many, alternated, for the overhead)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    from transformers import AutoModelForSequenceClassification

    tokenizer = train_tokenizer()
    torch.manual_seed(0)
    overrides = dict(hidden_size=args.hidden, intermediate_size=4 * args.hidden, num_hidden_layers=args.layers)
    if args.arch == "gpt2":
        overrides = dict(n_embd=args.hidden, n_layer=args.layers)
    config = tiny_config(
        args.arch, len(tokenizer), tokenizer.pad_token_id, num_labels=1, max_position_embeddings=1024, **overrides
    )
    model = AutoModelForSequenceClassification.from_config(config).to(device).eval()
    red = build_rewarder("red", reward_model=model, tokenizer=tokenizer, device=args.device, batch_size=args.batch)
    sparse = build_rewarder(
        "sparse", reward_model=model, tokenizer=tokenizer, device=args.device, batch_size=args.batch
    )
    params = sum(p.numel() for p in model.parameters())
    print(
        f"{args.arch}: {args.layers} layers, hidden {args.hidden}, {params / 1e3:.0f}k parameters, device {device}, "
        f"{args.threads} CPU thread(s), median of {args.repeats}"
    )
    header = (
        f"{'T':>5} {'one pass ms':>12} {'per-prefix ms':>14} {'speed-up':>9} {'max |diff|':>11} | "
        f"{'RED ms':>8} {'sparse ms':>10} {'overhead':>9} | {'fwd RED ms':>11} {'fwd HF ms':>10} {'overhead':>9}"
    )
    print(header)
    print("-" * len(header))
    for length in (int(v) for v in args.lengths.split(",")):
        response = response_of_length(tokenizer, length, seed=length)
        enc = encode_pairs(tokenizer, [PROMPT], [response])
        ids = enc.input_ids.to(device)
        ends, start = enc.token_ends(0), enc.prompt_end(0)

        @torch.no_grad()
        def per_prefix() -> torch.Tensor:
            scores = [model(input_ids=ids[:, : p + 1]).logits[0, 0] for p in [start] + ends]
            return torch.stack(scores).diff().float().cpu()

        one_ms = timed(lambda: red.score([PROMPT], [response]), args.repeats, sync) * 1e3
        naive_ms = timed(per_prefix, max(1, args.repeats // 2), sync) * 1e3
        diff = (torch.tensor(red.score([PROMPT], [response]).token_rewards(0)) - per_prefix()).abs().max().item()

        prompts, responses = (
            [PROMPT] * args.batch,
            [response_of_length(tokenizer, length, seed=length + k) for k in range(args.batch)],
        )
        red_ms, sparse_ms = (
            1e3 * t
            for t in timed_pair(
                lambda: red.score(prompts, responses), lambda: sparse.score(prompts, responses), 3 * args.repeats, sync
            )
        )
        batch = encode_pairs(tokenizer, prompts, responses)
        batch_ids, batch_mask = batch.input_ids.to(device), batch.attention_mask.to(device)
        with torch.no_grad():
            fwd_red, fwd_hf = (
                1e3 * t
                for t in timed_pair(
                    lambda: prefix_scores(model, batch_ids, batch_mask),
                    lambda: model(input_ids=batch_ids, attention_mask=batch_mask).logits,
                    3 * args.repeats,
                    sync,
                )
            )
        print(
            f"{len(ends):>5} {one_ms:>12.2f} {naive_ms:>14.1f} {naive_ms / one_ms:>8.1f}x {diff:>11.2e} | "
            f"{red_ms:>8.2f} {sparse_ms:>10.2f} {red_ms / sparse_ms:>8.2f}x | {fwd_red:>11.2f} {fwd_hf:>10.2f} {fwd_red / fwd_hf:>8.2f}x"
        )


if __name__ == "__main__":
    main()
