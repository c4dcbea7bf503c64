#!/usr/bin/env bash
# Issue 18's GPU checks as one prepared run (about 5-8 minutes on one H200-class GPU, random weights, no downloads):
#  1. partial loading through ComfyUI's ModelPatcher, full-width DiT (4 double + 8 single blocks) in bf16, fp8 and
#     GGUF Q4_K, with a 12 GB budget at 1024^2 and 2048^2: streamed modules, bit-identical output, time, peak VRAM;
#  2. the GGUF dequantization kernels on the GPU against gguf's numpy reference;
#  3. the distilled workflow through a real server: full load, --reserve-vram (12 GB left) and --lowvram, peak VRAM
#     and time per mode, each image equal to the full load's;
#  4. the CUDA-only unit tests (GGUF kernels on the GPU).
# Usage: bash bench/gpu_memory.sh [python]   (COMFYUI_PATH selects the ComfyUI tree, as everywhere)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
py="${1:-${HY21_VENV:-.venv}/bin/python}"
run() { echo; echo "== $*"; "$py" "$@"; }
run bench/bench_partial_load.py --device cuda --width full --double 4 --single 8 --budget-gb 12 --latent 32
run bench/bench_partial_load.py --device cuda --width full --double 4 --single 8 --budget-gb 12 --latent 64
run bench/bench_gguf_dequant.py --device cuda --repeats 5
run bench/bench_lowvram_server.py --double 4 --single 8 --size 2048 --formats bf16,Q4_K
run -m pytest -q -p no:cacheprovider tests/test_gguf_quants.py -k cuda
