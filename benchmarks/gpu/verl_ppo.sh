#!/usr/bin/env bash
# verl PPO on tiny local models, dense RED vs sparse (see benchmarks/gpu/verl_ppo.py). Needs one CUDA GPU,
# tokenreward with the verl extra, and vLLM for verl's rollout; not part of CI.
#   bash benchmarks/gpu/verl_ppo.sh [--steps 4] [--variants dense-rloo sparse-rloo dense-gae] [--out DIR]
# The critic-free variants run without flash-attn; the GAE ones need it (verl 0.9.1's critic loads with it).
set -euo pipefail
cd "$(dirname "$0")/../.."
python - <<'PY' || exit 2
import importlib.util, sys
import torch
missing = [m for m in ("verl", "vllm") if importlib.util.find_spec(m) is None]
if missing or not torch.cuda.is_available():
    sys.exit(f"verl_ppo: needs a CUDA GPU and {', '.join(missing) or 'nothing else'} installed "
             "(pip install -e '.[verl]' vllm==0.24.0)" if missing else "verl_ppo: no CUDA GPU visible")
PY
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
exec python benchmarks/gpu/verl_ppo.py "$@"
