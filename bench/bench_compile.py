"""Benchmark: the DiT forward with its blocks compiled by ``torch.compile`` against the eager forward, same weights.

Runs inside the hosted ComfyUI (``scripts/hy21_host``'s tree, or ``$COMFYUI_PATH``), on the CPU unless
``--device cuda``. One DiT at full width (hidden 3584, 28 heads x 128, Qwen text 3584, ByT5 1472) but reduced depth
(``--double`` + ``--single`` blocks, the real 2-block token refiner), random weights, wrapped as ComfyUI's MODEL
(so its attention is the host's selection). Each double, single and token-refiner block is compiled on its own
(``torch.compile(block, backend=--backend)``), as ComfyUI's compile helper does when given the blocks; the model
around them (embedders, text trimming, RoPE tables) stays eager.

The first compiled forward (compilation) is timed on its own; then eager and compiled forwards alternate
``--repeats`` times, the fastest of each counts (other processes only ever slow a forward down) and the median is
shown beside it. The two outputs are compared in the same run. Nothing is judged: the table is the measurement.

Run: .venv/bin/python bench/bench_compile.py [--side 1024] [--text 256] [--repeats 3] [--backend inductor]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_native_step import TEXT_DIM, Clock, add_model_arguments, enter_comfyui, wrapped_base_dit

COMPRESSION = 32


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=1024, help="image side in pixels (tokens = (side / 32)^2)")
    parser.add_argument("--text", type=int, default=256, help="valid prompt tokens")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backend", default="inductor", help="torch.compile backend (inductor, eager, ...)")
    add_model_arguments(parser)
    args = parser.parse_args()
    enter_comfyui(args.device)
    import torch

    dit, dtype = wrapped_base_dit(args)
    clock = Clock(torch.device(args.device))
    side = args.side // COMPRESSION
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 64, side, side, generator=gen).to(args.device, dtype)
    t = torch.tensor([700.0], device=args.device)
    text = torch.randn(1, args.text, TEXT_DIM, generator=gen).to(args.device, dtype)
    mask = torch.ones(1, args.text, dtype=torch.int64, device=args.device)

    blocks = [*dit.double_blocks, *dit.single_blocks, *dit.txt_in.individual_token_refiner.blocks]
    eager_forwards = [block.forward for block in blocks]
    compiled_forwards = [torch.compile(block.forward, backend=args.backend) for block in blocks]

    def use(forwards) -> None:
        for block, forward in zip(blocks, forwards, strict=True):
            block.forward = forward

    def timed(forwards) -> tuple[float, torch.Tensor]:
        use(forwards)
        start = clock()
        with torch.no_grad():
            out = dit(x, t, text, mask)
        return clock() - start, out

    eager_first, reference = timed(eager_forwards)
    compile_s, compiled_out = timed(compiled_forwards)
    diff = (compiled_out.float() - reference.float()).abs().max().item() / reference.float().abs().max().item()
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    for repeat in range(args.repeats):
        order = [("eager", eager_forwards), ("compiled", compiled_forwards)]
        for name, forwards in order if repeat % 2 == 0 else order[::-1]:
            times[name].append(timed(forwards)[0])
    use(eager_forwards)
    tokens = side * side + args.text
    print(
        f"DiT forward: hidden {args.hidden}, {args.double} double + {args.single} single blocks + "
        f"{args.refiner_depth} refiner blocks, "
        f"{tokens} tokens ({args.side}x{args.side} + {args.text} text), {args.dtype} on {args.device}, "
        f"backend {args.backend}, {args.repeats} repeats"
    )
    print(
        f"first compiled forward (compiles {len(blocks)} blocks): {compile_s:.1f} s; first eager: {eager_first:.2f} s"
    )
    print(f"{'forward':<9} {'fastest s':>10} {'median s':>9}")
    for name, measured in times.items():
        print(f"{name:<9} {min(measured):>10.3f} {statistics.median(measured):>9.3f}")
    print(
        f"ratio compiled / eager (fastest): {min(times['compiled']) / min(times['eager']):.2f}; "
        f"max|compiled - eager| / max|eager| = {diff:.2e}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
