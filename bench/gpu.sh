#!/usr/bin/env bash
# The GPU benchmark as one prepared run (about 2-3 minutes on one H200, at most 5; random weights, no downloads, no
# ComfyUI: only hunyuan_core and torch): the full 17.4 B DiT in bf16 and in fp8 (the core's QuantizedLinear, and its
# opt-in fp8 matmul) - one forward at 1024^2 and 2048^2, batch 1 and cond+uncond batch 2, the distilled 8 steps and
# the base 50 steps (CFG+APG, batched) at 2048^2 through the core sampler - and the full VAE's 2048^2 decode in
# bf16; per row the median time, the peak VRAM, a finite-output check and the time over the H200's physical limit
# (bench/bench_gpu.py's docstring says how each is measured).
# Usage: bash bench/gpu.sh [python] [bench_gpu.py options, e.g. --double 4 --single 8]
#   python: the interpreter; default .venv/bin/python when its torch sees a CUDA GPU, else python3.
# Without a CUDA GPU it prints one line saying so and exits with status 2.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
has_cuda() { "$1" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; }
if [[ $# -gt 0 && $1 != -* ]]; then
  py=$1
  shift
  if ! "$py" -c 'import torch' >/dev/null 2>&1; then
    echo "bench/gpu.sh needs an NVIDIA GPU and PyTorch ($py cannot import torch): nothing was measured"
    exit 2
  fi
elif [[ -x .venv/bin/python ]] && has_cuda .venv/bin/python; then
  py=.venv/bin/python
elif has_cuda python3; then
  py=python3
else
  echo "bench/gpu.sh needs an NVIDIA GPU (torch.cuda.is_available() is not True in .venv/bin/python or python3):" \
    "nothing was measured"
  exit 2
fi
exec "$py" bench/bench_gpu.py --device cuda "$@"
