"""Benchmark: one forward of the pack's DiT against ComfyUI's own HunyuanImage-2.1 forward, same weights and inputs.

Why: the pack ships its own DiT instead of ComfyUI's ``comfy.ldm.hunyuan_video`` model; it must not cost a user
speed. This measures the two forwards side by side in one process, on the very same weight tensors, and compares
their outputs in the same run.

How: runs inside the hosted ComfyUI (``scripts/hy21_host``'s tree, or ``$COMFYUI_PATH``), on the CPU unless
``--device cuda``. Two models are built:

- **pack**: the base DiT at full width (hidden 3584, 28 heads x 128, Qwen text 3584, ByT5 1472) but reduced
  depth (``--double`` 1 + ``--single`` 2 blocks, the real 2-block token refiner), random weights, with the pack
  loader's layers, as ComfyUI's MODEL (``nodes.model.wrap_dit``): its attention is the one the pack uses inside
  ComfyUI (``nodes/attention.py``);
- **native**: ComfyUI's ``HunyuanVideo`` (``comfy.ldm.hunyuan_video.model``) as ComfyUI's UNETLoader builds it
  from an official HunyuanImage-2.1 file: ``comfy.model_detection.model_config_from_unet`` detects the config from
  the pack DiT's state dict (official key names; it must find ``supported_models.HunyuanImage21``), ComfyUI's
  own ``process_unet_state_dict`` renames the keys (checked against the pack's ``dit/keys.py`` COMFY layout),
  ``unet_manual_cast`` picks the compute dtype as the loader does, and the model is built on the meta device and
  loaded with ``load_state_dict(strict=True, assign=True)``: no key missing or unexpected, and every weight is
  the pack's own tensor (shared, not copied).

Attention: ``--attention sdpa`` (default) starts ComfyUI with ``--use-pytorch-cross-attention``, so its
``optimized_attention`` (bound by ``comfy.ldm.flux.math`` and ``comfy.ldm.hunyuan_video.model`` at import) is
``attention_pytorch``, the function the pack then calls as well; ``--attention host-default`` leaves ComfyUI's own
CPU choice (sub-quadratic attention) to native, for reference, while the pack uses PyTorch SDPA in its place. The
warm-up forward of each side runs under a ``sys.setprofile`` hook that counts the calls of ComfyUI's attention
functions, of the core's ``sdpa`` and of ``torch.nn.functional.scaled_dot_product_attention``: what each side
really calls is printed, and with ``sdpa`` both sides must reach torch's SDPA from ``attention_pytorch``.

Inputs, the same for both: latent ``--latent`` x ``--latent`` (64 channels; 32 = a 1024 x 1024 image), sigma
``--sigma``, ``--prompt-tokens`` Qwen states with an all-ones mask (which native's ``extra_conds`` drops, so it
runs unmasked as the pack does), ByT5 states of ``--byt5-tokens`` tokens (0 = none: native then skips its ByT5
mapper, the pack's conditioning carries one fully masked placeholder token that its DiT drops before the
blocks), batch ``--batch``. Each model's own ``extra_conds`` turns them into its conds, processed and
concatenated as ``calc_cond_batch`` does for one prompt; both are called through the same entry point,
``BaseModel.apply_model`` of the MODEL's ``.model`` (input scaling, timestep, conds casts, the diffusion model,
the denoised output): the per-forward path of ComfyUI's samplers.

Timing: one warm-up forward each, then ``--repeats`` interleaved forwards (the order flips every repeat); the
fastest and the median of each side are printed, the ratio pack / native of the fastest (on a shared machine other
processes only ever slow a forward down) with the median ratio beside it, and max|pack - native| / max|native| of
the two DiT outputs (the velocity each diffusion model returned in the warm-up). The verdict line is
"ratio <= 1.0: yes/no". ``--profile`` adds one forward of each side under ``torch.profiler`` (operators by own
CPU time) and cProfile (Python functions by own time).

Defaults (1024 x 1024, fp32, 1 double + 2 single blocks, 1.3 B parameters, 3 repeats) take about 2 minutes on 2
CPU cores (a forward is ~8 s there, twice that while another process shares the cores) and ~7 GB of memory.

Run: .venv/bin/python bench/bench_native_forward.py [--latent 32] [--repeats 3] [--attention sdpa|host-default]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_native_step import (
    BYT5_DIM,
    HEAD_DIM,
    HIDDEN,
    TEXT_DIM,
    Clock,
    add_model_arguments,
    enter_comfyui,
    wrapped_base_dit,
)

TARGET = 1.0
NATIVE_REFINER_DEPTH = 2  # ComfyUI's HunyuanVideo builds its token refiner with 2 blocks, always
SDPA = "torch.nn.functional.scaled_dot_product_attention"


# ------------------------------------------------------------------------------------------------ native model


def native_model(dit) -> tuple[Any, list[str]]:
    """ComfyUI's own HunyuanImage-2.1 MODEL over the pack DiT's weights, as UNETLoader detects and builds it from
    an official file; returns (the MODEL, lines describing how it was built)."""
    import comfy.model_detection
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models
    import torch
    from hy21_pack.hunyuan_core.dit import keys as K

    official = dit.state_dict()  # the official names (the pack's own)
    config = comfy.model_detection.model_config_from_unet(official, "")
    if type(config) is not comfy.supported_models.HunyuanImage21:
        raise SystemExit(f"ComfyUI detected {type(config).__name__} from the pack DiT's weights, not HunyuanImage21")
    renamed = config.process_unet_state_dict(dict(official))
    if len(renamed) != len(official):
        raise SystemExit(f"ComfyUI's renaming merged keys: {len(official)} official -> {len(renamed)}")
    expected = {}
    for name in official:  # the pack's own COMFY layout must say the same, one tensor per parameter, unchanged
        source = K.source_of(name, K.COMFY)
        if len(source.keys) != 1 or source.swap_halves:
            raise SystemExit(f"{name}: the COMFY layout is not a plain rename ({source})")
        expected[source.keys[0]] = official[name]
    if expected.keys() != renamed.keys():
        differ = sorted(expected.keys() ^ renamed.keys())
        raise SystemExit(f"ComfyUI's names and the pack's COMFY layout differ: {differ[:6]}")

    dtype = next(iter(official.values())).dtype
    load_device = mm.get_torch_device()
    manual_cast = mm.unet_manual_cast(dtype, load_device, config.supported_inference_dtypes)
    config.set_inference_dtype(dtype, manual_cast)
    base = config.get_model(renamed, "", device=torch.device("meta"))  # no allocation: the pack's tensors go in
    base.device = None  # as UNETLoader leaves it (the meta device only placed the layers)
    missing, unexpected = base.diffusion_model.load_state_dict(renamed, strict=True, assign=True)
    assert not missing and not unexpected, (missing, unexpected)
    tensors = (*base.diffusion_model.named_parameters(), *base.diffusion_model.named_buffers())
    left = [name for name, tensor in tensors if tensor.is_meta]
    if left:
        raise SystemExit(f"native tensors left on the meta device: {left[:5]}")
    shared = {p.data_ptr() for p in base.diffusion_model.parameters()} == {t.data_ptr() for t in official.values()}
    model = comfy.model_patcher.ModelPatcher(base, load_device=load_device, offload_device=mm.unet_offload_device())
    layers = type(base.diffusion_model.img_in.proj)
    keys = {k: v for k, v in config.unet_config.items() if k not in ("dtype", "image_model")}
    lines = [
        f"native: {type(base).__name__} / {type(base.diffusion_model).__module__}.HunyuanVideo, detected as "
        f"supported_models.{type(config).__name__}; unet_config {keys}",
        f"native: {len(renamed)} tensors loaded strictly (none missing or unexpected), ComfyUI's names = the pack's "
        f"COMFY layout, weights shared with the pack: {'yes' if shared else 'NO'}; layers {layers.__qualname__} "
        f"({layers.__module__}), compute {manual_cast or dtype}",
    ]
    return model, lines


# -------------------------------------------------------------------------------------------------------- inputs


def model_conds(model, kwargs: dict[str, Any], batch: int) -> dict[str, Any]:
    """``model``'s conds for one prompt as ComfyUI's sampler hands them to ``apply_model``: its ``extra_conds``,
    each processed to the batch and concatenated (``calc_cond_batch`` with one prompt)."""
    found = model.model.extra_conds(**kwargs)
    return {name: cond.process_cond(batch_size=batch, area=None).concat([]) for name, cond in found.items()}


def inputs(args, device) -> tuple[Any, Any, dict[str, Any]]:
    """(latent, sigma, the encode-conds keyword arguments) shared by both sides."""
    import torch

    gen = torch.Generator().manual_seed(7)
    x = torch.randn(args.batch, 64, args.latent, args.latent, generator=gen).to(device)
    sigma = torch.full((args.batch,), args.sigma, device=device)
    states = torch.randn(args.batch, args.prompt_tokens, TEXT_DIM, generator=gen).to(device)
    kwargs: dict[str, Any] = {
        "cross_attn": states,
        "attention_mask": torch.ones(args.batch, args.prompt_tokens, dtype=torch.int64, device=device),
        "device": device,
        "noise": x,
    }
    if args.byt5_tokens:
        kwargs["conditioning_byt5small"] = torch.randn(args.batch, args.byt5_tokens, BYT5_DIM, generator=gen).to(device)
    return x, sigma, kwargs


def described_conds(conds: dict[str, Any]) -> str:
    parts = []
    for name, value in conds.items():
        shape = "x".join(map(str, value.shape)) if hasattr(value, "shape") else repr(value)
        parts.append(f"{name} {shape}")
    return ", ".join(parts)


# ----------------------------------------------------------------------------------------------------- attention


def attention_functions() -> dict[Any, str]:
    """The code objects of every attention function either side could reach, by printable name."""
    import comfy.ldm.modules.attention as host
    from hy21_pack.hunyuan_core.dit import attention as core

    codes = {}
    for name in dir(host):
        function = getattr(host, name)
        if name.startswith("attention_") and callable(function):
            inner = getattr(function, "__wrapped__", function)  # ComfyUI's wrap_attn keeps the kernel inside
            if hasattr(inner, "__code__"):
                codes[inner.__code__] = f"comfy {name}"
    codes[core.sdpa.__code__] = "pack core sdpa"
    return codes


def counting_attention(fn: Callable[[], Any]) -> tuple[Any, Counter]:
    """Run ``fn`` under a profile hook that counts the attention functions it calls (Python ones by their code
    object, torch's SDPA builtin as a C call)."""
    import torch.nn.functional as F

    codes = attention_functions()
    sdpa_builtin = F.scaled_dot_product_attention
    seen: Counter = Counter()

    def hook(frame, event: str, arg) -> None:
        if event == "call" and frame.f_code in codes:
            seen[codes[frame.f_code]] += 1
        elif event == "c_call" and arg is sdpa_builtin:
            seen[SDPA] += 1

    sys.setprofile(hook)
    try:
        out = fn()
    finally:
        sys.setprofile(None)
    return out, seen


def listed(seen: Counter) -> str:
    return ", ".join(f"{name} x{count}" for name, count in sorted(seen.items())) or "none of them"


def native_bindings() -> str:
    """The attention function each native module bound at import (they call these names)."""
    import comfy.ldm.flux.math
    import comfy.ldm.hunyuan_video.model

    bound = []
    for module in (comfy.ldm.flux.math, comfy.ldm.hunyuan_video.model):
        function = module.optimized_attention
        bound.append(f"{module.__name__}.optimized_attention = {getattr(function, '__name__', repr(function))}")
    return "; ".join(bound)


# -------------------------------------------------------------------------------------------------------- timing


def capture_output(model) -> tuple[list, Any]:
    """A forward hook on ``model``'s diffusion model keeping what it returns (the velocity); (store, handle)."""
    store: list = []
    handle = model.model.diffusion_model.register_forward_hook(lambda module, args, out: store.append(out))
    return store, handle


def profile_forward(name: str, forward: Callable[[], Any]) -> None:
    """One forward under torch.profiler (operators by own CPU time), then one under cProfile (Python functions)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        forward()
    print(f"\n{name}: torch.profiler, operators by own CPU time")
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)
    print("\n".join(f"  {line}" for line in table.splitlines()))
    profiler = cProfile.Profile()
    with torch.inference_mode():
        profiler.runcall(forward)
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(15)
    print(f"{name}: cProfile, Python functions by own time")
    for line in text.getvalue().splitlines():
        if line.strip() and not line.startswith(("   Ordered by", "   List reduced")):
            print(f"  {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latent", type=int, default=32, help="latent side (image side / 32; default 32 = 1024)")
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards per side (default 3)")
    parser.add_argument("--prompt-tokens", type=int, default=120, help="Qwen prompt tokens (default 120)")
    parser.add_argument("--byt5-tokens", type=int, default=0, help="ByT5 tokens (default 0: none)")
    parser.add_argument("--batch", type=int, default=1, help="samples per forward (default 1)")
    parser.add_argument("--sigma", type=float, default=0.75, help="the step's sigma (default 0.75)")
    parser.add_argument(
        "--attention", choices=("sdpa", "host-default"), default="sdpa",
        help="sdpa (default): ComfyUI started with --use-pytorch-cross-attention, both sides on attention_pytorch; "
        "host-default: ComfyUI's own CPU choice for native (sub-quadratic), for reference",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's own)")
    parser.add_argument("--profile", action="store_true", help="add one profiled forward of each side")
    add_model_arguments(parser)
    parser.set_defaults(single=2)
    args = parser.parse_args()
    if args.repeats < 1 or args.latent < 1 or args.prompt_tokens < 1 or args.batch < 1 or args.byt5_tokens < 0:
        parser.error("--repeats, --latent, --prompt-tokens and --batch must be >= 1, --byt5-tokens >= 0")
    if args.hidden <= 0 or args.hidden % HEAD_DIM:
        parser.error(f"--hidden must be a positive multiple of {HEAD_DIM} (ComfyUI's model has 128-wide heads)")
    if args.refiner_depth != NATIVE_REFINER_DEPTH:
        parser.error(f"ComfyUI's model has a {NATIVE_REFINER_DEPTH}-block token refiner: --refiner-depth must be 2")

    settings = {"use_pytorch_cross_attention": True} if args.attention == "sdpa" else {}
    enter_comfyui(args.device, **settings)
    import comfy.ldm.modules.attention as host_attention
    import torch
    from hy21_pack.nodes import attention as pack_attention
    from hy21_pack.nodes.model import wrap_dit

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.attention == "sdpa" and host_attention.optimized_attention is not host_attention.attention_pytorch:
        raise SystemExit(f"ComfyUI selected {host_attention.optimized_attention.__name__}, not attention_pytorch")
    device = torch.device(args.device)
    clock = Clock(device)

    dit, _ = wrapped_base_dit(args)
    pack = wrap_dit(dit)  # wrapped_base_dit keeps the DiT; its MODEL again, for apply_model
    native, built = native_model(dit)
    params = sum(p.numel() for p in dit.parameters())
    print(
        f"torch {torch.__version__}, {device}, {torch.get_num_threads()} CPU threads; DiT hidden {args.hidden} "
        f"({args.hidden // HEAD_DIM} heads), {args.double} double + {args.single} single blocks, token refiner "
        f"{args.refiner_depth}, {params / 1e9:.2f} B parameters, {args.dtype}; latent {args.latent}x{args.latent} "
        f"({args.latent * 32}x{args.latent * 32} image), batch {args.batch}, {args.prompt_tokens} prompt tokens, "
        f"{args.byt5_tokens} ByT5 tokens, sigma {args.sigma}; {args.repeats} repeats per side",
        flush=True,
    )
    print(f"pack: {type(pack.model).__name__} / {type(pack.model.diffusion_model).__module__}, layers "
          f"{type(dit.img_in.proj).__qualname__} ({type(dit.img_in.proj).__module__})")  # fmt: skip
    for line in built:
        print(line)

    x, sigma, kwargs = inputs(args, device)
    conds = {"pack": model_conds(pack, kwargs, args.batch), "native": model_conds(native, kwargs, args.batch)}
    models = {"pack": pack, "native": native}
    for name in models:
        print(f"{name} conds: {described_conds(conds[name])}")
    print("entry point: BaseModel.apply_model(x, sigma, **conds) of each MODEL's .model")

    def forward(name: str) -> Callable[[], Any]:
        model, extra = models[name], conds[name]
        return lambda: model.model.apply_model(x, sigma, transformer_options={"sigmas": sigma}, **extra)

    print(f"\nattention (--attention {args.attention}):")
    print(f"  ComfyUI selected: {host_attention.optimized_attention.__name__}; {native_bindings()}")
    print(f"  pack: {pack_attention.described()}")
    velocity, seen = {}, {}
    for name in models:  # warm-up: counts the attention calls and keeps the DiT's output
        store, handle = capture_output(models[name])
        with torch.inference_mode():
            _, seen[name] = counting_attention(forward(name))
        handle.remove()
        velocity[name] = store[-1].float()
        print(f"  {name} calls: {listed(seen[name])}")
    same = seen["pack"][SDPA] == seen["native"][SDPA] > 0 and seen["native"]["comfy attention_pytorch"] > 0
    if args.attention == "sdpa" and not same:
        raise SystemExit("the two sides did not both reach torch's SDPA through attention_pytorch")
    print(f"  same attention backend (torch SDPA through attention_pytorch on both sides): {'yes' if same else 'no'}")

    times: dict[str, list[float]] = {"pack": [], "native": []}
    with torch.inference_mode():
        for repeat in range(args.repeats):
            order = ["pack", "native"] if repeat % 2 == 0 else ["native", "pack"]
            for name in order:
                run = forward(name)
                start = clock()
                run()
                times[name].append(clock() - start)

    print(f"\n{'side':<7} {'fastest s':>10} {'median s':>9}   all (s)")
    for name, measured in times.items():
        every = ", ".join(f"{t:.3f}" for t in measured)
        print(f"{name:<7} {min(measured):>10.3f} {statistics.median(measured):>9.3f}   {every}")
    ratio = min(times["pack"]) / min(times["native"])
    median = statistics.median(times["pack"]) / statistics.median(times["native"])
    diff = float((velocity["pack"] - velocity["native"]).abs().max() / velocity["native"].abs().max())
    print(
        f"ratio pack / native (fastest): {ratio:.4f}; median {median:.4f}; "
        f"max|pack - native| / max|native| = {diff:.2e}"
    )
    narrow = "" if args.hidden == HIDDEN else " (narrow model: not the acceptance measurement)"
    print(f"ratio <= {TARGET}: {'yes' if ratio <= TARGET else 'no'}{narrow}")
    if args.profile:
        for name in models:
            profile_forward(name, forward(name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
