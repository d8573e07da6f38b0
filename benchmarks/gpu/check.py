"""The GPU check behind `benchmarks/gpu/check.sh` (see there); prints one line per figure.

1. RED (`prefix_scores`) vs one plain forward (`model(...)`) of a Llama-3-8B-shaped reward
   model in bf16, batch 1, at each length: time (median of 3 after a warm-up) and peak memory
   above the weights, as ratios.
2. Precision at the first length: token rewards (differences of prefix scores) from the bf16
   model with its float32 head, and from a bf16 head, against the same model in float32.
3. Chunked token log-probs at V = 128256, T = 4096 (hidden rows and head in bf16): peak
   memory forward / forward + backward as a ratio to the bf16 logits tensor `[T, V]`, time
   against the naive full-logits computation, and their largest difference.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

FULL = {
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "max_position_embeddings": 8192,
    "rope_theta": 500000.0,
}
TOY = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 1000,
    "max_position_embeddings": 512,
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_above(device: torch.device, fn) -> tuple[float, int]:
    """(seconds, peak bytes allocated above the start) of one call; peak is CUDA only (0 on CPU)."""
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        start_bytes = torch.cuda.memory_allocated()
    start = time.perf_counter()
    fn()
    sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() - start_bytes if device.type == "cuda" else 0
    return seconds, peak


def median_run(device, fn, repeats: int = 3) -> tuple[float, int]:
    fn()
    runs = [peak_above(device, fn) for _ in range(repeats)]
    return statistics.median(r[0] for r in runs), max(r[1] for r in runs)


def reward_model(shape: dict, dtype: torch.dtype, device: torch.device):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(**shape, num_labels=1, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForSequenceClassification(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def check_red(shape: dict, lengths: list[int], device: torch.device) -> None:
    from tokenreward.models import prefix_scores

    model = reward_model(shape, torch.bfloat16, device)
    generator = torch.Generator().manual_seed(1)
    inputs = {}
    for length in lengths:
        ids = torch.randint(3, shape["vocab_size"], (1, length), generator=generator).to(device)
        mask = torch.ones_like(ids)
        inputs[length] = (ids, mask)
        with torch.no_grad():
            red_t, red_m = median_run(device, lambda: prefix_scores(model, ids, mask))
            plain_t, plain_m = median_run(device, lambda: model(input_ids=ids, attention_mask=mask))
        memory = (
            f", peak memory {red_m / 2**20:.0f} / {plain_m / 2**20:.0f} MiB = {red_m / max(plain_m, 1):.2f}x"
            if plain_m
            else ""
        )
        print(
            f"RED T={length}: {1000 * red_t:.1f} ms vs plain forward {1000 * plain_t:.1f} ms = {red_t / plain_t:.2f}x{memory}"
        )
    ids, mask = inputs[lengths[0]]
    head = model.score
    store = {}
    handle = head.register_forward_hook(lambda _m, _i, output: store.update(native=output))
    with torch.no_grad():
        ours = prefix_scores(model, ids, mask)[0].double()
    handle.remove()
    bf16_head = store["native"][0, :, 0].double()
    model = model.float()
    with torch.no_grad():
        reference = prefix_scores(model, ids, mask)[0].double()
    gap = {
        name: float((s.diff() - reference.diff()).abs().max())
        for name, s in (("float32 head", ours), ("bf16 head", bf16_head))
    }
    print(
        f"RED T={lengths[0]} token rewards vs the float32 model: float32 head on bf16 states {gap['float32 head']:.2e}, "
        f"bf16 head {gap['bf16 head']:.2e} (scores up to {float(reference.abs().max()):.2f})"
    )


def check_logprobs(vocab: int, hidden: int, tokens: int, device: torch.device) -> None:
    from tokenreward.logprobs import head_stats

    generator = torch.Generator().manual_seed(2)
    rows = (torch.randn(tokens, hidden, generator=generator)).to(device, torch.bfloat16).requires_grad_(True)
    head = torch.nn.Linear(hidden, vocab, bias=False).to(device, torch.bfloat16)
    targets = torch.randint(0, vocab, (tokens,), generator=generator).to(device)
    logits_bytes = 2 * tokens * vocab

    def naive():
        logits = head(rows).float()
        return logits.gather(1, targets[:, None]).squeeze(1) - logits.logsumexp(-1)

    def chunked():
        return head_stats(rows, head, targets).logprobs

    for name, fn in (("chunked", chunked), ("naive", naive)):
        with torch.no_grad():
            t_fwd, m_fwd = median_run(device, fn)
        t_bwd, m_bwd = median_run(device, lambda fn=fn: fn().sum().backward())
        ratio = (
            f", peak forward {m_fwd / logits_bytes:.3f}x / backward {m_bwd / logits_bytes:.3f}x the bf16 logits"
            if m_fwd
            else ""
        )
        print(
            f"log-probs {name} V={vocab} T={tokens}: forward {1000 * t_fwd:.1f} ms, forward+backward {1000 * t_bwd:.1f} ms{ratio}"
        )
    with torch.no_grad():
        print(f"log-probs chunked vs naive: largest |difference| {float((chunked() - naive()).abs().max()):.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--toy", action="store_true", help="toy sizes on the CPU (a smoke test of this script)")
    args = parser.parse_args()
    if args.toy:
        device, shape, lengths, tokens = torch.device("cpu"), TOY, [64, 256], 256
    else:
        if not torch.cuda.is_available():
            raise SystemExit("benchmarks/gpu/check.sh: no CUDA device here; use --toy for the CPU smoke test")
        device, shape, lengths, tokens = torch.device("cuda"), FULL, [1024, 4096], 4096
    print(
        f"device {device}, model {shape['num_hidden_layers']} layers x {shape['hidden_size']}, V={shape['vocab_size']}"
    )
    check_red(shape, lengths, device)
    check_logprobs(shape["vocab_size"] if not args.toy else 32000, shape["hidden_size"], tokens, device)


if __name__ == "__main__":
    main()
