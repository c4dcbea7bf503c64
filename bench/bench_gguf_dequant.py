"""Benchmark: the pack's torch GGUF dequantization kernels versus the ``gguf`` package's numpy reference, per type.

Each type dequantizes one ``--size`` x ``--size`` weight (default 3584 x 3584, the DiT's hidden width) of random
blocks whose float16 scales are ordinary small numbers. Both sides run in this process, one warm-up each, then the
median of ``--repeats`` runs; throughput is MB/s of dequantized output (float32: 4 bytes an element, bf16: 2).
The ratio is ours (float32 output) over gguf, both float32, so the same work; every type's two results are also
compared bit for bit. On ``--device cuda`` our kernels run on the GPU (synchronised) and gguf on the CPU as always.
On the CPU ours use ``--threads`` torch threads (default 1: gguf's numpy is single-threaded, and on a shared
machine more threads mostly measure the neighbours). Both sides allocate a fresh output each run; for a weight this
size, faulting in its pages is a large part of the time of either. For F32 gguf returns a view of the bytes (no
copy), so that row has no ratio.

Run: .venv/bin/python bench/bench_gguf_dequant.py [--size 3584] [--repeats 5] [--device cpu|cuda] [--threads 1]
     [--types Q4_K ..]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from gguf import GGMLQuantizationType  # noqa: E402
from gguf import quants as reference  # noqa: E402

from hunyuan_core.checkpoints import gguf_quants as gq  # noqa: E402

STORED = {"F32": np.float32, "F16": np.float16}


def weight_bytes(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A ``size`` x ``size`` weight's GGUF bytes, as rows of bytes (what gguf's numpy reference takes)."""
    block = gq.block_of(name)
    n_blocks = size * size // block.block_size
    if name in STORED or name == "BF16":
        values = (rng.standard_normal(n_blocks) * 0.02).astype(np.float32)
        raw = values.astype(STORED[name]) if name in STORED else (values.view(np.uint32) >> 16).astype(np.uint16)
        return raw.view(np.uint8).reshape(size, -1)
    blocks = rng.integers(0, 256, (n_blocks, block.type_size), dtype=np.uint8)
    for offset in block.scales_at:  # ordinary small scales: no time spent on NaN, inf or subnormal arithmetic
        halves = (rng.uniform(-1, 1, n_blocks) * 1e-3).astype(np.float16)
        blocks[:, offset : offset + 2] = halves.view(np.uint8).reshape(n_blocks, 2)
    return blocks.reshape(size, -1)


def median_seconds(run: Callable[[], object], repeats: int, sync: Callable[[], None]) -> tuple[object, float]:
    """The last result and the median wall time of ``repeats`` runs after one warm-up."""
    result = run()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        sync()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=3584, help="square weight size, a multiple of 256")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="where our kernels run: cpu or cuda")
    parser.add_argument("--types", nargs="+", default=list(gq.SUPPORTED_TYPES), choices=gq.SUPPORTED_TYPES)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.size % 256:
        parser.error("--size must be a multiple of 256 (the K-quants' block size)")
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    rng = np.random.default_rng(args.seed)
    mb = args.size * args.size / 1e6  # million elements: x4 MB in float32, x2 in bf16

    print(f"GGUF dequantization of a {args.size}x{args.size} weight: ours on {where}, gguf {reference.__name__} "
          f"(numpy) on the CPU; MB/s of output, median of {args.repeats}")  # fmt: skip
    print(f"{'type':<6}{'bits/w':>7}{'ours fp32':>12}{'ours bf16':>12}{'gguf fp32':>12}{'ours/gguf':>11}  same bits")
    ratios, all_same = [], True
    for name in args.types:
        raw = weight_bytes(name, args.size, rng)
        data, shape, qtype = torch.from_numpy(raw).to(device), (args.size, args.size), GGMLQuantizationType[name]
        ours32, t32 = median_seconds(partial(gq.dequantize, data, name, shape), args.repeats, sync)
        _, t16 = median_seconds(partial(gq.dequantize, data, name, shape, torch.bfloat16), args.repeats, sync)
        want, tref = median_seconds(partial(reference.dequantize, raw, qtype), args.repeats, lambda: None)
        want = torch.from_numpy(np.ascontiguousarray(want))
        same = torch.equal(ours32.cpu().view(torch.int32), want.view(torch.int32))
        all_same &= same
        ratio = "n/a" if name == "F32" else f"{tref / t32:.2f}"  # gguf's F32 is a view: nothing to time
        ratios.append(f"{name} {ratio}")
        print(f"{name:<6}{gq.block_of(name).bits_per_weight:>7.2f}{4 * mb / t32:>12.0f}{2 * mb / t16:>12.0f}"
              f"{4 * mb / tref:>12.0f}{ratio:>11}  {'yes' if same else 'NO'}")  # fmt: skip
    print(f"ratio ours / gguf throughput (fp32 output): {', '.join(ratios)}")
    print(f"all results bit-identical to gguf: {'yes' if all_same else 'NO'}")
    if not all_same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
