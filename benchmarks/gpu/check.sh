#!/usr/bin/env bash
# GPU check (run where a GPU is lent): RED on a randomly initialised Llama-3-8B-shaped reward
# model in bf16 at 1k / 4k tokens, and chunked token log-probs at V = 128256, T = 4096.
# Prints ratios. `benchmarks/gpu/check.sh --toy` runs the same code at toy size on the CPU.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHONPATH=src exec python benchmarks/gpu/check.py "$@"
