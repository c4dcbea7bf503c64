"""Benchmark: each attention kernel ComfyUI offers, as the pack's DiT calls it, against PyTorch's SDPA.

Runs inside the hosted ComfyUI (``scripts/hy21_host``'s tree, or ``$COMFYUI_PATH``), on the CPU unless
``--device cuda``. The inputs are one joint attention of the real model: 28 heads x 128, over the image tokens of a
``--side`` x ``--side`` image (32x VAE, patch 1: 1024 -> 1024 tokens, 2048 -> 4096) plus ``--text`` valid text
tokens. Every kernel registered with ComfyUI (PyTorch SDPA, split, sub-quadratic; Sage, Flash and xformers where
installed) and its basic one go through ``nodes.attention.through`` exactly as the DiT would call them; "pack"
is the DiT's own choice (``host_attention_backend``: ComfyUI's selection, SDPA in place of its generic fallbacks).

Each is warmed up once, then timed ``--repeats`` times in rotating order; the fastest time counts (other processes
only ever slow a kernel down) and the median is shown beside it. The ratio is kernel / SDPA, and each kernel's
output is compared with SDPA's in the same run. Nothing is judged: the table is the measurement.

Run: .venv/bin/python bench/bench_attention.py [--side 1024] [--text 256] [--repeats 5] [--device cpu] [--dtype fp32]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_native_step import DTYPES, Clock, enter_comfyui

HEADS, HEAD_DIM, COMPRESSION = 28, 128, 32


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=1024, help="image side in pixels (tokens = (side / 32)^2)")
    parser.add_argument("--text", type=int, default=256, help="valid text tokens joined to the image tokens")
    parser.add_argument("--heads", type=int, default=HEADS)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--threads", type=int, default=0, help="torch threads on the CPU (0: torch's default)")
    args = parser.parse_args()
    enter_comfyui(args.device)
    import comfy.ldm.modules.attention as host
    import torch
    from hy21_pack.hunyuan_core.dit.attention import sdpa
    from hy21_pack.nodes import attention as pack_attention

    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, DTYPES[args.dtype])
    tokens = (args.side // COMPRESSION) ** 2 + args.text
    gen = torch.Generator().manual_seed(0)
    q, k, v = (
        torch.randn(1, args.heads, tokens, HEAD_DIM, generator=gen).to(args.device, dtype) for _ in range(3)
    )  # fmt: skip
    kernels = {"sdpa": sdpa, "pack": pack_attention.host_attention_backend}
    for name, function in sorted({**host.REGISTERED_ATTENTION_FUNCTIONS, "basic": host.attention_basic}.items()):
        kernels[name] = pack_attention.through(function)

    clock = Clock(torch.device(args.device))

    def timed(kernel) -> float:
        start = clock()
        with torch.no_grad():
            kernel(q, k, v, None)
        return clock() - start

    with torch.no_grad():
        reference = sdpa(q, k, v, None).float()
        diffs = {
            name: (kernel(q, k, v, None).float() - reference).abs().max().item() for name, kernel in kernels.items()
        }
    times: dict[str, list[float]] = {name: [] for name in kernels}
    names = list(kernels)
    for repeat in range(args.repeats):
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            times[name].append(timed(kernels[name]))
    print(
        f"attention: {args.heads} heads x {HEAD_DIM}, {tokens} tokens ({args.side}x{args.side} image + {args.text} "
        f"text), {args.dtype} on {args.device}, {args.repeats} repeats; ComfyUI selected "
        f"{getattr(host.optimized_attention, '__name__', '?')}, the DiT uses {pack_attention.described()}"
    )
    best_sdpa = min(times["sdpa"])
    print(f"{'kernel':<10} {'fastest ms':>11} {'median ms':>10} {'/ SDPA':>7} {'max |diff|':>11}")
    for name in names:
        fastest = min(times[name])
        print(
            f"{name:<10} {fastest * 1e3:>11.1f} {statistics.median(times[name]) * 1e3:>10.1f} "
            f"{fastest / best_sdpa:>7.2f} {diffs[name]:>11.2e}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
