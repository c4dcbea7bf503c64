"""Benchmark: the base model's guidance with negative and positive prompt in one batched DiT forward per step (the
default, as the official pipeline) against two forwards per step (``batched_cfg=False``), same model and inputs.

Runs inside the hosted ComfyUI (``scripts/hy21_host``'s tree, or ``$COMFYUI_PATH``), on the CPU unless
``--device cuda``. One DiT at full width (hidden 3584, 28 heads x 128) but reduced depth (``--double`` +
``--single`` blocks and the real 2-block token refiner), random weights, built with the loader's layers and
wrapped as ComfyUI's MODEL (its attention is the host's selection), is sampled by the pack's loop
(``hunyuan_core.sampling.sample``) over ``--steps`` steps of the official mix (CFG, then APG from the middle step),
both ways. Each way runs once to warm up, then ``--repeats`` times alternately; the fastest run counts and the
median is shown beside it. The two final latents are compared in the same run (batching pads the shorter prompt and
reorders bf16 rounding, so on fp32 they agree to rounding). Nothing is judged: the table is the measurement.

Run: .venv/bin/python bench/bench_cfg_batch.py [--side 1024] [--steps 2] [--repeats 2] [--device cpu] [--dtype fp32]
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
    parser.add_argument("--side", type=int, default=1024, help="image side in pixels (latent = side / 32)")
    parser.add_argument("--prompt-tokens", type=int, default=120)
    parser.add_argument("--negative-tokens", type=int, default=20)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    add_model_arguments(parser)
    args = parser.parse_args()
    enter_comfyui(args.device)
    import torch
    from hy21_pack.hunyuan_core.sampling import Conditioning, plan_sampling, sample

    dit, _ = wrapped_base_dit(args)
    clock = Clock(torch.device(args.device))
    gen = torch.Generator().manual_seed(7)

    def prompt(tokens: int) -> Conditioning:
        states = torch.randn(1, tokens, TEXT_DIM, generator=gen)
        return Conditioning(mllm=states, mllm_mask=torch.ones(1, tokens, dtype=torch.int64))

    positive, negative = prompt(args.prompt_tokens), prompt(args.negative_tokens)
    side = args.side // COMPRESSION
    noise = torch.randn(1, 64, side, side, generator=torch.Generator().manual_seed(3))
    forwards = {"batched": 0, "two calls": 0}
    counting = {"way": "batched"}

    def count(module, inputs) -> None:
        forwards[counting["way"]] += 1

    dit.register_forward_pre_hook(count)

    def run(way: str) -> tuple[float, torch.Tensor]:
        plan = plan_sampling("base", steps=args.steps, apg_start=args.steps // 2, batched_cfg=way == "batched")
        counting["way"] = way
        start = clock()
        with torch.no_grad():
            out = sample(dit, noise, positive, negative, schedule=plan.schedule, guidance=plan.guidance)
        return clock() - start, out

    outputs = {way: run(way)[1] for way in ("batched", "two calls")}  # warm-up
    warm = dict(forwards)
    times: dict[str, list[float]] = {"batched": [], "two calls": []}
    for repeat in range(args.repeats):
        order = ["batched", "two calls"] if repeat % 2 == 0 else ["two calls", "batched"]
        for way in order:
            times[way].append(run(way)[0])
    diff = (outputs["batched"] - outputs["two calls"]).abs().max().item() / outputs["two calls"].abs().max().item()
    print(
        f"base guidance, {args.steps} steps (CFG then APG): hidden {args.hidden}, {args.double} double + "
        f"{args.single} single blocks, {side * side} image tokens ({args.side}x{args.side}), prompt "
        f"{args.prompt_tokens} + negative {args.negative_tokens} tokens, {args.dtype} on {args.device}, "
        f"{args.repeats} repeats"
    )
    print(f"DiT forwards per run: batched {warm['batched']}, two calls {warm['two calls']}")
    print(f"{'way':<10} {'fastest s':>10} {'median s':>9}")
    for way, measured in times.items():
        print(f"{way:<10} {min(measured):>10.3f} {statistics.median(measured):>9.3f}")
    print(
        f"ratio batched / two calls (fastest): {min(times['batched']) / min(times['two calls']):.2f}; "
        f"max|batched - two calls| / max|two calls| = {diff:.2e}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
