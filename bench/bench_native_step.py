"""Benchmark: one sampling step through ComfyUI's sampling machinery versus the pack's direct loop, same model.

Runs inside the hosted ComfyUI (``scripts/hy21_host``'s tree, or ``$COMFYUI_PATH``): this script puts that tree
first on ``sys.path``, sets ComfyUI's ``--cpu`` (unless ``--device cuda``) and imports the pack as the package
``hy21_pack``, as ComfyUI would. One DiT, full width (hidden 3584, 28 heads x 128, Qwen text 3584, ByT5 1472)
but reduced depth (1 double + 1 single block, the real 2-block token refiner), random weights, built with the
layers the pack's loader uses (``comfy.ops.manual_cast``), is sampled two ways over the same sigmas:

- **pack loop**: ``hunyuan_core.sampling.sample``, the pack's own Euler loop;
- **ComfyUI**: the same DiT as ComfyUI's MODEL (``nodes.model.wrap_dit``), the pack's ``HunyuanGuider`` and
  ComfyUI's ``euler`` through ``nodes.guider.sample_with_guider`` (``CFGGuider.sample``: model loading, conds
  processing, ``calc_cond_batch``, ``BaseModel.apply_model``).

``base`` runs the official mix (negative and positive prompt batched into one forward, CFG then APG from step
``steps // 2`` so both kinds of step are timed); ``distilled`` one pass with the embedded guidance and MeanFlow
(its DiT shares every weight with the base one and adds the guidance and MeanFlow embedders).

Each path runs once to warm up (one step), then ``--repeats`` times alternately (the order flips every repeat).
A step's time is the time between two consecutive step callbacks, so the first step, which carries each run's
set-up, is left out. Every DiT forward is timed as well, so each path's cost outside the DiT (guidance, conds
batching, casts, bookkeeping) is measured per step directly; "fixed ms/run" is a run's time outside the DiT less
its steps' (set-up and tear-down: model loading, conds processing). The verdict (target ComfyUI / pack loop <=
1.02 per step, at full width only: a narrow model's step is too short to weigh a wrapper against) takes the
fastest step of each path, since on a shared machine other processes only ever slow a step down; the ratio of
the median steps and the one the cost outside the DiT alone implies (1 + its difference / the pack's step, free
of the DiT's timing noise) are printed beside it. ``--profile`` adds one ComfyUI run under cProfile, paused inside
the DiT, listing the machinery's functions by own time.

Defaults (latent 12 x 12 = a 384 x 384 image, 4 steps, 2 repeats, fp32) take 2-3 minutes on 2 CPU cores; a
1024 x 1024 image is ``--latent 32`` (a 2-pass step is then ~25 s on such a machine). On a GPU:
``--device cuda --dtype bf16 --latent 64 --double 20 --single 40`` is the real model at 2048 x 2048.

Run: .venv/bin/python bench/bench_native_step.py [--steps 4] [--repeats 2] [--latent 12] [--variants base distilled]
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import io
import itertools
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACK = "hy21_pack"
HIDDEN, HEAD_DIM, TEXT_DIM, BYT5_DIM = 3584, 128, 3584, 1472
TARGET = 1.02
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def enter_comfyui(device: str, **settings: object) -> Path:
    """Put the hosted ComfyUI first on ``sys.path``, configured for ``device``, and import the pack from it.

    ``settings`` are further ComfyUI command-line options (attributes of ``comfy.cli_args.args``, e.g.
    ``use_pytorch_cross_attention=True``), set before anything of ComfyUI reads them: its model management and
    attention modules decide at import."""
    sys.path.append(str(ROOT / "scripts"))
    from hy21_host import comfyui_version, find_comfyui

    comfyui = find_comfyui()
    sys.path.insert(0, str(comfyui))
    from comfy.cli_args import args

    args.cpu = device == "cpu"
    for name, value in settings.items():
        if not hasattr(args, name):
            raise SystemExit(f"ComfyUI at {comfyui} has no command-line option {name!r}")
        setattr(args, name, value)
    import comfy.cli_args

    if not Path(comfy.cli_args.__file__).resolve().is_relative_to(comfyui.resolve()):
        raise SystemExit(f"comfy was imported from {comfy.cli_args.__file__}, not from the tree {comfyui}")
    spec = importlib.util.spec_from_file_location(
        PACK, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
    )  # the pack as ComfyUI imports it: a package whose nodes import the core relatively
    pack = importlib.util.module_from_spec(spec)
    sys.modules[PACK] = pack
    spec.loader.exec_module(pack)
    import comfy.utils

    comfy.utils.PROGRESS_BAR_ENABLED = False  # no tqdm bar: the machinery is measured, not the console
    print(f"ComfyUI {comfyui_version(comfyui)} at {comfyui}", flush=True)
    return comfyui


# ---------------------------------------------------------------------------------------------------- the model


def add_model_arguments(parser) -> None:
    """The DiT's shape, dtype and device, as every benchmark that builds a full-width, reduced-depth DiT takes them."""
    parser.add_argument("--hidden", type=int, default=HIDDEN, help=f"DiT width (default the real {HIDDEN})")
    parser.add_argument("--double", type=int, default=1, help="double-stream blocks (default 1; official 20)")
    parser.add_argument("--single", type=int, default=1, help="single-stream blocks (default 1; official 40)")
    parser.add_argument("--refiner-depth", type=int, default=2, help="token refiner blocks (default the real 2)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32", help="weights and compute (default fp32)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="default cpu (ComfyUI's --cpu)")


def wrapped_base_dit(args):
    """The base DiT of ``args``'s shape (``add_model_arguments``) with random weights, wrapped as ComfyUI's MODEL so
    its attention is the host's selection as in a real run: ``(dit, torch dtype)``."""
    import torch
    from hy21_pack.nodes.model import wrap_dit

    dtype = getattr(torch, DTYPES[args.dtype])
    dit, _ = build_dit(configs(args)["base"], dtype, args.device)
    wrap_dit(dit)
    return dit, dtype


def configs(args):
    from hy21_pack.hunyuan_core.dit import DiTConfig

    base = DiTConfig(
        variant="base", hidden_size=args.hidden, num_heads=args.hidden // HEAD_DIM, depth_double=args.double,
        depth_single=args.single, refiner_depth=args.refiner_depth, rope_axes=(64, 64), text_dim=TEXT_DIM,
        byt5_dim=BYT5_DIM,
    )  # fmt: skip
    return {"base": base, "distilled": base.with_(variant="distilled", guidance_embed=True, meanflow=True)}


def random_tensor(name: str, shape, dtype, device, gen):
    """Fan-in scaled normal weights, unit norm gains, small biases: activations stay in range in any dtype."""
    import torch

    tensor = torch.empty(shape, dtype=dtype, device=device)
    if len(shape) > 1:
        return tensor.normal_(0.0, (tensor[0].numel()) ** -0.5, generator=gen)
    if name.endswith("weight") and "norm" in name:
        return tensor.fill_(1.0)
    return tensor.normal_(0.0, 0.02, generator=gen)


def build_dit(cfg, dtype, device, shared: dict | None = None, seed: int = 0):
    """The DiT with the loader's layers (``comfy.ops.manual_cast``), random weights; tensors named in ``shared``
    are used as they are (the distilled DiT reuses the base one's). Names come from a plain ``torch.nn`` build,
    loaded with ``load_state_dict(assign=True)`` as the pack's loaders do."""
    import torch
    from hy21_pack.hunyuan_core.dit import HunyuanImageDiT
    from hy21_pack.nodes import management

    with torch.device("meta"):
        names = HunyuanImageDiT(cfg, dtype=dtype).state_dict()
        dit = HunyuanImageDiT(cfg, dtype=dtype, operations=management.operations())
    gen = torch.Generator(device=device).manual_seed(seed)
    tensors = {}
    for name, meta in names.items():
        if shared is not None and name in shared and shared[name].shape == meta.shape:
            tensors[name] = shared[name]
        else:
            tensors[name] = random_tensor(name, meta.shape, meta.dtype, device, gen)
    dit.load_state_dict(tensors, strict=True, assign=True)
    left = [n for n, t in (*dit.named_parameters(), *dit.named_buffers()) if t is None or t.is_meta]
    if left:
        raise RuntimeError(f"the benchmark left these DiT tensors unfilled: {left[:5]}")
    return dit.eval(), tensors


# ------------------------------------------------------------------------------------------------------ timing


class Clock:
    """Wall time in seconds, after waiting for the device's queued work (CUDA), so intervals hold finished work."""

    def __init__(self, device) -> None:
        import torch

        self.sync = torch.cuda.synchronize if device.type == "cuda" else None

    def __call__(self) -> float:
        if self.sync is not None:
            self.sync()
        return time.perf_counter()


def time_forwards(dit, clock: Clock, log: list[tuple[float, float]]) -> None:
    """Record the (start, end) of every forward of ``dit``, whichever path calls it (the same cost for both)."""
    forward = dit.forward

    def timed(*args, **kwargs):
        start = clock()
        out = forward(*args, **kwargs)
        log.append((start, clock()))
        return out

    dit.forward = timed


@dataclass
class Run:
    total: float  # seconds, call to return
    outside_total: float  # of those, seconds not spent in a DiT forward (set-up and tear-down included)
    steps: list[float]  # seconds between consecutive step callbacks (steady steps: the first one left out)
    outside: list[float]  # of each of those, seconds not spent in a DiT forward
    dit: list[float]  # of each of those, seconds spent in DiT forwards
    out: object


def timed_run(fn: Callable, clock: Clock, log: list[tuple[float, float]]) -> Run:
    """Run ``fn(callback)`` once, taking the time of each step callback and of each DiT forward."""
    import torch

    log.clear()
    stamps: list[float] = []
    start = clock()
    with torch.inference_mode():
        out = fn(lambda *_: stamps.append(clock()))
    total = clock() - start
    outside_total = total - sum(b - a for a, b in log)
    steps, outside, dit = [], [], []
    for before, after in itertools.pairwise(stamps):
        inside = sum(b - a for a, b in log if before < b <= after)
        steps.append(after - before)
        dit.append(inside)
        outside.append(after - before - inside)
    return Run(total, outside_total, steps, outside, dit, out)


@dataclass
class Summary:
    """One path's runs: median and fastest step, its DiT and non-DiT parts, and the per-run fixed cost.

    ``fixed`` is the run's time outside the DiT less ``steps`` times a step's, so the DiT's (noisy) time cancels.
    """

    step: float
    fastest: float
    dit: float
    outside: float
    total: float
    fixed: float
    runs: list[Run]

    @classmethod
    def of(cls, runs: list[Run], steps: int) -> Summary:
        outside = statistics.median(o for r in runs for o in r.outside)
        return cls(
            step=statistics.median(s for r in runs for s in r.steps),
            fastest=min(s for r in runs for s in r.steps),
            dit=statistics.median(d for r in runs for d in r.dit),
            outside=outside,
            total=statistics.median(r.total for r in runs),
            fixed=statistics.median(r.outside_total for r in runs) - steps * outside,
            runs=runs,
        )


# ----------------------------------------------------------------------------------------------------- the paths


def prompts(args, device, seed: int = 7):
    """Positive and negative prompt states of ``--prompt-tokens`` / ``--negative-tokens`` tokens, unpadded."""
    import torch
    from hy21_pack.hunyuan_core.sampling import Conditioning

    gen = torch.Generator().manual_seed(seed)

    def cond(tokens: int) -> Conditioning:
        states = torch.randn(1, tokens, TEXT_DIM, generator=gen)
        return Conditioning(mllm=states, mllm_mask=torch.ones(1, tokens, dtype=torch.int64))

    return cond(args.prompt_tokens), cond(args.negative_tokens)


def paths(variant: str, dit, model, steps: int, pos, neg, noise):
    """(pack loop, ComfyUI) as functions of a step callback, over the same ``steps``-step official schedule."""
    import torch
    from hy21_pack.hunyuan_core.sampling import plan_sampling, sample
    from hy21_pack.nodes.conditioning import to_comfy
    from hy21_pack.nodes.guider import HunyuanGuider, sample_with_guider

    two_pass = variant == "base"
    plan = (
        plan_sampling(variant, steps=steps, apg_start=steps // 2) if two_pass else plan_sampling(variant, steps=steps)
    )
    negative = neg if two_pass else None
    empty = {"samples": torch.zeros_like(noise)}

    def pack(callback):
        return sample(dit, noise, pos, negative, schedule=plan.schedule, guidance=plan.guidance, callback=callback)

    def comfy(callback):
        guider = HunyuanGuider(model, plan.guidance, offset=plan.schedule.offset)
        guider.set_conds(to_comfy(pos, "positive"), to_comfy(neg, "") if two_pass else None)
        return sample_with_guider(guider, noise, empty, plan.schedule.sigmas, seed=0, callback=callback)

    return pack, comfy


def profile_comfy(comfy_fn, dit, clock: Clock, log) -> None:
    """One ComfyUI run under cProfile with the profiler paused inside every DiT forward, so what it lists is the
    machinery around the DiT alone (own times; cumulative ones would be cut short where the profiler pauses)."""
    profiler = cProfile.Profile()
    forward = dit.forward

    def unprofiled(*args, **kwargs):
        profiler.disable()
        try:
            return forward(*args, **kwargs)
        finally:
            profiler.enable()

    dit.forward = unprofiled
    try:
        profiler.enable()
        timed_run(comfy_fn, clock, log)
        profiler.disable()
    finally:
        dit.forward = forward
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(20)
    print("  profile of one ComfyUI run outside the DiT (functions by own time):")
    for line in text.getvalue().splitlines():
        if line.strip() and not line.startswith(("   Ordered by", "   List reduced")):
            print(f"    {line}")


def bench_variant(args, variant: str, dit, clock: Clock, log, device) -> dict[str, float]:
    """Time one variant both ways and print its table; return the per-step ratios ComfyUI / pack loop (of the
    fastest and of the median steps, and the one the cost outside the DiT alone implies)."""
    import torch
    from hy21_pack.hunyuan_core.sampling import to_model_space
    from hy21_pack.nodes.model import wrap_dit

    model = wrap_dit(dit)
    pos, neg = prompts(args, device)
    noise = torch.randn(1, 64, args.latent, args.latent, generator=torch.Generator().manual_seed(3))
    pack_fn, comfy_fn = paths(variant, dit, model, args.steps, pos, neg, noise)
    for fn in paths(variant, dit, model, 1, pos, neg, noise):  # warm-up: one step each (ComfyUI loads the model)
        timed_run(fn, clock, log)

    runs: dict[str, list[Run]] = {"pack": [], "comfy": []}
    for repeat in range(args.repeats):
        order = [("pack", pack_fn), ("comfy", comfy_fn)]
        for name, fn in order if repeat % 2 == 0 else order[::-1]:
            runs[name].append(timed_run(fn, clock, log))
    pack, comfy = (Summary.of(runs[k], args.steps) for k in ("pack", "comfy"))

    if variant == "base":
        how = (
            f"official mix (CFG, APG from step {args.steps // 2}), negative ({args.negative_tokens} tokens) + "
            f"positive ({args.prompt_tokens} tokens) batched in one forward"
        )
    else:
        how = f"one pass, embedded guidance + MeanFlow, prompt of {args.prompt_tokens} tokens"
    print(f"\n{variant}: {how}")
    header = ("path", "step s", "fastest s", "DiT s/step", "outside DiT ms/step", "run s", "fixed ms/run")
    print("  {:<10} {:>8} {:>9} {:>10} {:>19} {:>7} {:>12}".format(*header))
    for name, s in (("pack loop", pack), ("ComfyUI", comfy)):
        row = (name, s.step, s.fastest, s.dit, s.outside * 1e3, s.total, s.fixed * 1e3)
        print("  {:<10} {:>8.3f} {:>9.3f} {:>10.3f} {:>19.2f} {:>7.2f} {:>12.1f}".format(*row))
    for name, s in (("pack loop", pack), ("ComfyUI", comfy)):
        steps = ", ".join(f"{x:.3f}" for r in s.runs for x in r.steps)
        outside = ", ".join(f"{x * 1e3:.1f}" for r in s.runs for x in r.outside)
        print(f"  {name} steady steps (s): {steps}; outside the DiT (ms): {outside}")
    extra = comfy.outside - pack.outside
    ratios = {
        "fastest": comfy.fastest / pack.fastest,
        "median": comfy.step / pack.step,
        "outside": 1 + extra / pack.step,
    }
    judged = args.hidden == HIDDEN
    verdict = ("ok" if ratios["fastest"] <= TARGET else "MISS") if judged else "not judged (narrow model)"
    print(
        f"  one step: ComfyUI / pack = {ratios['fastest']:.4f} fastest (target <= {TARGET}) {verdict}; "
        f"{ratios['median']:.4f} median; whole run of {args.steps} steps {comfy.total / pack.total:.4f} median"
    )
    print(
        f"  outside the DiT ComfyUI spends {extra * 1e3:+.2f} ms/step more than the pack loop, "
        f"{extra / pack.step * 100:+.3f} % of a step (ratio from that cost alone {ratios['outside']:.4f}), "
        f"and {(comfy.fixed - pack.fixed) * 1e3:+.1f} ms more per run"
    )
    want = pack.runs[-1].out.float().cpu()
    got = to_model_space(comfy.runs[-1].out.float().cpu())
    rel = float((got - want).abs().max() / want.abs().max())
    print(f"  final latents: max|ComfyUI - pack| / max|pack| = {rel:.1e}")
    if args.profile:
        profile_comfy(comfy_fn, dit, clock, log)
    del model
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4, help="steps per timed run (>= 2; default 4)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per path and variant (default 2)")
    parser.add_argument("--latent", type=int, default=12, help="latent side (image side / 32; default 12)")
    add_model_arguments(parser)
    parser.add_argument("--prompt-tokens", type=int, default=60, help="positive prompt tokens (default 60)")
    parser.add_argument("--negative-tokens", type=int, default=30, help="negative prompt tokens (default 30)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's own)")
    parser.add_argument("--variants", nargs="+", choices=("base", "distilled"), default=["base", "distilled"])
    parser.add_argument("--profile", action="store_true", help="add one cProfile'd ComfyUI run per variant")
    args = parser.parse_args()
    if args.steps < 2 or args.repeats < 1 or args.latent < 1:
        parser.error("--steps must be >= 2, --repeats and --latent >= 1")
    if args.hidden <= 0 or args.hidden % HEAD_DIM:
        parser.error(f"--hidden must be a positive multiple of {HEAD_DIM}")

    enter_comfyui(args.device)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, DTYPES[args.dtype])
    clock = Clock(device)
    cfgs = configs(args)
    print(
        f"torch {torch.__version__}, {device}, {torch.get_num_threads()} CPU threads; DiT hidden {args.hidden} "
        f"({args.hidden // HEAD_DIM} heads), {args.double} double + {args.single} single blocks, token refiner "
        f"{args.refiner_depth}, {args.dtype}, comfy.ops.manual_cast layers; latent {args.latent}x{args.latent} "
        f"({args.latent * 32}x{args.latent * 32} image), {args.steps} steps x {args.repeats} repeats per path",
        flush=True,
    )
    ratios, shared = {}, None
    for variant in args.variants:
        start = time.perf_counter()
        dit, shared = build_dit(cfgs[variant], dtype, device, shared)
        params = sum(p.numel() for p in dit.parameters())
        print(f"\nbuilt the {variant} DiT ({params / 1e9:.2f} B parameters) in {time.perf_counter() - start:.1f} s")
        log: list[tuple[float, float]] = []
        time_forwards(dit, clock, log)
        ratios[variant] = bench_variant(args, variant, dit, clock, log, device)
    print(f"\nratio ComfyUI / pack loop, one step: {_listed(ratios, 'fastest')}   (target <= {TARGET}; fastest step)")
    median, outside = _listed(ratios, "median"), _listed(ratios, "outside")
    print(f"  of the median steps: {median}; from the cost outside the DiT: {outside}")


def _listed(ratios: dict[str, dict[str, float]], kind: str) -> str:
    return ", ".join(f"{variant} {r[kind]:.4f}" for variant, r in ratios.items())


if __name__ == "__main__":
    main()
