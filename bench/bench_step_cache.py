"""Calibration of the step cache: forwards skipped against the final latent's error, over a sweep of thresholds.

Runs inside the hosted ComfyUI (``scripts/hy21_host``'s tree, or ``$COMFYUI_PATH``), on the CPU unless
``--device cuda``. A base DiT and a distilled DiT sharing its weights (full width by default, hidden 3584, 28 heads
x 128; reduced depth, ``--double`` + ``--single`` blocks and the real 2-block token refiner; random weights, the
loader's layers) are wrapped as ComfyUI's MODEL and sampled as the pack's Sampler node samples them: the official
schedule and guidance (base: 50 steps, the CFG->APG mix with the negative and positive prompt batched; distilled:
8 steps, embedded guidance and MeanFlow) through the pack's guider and ComfyUI's ``euler``. Each variant is
sampled once without the cache (the reference), then once per threshold with the Step Cache node's patch
(``HunyuanImage21StepCache.execute``, so the node's own path runs), at the calibrated ``start`` / ``end`` unless
``--start`` / ``--end`` are given.

For every run the table gives the forwards run and skipped (counted at the DiT and at its first block: a skipped
forward never reaches the blocks), the steps skipped, the final latent's relative error against the reference
(``||cached - reference|| / ||reference||``, L2 over the whole latent) and the run's time over the reference's.
The last line per variant names the largest threshold of the sweep whose error stays within ``--bound``.
Random weights do not move like trained ones: the sweep shows how the cache behaves on this architecture and
what the shipped defaults do here, not the error on real images (README, "Step caching").

Defaults (full width, 1 double + 1 single block, 256 x 256 image, base and distilled, 7 thresholds) take about
15 minutes on 2 CPU cores; ``--hidden 256`` is the tiny model (under a minute).

Run: .venv/bin/python bench/bench_step_cache.py [--side 256] [--variants base distilled] [--thresholds 0.05 0.1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_native_step import DTYPES, TEXT_DIM, add_model_arguments, build_dit, configs, enter_comfyui

COMPRESSION = 32
THRESHOLDS = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=256, help="image side in pixels (latent = side / 32)")
    parser.add_argument("--prompt-tokens", type=int, default=40)
    parser.add_argument("--negative-tokens", type=int, default=8)
    parser.add_argument("--variants", nargs="+", choices=("base", "distilled"), default=["base", "distilled"])
    parser.add_argument("--steps", type=int, default=-1, help="-1 = official (base 50, distilled 8)")
    parser.add_argument("--thresholds", type=float, nargs="+", default=list(THRESHOLDS))
    parser.add_argument("--start", type=float, default=-1.0, help="-1 = the calibrated start of each variant")
    parser.add_argument("--end", type=float, default=-1.0, help="-1 = the calibrated end of each variant")
    parser.add_argument("--bound", type=float, default=0.02, help="the bound the summary judges by (the shipped 2 %%)")
    parser.add_argument("--seed", type=int, default=0, help="weights, prompts and noise")
    add_model_arguments(parser)
    args = parser.parse_args()
    enter_comfyui(args.device)
    import torch
    from hy21_pack.hunyuan_core.dit.step_cache import CALIBRATED
    from hy21_pack.hunyuan_core.sampling import Conditioning, make_noise, plan_sampling
    from hy21_pack.nodes.conditioning import to_comfy
    from hy21_pack.nodes.guider import HunyuanGuider, sample_with_guider
    from hy21_pack.nodes.model import wrap_dit
    from hy21_pack.nodes.step_cache import HunyuanImage21StepCache

    dtype = getattr(torch, DTYPES[args.dtype])
    gen = torch.Generator().manual_seed(args.seed + 7)

    def prompt(tokens: int, text: str) -> list:
        states = torch.randn(1, tokens, TEXT_DIM, generator=gen).to(args.device)
        return to_comfy(Conditioning(mllm=states, mllm_mask=torch.ones(1, tokens, dtype=torch.int64)), text)

    positive, negative = prompt(args.prompt_tokens, "a prompt"), prompt(args.negative_tokens, "")
    side = args.side // COMPRESSION
    noise = make_noise((1, 64, side, side), args.seed, "official")
    empty = {"samples": torch.zeros_like(noise)}
    shared = None
    print(
        f"step cache calibration: hidden {args.hidden}, {args.double} double + {args.single} single blocks, "
        f"{side * side} image tokens ({args.side}x{args.side}), prompt {args.prompt_tokens} + negative "
        f"{args.negative_tokens} tokens, {args.dtype} on {args.device}, seed {args.seed}",
        flush=True,
    )
    print(
        f"{'variant':<10} {'threshold':>9} {'start':>5} {'end':>5} {'forwards':>8} {'skipped':>7} "
        f"{'rel error':>9} {'time':>5}  skipped steps"
    )
    for variant in args.variants:
        dit, shared = build_dit(configs(args)[variant], dtype, args.device, shared, seed=args.seed)
        model = wrap_dit(dit)
        plan = plan_sampling(variant, steps=None if args.steps < 0 else args.steps)
        forwards = count_forwards(dit, plan.schedule.sigmas)

        def run(patched, plan=plan, forwards=forwards) -> tuple[torch.Tensor, float]:
            forwards.clear()
            guider = HunyuanGuider(patched, plan.guidance, offset=plan.schedule.offset)
            guider.set_conds(positive, negative)
            start = time.perf_counter()
            out = sample_with_guider(guider, noise, empty, plan.schedule.sigmas, args.seed)
            return out.float(), time.perf_counter() - start

        reference, ref_time = run(model)
        ref_forwards = len(forwards)
        calibrated = CALIBRATED[variant]
        start = calibrated.start if args.start < 0 else args.start
        end = calibrated.end if args.end < 0 else args.end
        print(f"{variant:<10} {'off':>9} {'':>5} {'':>5} {ref_forwards:>8} {0:>7} {0.0:>9.2e} {1.0:>5.2f}", flush=True)
        best = None
        for threshold in sorted(args.thresholds):
            patched = HunyuanImage21StepCache.execute(model, threshold, start, end).result[0]
            out, seconds = run(patched)
            error = float((out - reference).norm() / reference.norm())
            skipped_steps = sorted({step for step, ran in forwards if not ran})
            skipped = sum(not ran for _, ran in forwards)
            print(
                f"{variant:<10} {threshold:>9g} {start:>5.2f} {end:>5.2f} {len(forwards):>8} {skipped:>7} "
                f"{error:>9.2e} {seconds / ref_time:>5.2f}  {','.join(map(str, skipped_steps)) or '-'}",
                flush=True,
            )
            if error <= args.bound and skipped > 0:
                best = (threshold, skipped, len(forwards), error)
        if best is None:
            print(f"{variant}: no threshold of the sweep skipped a forward within the bound {args.bound:g}")
        else:
            print(
                f"{variant}: largest threshold within the bound {args.bound:g}: {best[0]:g} ({best[1]} of {best[2]} "
                f"forwards skipped, error {best[3]:.2e}); shipped default: {calibrated.describe()}"
            )
    return 0


def count_forwards(dit, sigmas) -> list[tuple[int, bool]]:
    """A list that fills with ``(step, ran)`` for every forward of ``dit``: ``ran`` when its first block ran (a
    forward the cache skips never reaches the blocks). The step is the schedule index of the forward's sigma."""
    import torch

    forwards: list[tuple[int, bool]] = []
    schedule = sigmas.float()

    def entered(module, args) -> None:
        sigma = args[1].float().max().cpu() / 1000
        forwards.append((int(torch.argmin((schedule - sigma).abs())), False))

    def ran(module, args) -> None:
        forwards[-1] = (forwards[-1][0], True)

    dit.register_forward_pre_hook(entered)
    first = dit.double_blocks[0] if dit.double_blocks else dit.single_blocks[0]
    first.register_forward_pre_hook(ran)
    return forwards


if __name__ == "__main__":
    sys.exit(main())
