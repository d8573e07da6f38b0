"""Peak memory of the chunked token log-prob helper vs the `[B, T, V]` logits it avoids (CPU; prints ratios).

At V = 128 256, T = 1 024, B = 2 the float32 logits tensor is 1.05 GB. Each case runs in a
fresh subprocess:
- inputs (hidden rows `[B*T, H]`, the head `[V, H]`, targets) are made first; then the
  process's peak resident set (VmHWM) is reset through `/proc/self/clear_refs` and the
  resident set at that point is the baseline;
- the case runs; its peak is `VmHWM - baseline`, i.e. everything the computation allocated
  at once (outputs, temporaries, gradients), whoever allocated it;
- `MALLOC_MMAP_THRESHOLD_` is fixed at 64 KiB, so every large tensor is its own mapping and
  freeing it returns the memory at once (glibc's dynamic threshold would otherwise let freed
  blocks linger in the heap and blur both the baseline and the peak).
Cases: `chunked` / `naive` (full logits, then gather - logsumexp, as before the helper), each
`forward` only or `backward` (forward + backward to the rows and the head). A last run
checks the chunked results (log-probs and both gradients) against the naive ones (1e-5).
Target: chunked peak <= 0.3 x the logits tensor, forward and backward.

    python benchmarks/logprobs_memory.py                 # V=128256 T=1024 B=2 H=64
    python benchmarks/logprobs_memory.py --vocab 32000 --hidden 256
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import torch


def rss_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith(field + ":"))


def make_inputs(args: argparse.Namespace, grad: bool):
    generator = torch.Generator().manual_seed(0)
    n = args.batch * args.tokens
    rows = torch.randn(n, args.hidden, generator=generator).requires_grad_(grad)
    head = torch.nn.Linear(args.hidden, args.vocab, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.randn(args.vocab, args.hidden, generator=generator) / args.hidden**0.5)
    head.weight.requires_grad_(grad)
    targets = torch.randint(0, args.vocab, (n,), generator=generator)
    return rows, head, targets


def chunked(rows, head, targets) -> torch.Tensor:
    from tokenreward.logprobs import head_stats

    return head_stats(rows, head, targets).logprobs


def naive(rows, head, targets) -> torch.Tensor:
    logits = head(rows).float()
    return logits.gather(1, targets[:, None]).squeeze(1) - logits.logsumexp(-1)


CASES = {"chunked": chunked, "naive": naive}


def measure(args: argparse.Namespace) -> dict:
    """One case in this (fresh) process: peak bytes above the baseline."""
    backward = args.mode == "backward"
    rows, head, targets = make_inputs(args, backward)
    function = CASES[args.case]
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # reset VmHWM to the current resident set
    baseline = rss_kib("VmRSS")
    if backward:
        function(rows, head, targets).sum().backward()
    else:
        with torch.no_grad():
            function(rows, head, targets)
    return {"peak_bytes": 1024 * (rss_kib("VmHWM") - baseline)}


def check(args: argparse.Namespace) -> dict:
    """Largest differences between the chunked and naive log-probs and gradients."""
    out = {}
    results = []
    for function in (chunked, naive):
        rows, head, targets = make_inputs(args, True)
        lp = function(rows, head, targets)
        lp.sum().backward()
        results.append((lp.detach(), rows.grad, head.weight.grad))
        del lp, rows, head
    for name, a, b in zip(("logprobs", "grad_rows", "grad_head"), *results):
        out[name] = float((a - b).abs().max())
    return out


def run_case(args: argparse.Namespace, extra: list[str]) -> dict:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    command = [
        sys.executable,
        __file__,
        "--vocab",
        str(args.vocab),
        "--tokens",
        str(args.tokens),
        "--batch",
        str(args.batch),
        "--hidden",
        str(args.hidden),
        *extra,
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocab", type=int, default=128256)
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--case", choices=list(CASES), help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=["forward", "backward"], help=argparse.SUPPRESS)
    parser.add_argument("--check", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.check:
        print(json.dumps(check(args)))
        return
    if args.case:
        print(json.dumps(measure(args)))
        return
    logits_bytes = 4 * args.batch * args.tokens * args.vocab
    head_bytes = 4 * args.vocab * args.hidden
    print(
        f"V={args.vocab} T={args.tokens} B={args.batch} H={args.hidden}: logits tensor {logits_bytes / 1e9:.3f} GB, "
        f"head {head_bytes / 1e6:.1f} MB"
    )
    for mode in ("forward", "backward"):
        for case in CASES:
            peak = run_case(args, ["--case", case, "--mode", mode])["peak_bytes"]
            print(f"  {mode:8s} {case:8s} peak {peak / 1e6:8.1f} MB = {peak / logits_bytes:.3f} x logits")
    differences = run_case(args, ["--check"])
    print("  chunked vs naive, largest |difference|: " + ", ".join(f"{k} {v:.2e}" for k, v in differences.items()))


if __name__ == "__main__":
    main()
