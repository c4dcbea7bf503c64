"""Benchmark: a rank-64 LoRA on full-width DiT blocks through ComfyUI's own patcher, bf16 and fp8 weights: the time
to patch and of one forward, and the memory the LoRA adds over the unpatched model.

The DiT is HunyuanImage-2.1's real width (hidden 3584, 28 heads, MLP 14336, text 3584) at reduced depth (``--double``
double and ``--single`` single blocks, no token-refiner block), random weights written once as a bf16 safetensors
file and loaded by the pack's ``load_dit`` (``quantize_fp8=True`` for fp8: the block linears stored in e4m3 with a
scale, as the official fp8 release) and wrapped as the DiT loader node wraps it. The LoRA is sd-scripts-named
(``lora_unet_double_blocks_0_img_attn_qkv`` ...), rank ``--rank`` on every Linear of every block, bf16, made in
memory as a loaded file would be. Each format runs in a fresh interpreter inside the hosted ComfyUI (``--device``):

1. the unpatched model is loaded (``load_models_gpu``) and run once as a warm-up; its memory is the baseline;
2. ``--repeats`` unpatched forwards: median time and peak;
3. the LoRA tensors are made, then ``comfy.sd.load_lora_for_models`` + ``load_models_gpu`` (the patch): time, peak
   and what stays resident afterwards (bf16 weights are merged into the weights here, as ComfyUI merges; fp8 layers
   get their patches handed over and apply them where they expand the weight, per forward);
4. as many patched forwards (the first right after the patch): median time and peak;
5. the unpatched model loaded again and run: its output must equal step 2's bit for bit (ComfyUI's unpatch).

Memory, all relative to the baseline (the unpatched model loaded, no LoRA in memory yet):
- on the CPU: resident memory of the process (VmRSS), its high-water mark VmHWM reset before each step through
  ``/proc/self/clear_refs``, with glibc told to map every block over 64 KiB separately so that freed tensors leave
  the RSS at once (so it follows live tensor bytes, plus the interpreter's small change). The LoRA's own tensors are
  CPU memory and counted from step 3 on.
- on CUDA: ``torch.cuda.memory_allocated`` / ``max_memory_allocated`` (reset before each step), GPU tensors only; the
  LoRA counts where it is moved to the GPU.
The bound compared with: the LoRA's own bytes plus the largest patched weight in bf16 (one layer's weight at the
compute dtype). "fwd extra" is the patched forward's peak minus the unpatched forward's peak (both over the
baseline); "peak extra", the larger of it and the patch's peak, is what the LoRA costs at its worst.

Run inside a ComfyUI tree (``--comfyui``, default ``$COMFYUI_PATH`` or ``.host/ComfyUI``):
    .venv/bin/python bench/bench_lora_patch.py [--device cpu|cuda] [--hidden 3584] [--rank 64] [--double 1]
        [--single 1] [--latent 8] [--formats bf16,fp8] [--repeats 1] [--threads N]
Prints a table and, last, one JSON line with every number. A hidden size below 3584 is a smoke test: the bound is
not judged there (the interpreter's own allocations are as large as the layers).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_partial_load import import_comfy, import_pack
from common import CpuMeter

ROOT = Path(__file__).resolve().parents[1]
FORMATS = ("bf16", "fp8")
FULL_HIDDEN = 3584
MIB = 2**20


def dit_config(hidden: int, double: int, single: int):
    """HunyuanImage-2.1's base DiT at ``hidden`` width (128-wide heads), reduced depth, no token-refiner block."""
    from hunyuan_core.dit import DiTConfig

    if hidden == FULL_HIDDEN:
        return DiTConfig(depth_double=double, depth_single=single, refiner_depth=0)
    return DiTConfig(
        hidden_size=hidden, num_heads=hidden // 128, depth_double=double, depth_single=single, refiner_depth=0,
        text_dim=hidden, byt5_hidden=hidden,
    )  # fmt: skip


# --- memory meters ----------------------------------------------------------------------------------------------


class CudaMeter:
    """Bytes of CUDA tensors allocated by torch, and their peak since ``reset``."""

    method = "CUDA: torch.cuda.memory_allocated / max_memory_allocated, peak reset per step"

    def __init__(self, device) -> None:
        import torch

        self.torch, self.device = torch, device

    def now(self) -> int:
        self.sync()
        return self.torch.cuda.memory_allocated(self.device)

    def reset(self) -> None:
        self.sync()
        self.torch.cuda.reset_peak_memory_stats(self.device)

    def peak(self) -> int:
        self.sync()
        return self.torch.cuda.max_memory_allocated(self.device)

    def sync(self) -> None:
        self.torch.cuda.synchronize(self.device)


# --- the worker: one format in a fresh interpreter ----------------------------------------------------------------


def block_linears(cfg) -> dict[str, tuple[int, int]]:
    """Official module path -> (out, in) of every Linear in the double and single blocks (the layers the official
    fp8 release quantizes, ``official_fp8_weights``), from a meta-device build."""
    import torch
    from hy21_pack.hunyuan_core.checkpoints.meta import meta_shapes, on_meta
    from hy21_pack.hunyuan_core.dit import HunyuanImageDiT
    from hy21_pack.hunyuan_core.dit.checkpoint import official_fp8_weights

    shapes = meta_shapes(lambda: HunyuanImageDiT(cfg, dtype=torch.bfloat16))
    names = official_fp8_weights(on_meta(lambda: HunyuanImageDiT(cfg, dtype=torch.bfloat16)))
    return {name.removesuffix(".weight"): tuple(shapes[name]) for name in sorted(names)}


def make_lora(linears: dict[str, tuple[int, int]], rank: int) -> dict:
    """sd-scripts' layout, bf16: ``lora_unet_<path>.lora_down.weight`` (rank, in), ``.lora_up.weight`` (out, rank),
    ``.alpha`` = rank; values N(0, 0.02^2)."""
    import torch

    gen = torch.Generator().manual_seed(7)
    lora = {}
    for name, (rows, cols) in linears.items():
        module = "lora_unet_" + name.replace(".", "_")
        lora[f"{module}.lora_down.weight"] = torch.randn(rank, cols, generator=gen, dtype=torch.bfloat16).mul_(0.02)
        lora[f"{module}.lora_up.weight"] = torch.randn(rows, rank, generator=gen, dtype=torch.bfloat16).mul_(0.02)
        lora[f"{module}.alpha"] = torch.tensor(float(rank), dtype=torch.bfloat16)
    return lora


def worker(fmt: str, dit_file: str, device_name: str, rank: int, latent: int, repeats: int) -> dict:
    import comfy.model_management as mm
    import comfy.sd
    import torch
    from hy21_pack.hunyuan_core.dit.checkpoint import load_dit
    from hy21_pack.nodes import management
    from hy21_pack.nodes.model import wrap_dit

    device = torch.device(device_name)
    meter = CudaMeter(device) if device.type == "cuda" else CpuMeter()
    dit = load_dit(dit_file, operations=management.operations(), quantize_fp8=fmt == "fp8")
    cfg = dit.config
    linears = block_linears(cfg)
    model = wrap_dit(dit)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, cfg.in_channels, latent, latent, generator=gen).to(device, torch.bfloat16)
    t = torch.tensor([700.0], device=device)
    text = torch.randn(1, 16, cfg.text_dim, generator=gen).to(device, torch.bfloat16)

    def forward(patcher, runs: int = 1) -> tuple[torch.Tensor, float]:
        """The output and the median time of ``runs`` forwards."""
        times = []
        with torch.no_grad():
            for _ in range(runs):
                meter.sync()
                start = time.perf_counter()
                out = patcher.model.diffusion_model(x, t, text)
                meter.sync()
                times.append(time.perf_counter() - start)
        return out.float().cpu(), statistics.median(times)

    mm.load_models_gpu([model])
    forward(model)  # warm-up
    base = meter.now()
    meter.reset()
    unpatched, unpatched_s = forward(model, repeats)
    unpatched_peak = meter.peak() - base

    meter.reset()
    lora = make_lora(linears, rank)
    meter.sync()
    start = time.perf_counter()
    patched, _ = comfy.sd.load_lora_for_models(model, None, lora, 1.0, 0.0)
    mm.load_models_gpu([patched])
    meter.sync()
    patch_s = time.perf_counter() - start
    patch_peak, patch_resident = meter.peak() - base, meter.now() - base
    meter.reset()
    out, patched_s = forward(patched, repeats)
    patched_peak = meter.peak() - base

    mm.load_models_gpu([model])
    restored, _ = forward(model)
    lora_bytes = sum(v.numel() * v.element_size() for v in lora.values())
    layer_bytes = max(rows * cols for rows, cols in linears.values()) * 2
    return {
        "format": fmt, "device": device_name, "patched_layers": len(linears),
        "patches_applied": len(patched.patches), "model_mib": model.model_size() / MIB,
        "lora_mib": lora_bytes / MIB, "layer_mib": layer_bytes / MIB, "bound_mib": (lora_bytes + layer_bytes) / MIB,
        "patch_s": patch_s, "forward_unpatched_s": unpatched_s, "forward_patched_s": patched_s,
        "patch_peak_mib": patch_peak / MIB, "patch_resident_mib": patch_resident / MIB,
        "forward_unpatched_peak_mib": unpatched_peak / MIB, "forward_patched_peak_mib": patched_peak / MIB,
        "forward_extra_mib": (patched_peak - unpatched_peak) / MIB,
        "peak_extra_mib": max(patch_peak, patched_peak - unpatched_peak) / MIB,
        "lora_changed_output": float((out - unpatched).norm() / unpatched.norm()),
        "finite": bool(torch.isfinite(out).all() and torch.isfinite(unpatched).all()),
        "unpatch_restored": bool(torch.equal(restored, unpatched)), "method": meter.method,
    }  # fmt: skip


# --- the driver ----------------------------------------------------------------------------------------------------


def run_format(fmt: str, dit_file: Path, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--worker", fmt, "--dit-file", str(dit_file), "--device", args.device,
               "--rank", str(args.rank), "--latent", str(args.latent), "--repeats", str(args.repeats),
               "--comfyui", args.comfyui]  # fmt: skip
    if args.threads:
        command += ["--threads", str(args.threads)]
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"the {fmt} worker failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def verdict(value_mib: float, bound_mib: float, judged: bool) -> str:
    ratio = value_mib / bound_mib
    if not judged:
        return f"{ratio:6.2f}x not judged (narrow model)"
    return f"{ratio:6.2f}x {'within' if ratio <= 1 else 'OVER'} the bound"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", default=os.environ.get("COMFYUI_PATH") or str(ROOT / ".host" / "ComfyUI"))
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--hidden", type=int, default=FULL_HIDDEN, help="DiT width (3584 is the released model)")
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--double", type=int, default=1)
    parser.add_argument("--single", type=int, default=1)
    parser.add_argument("--latent", type=int, default=8, help="latent side of the forward's input (8: 256x256)")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--repeats", type=int, default=1, help="forwards timed per model (median)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--worker", choices=FORMATS, help=argparse.SUPPRESS)
    parser.add_argument("--dit-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        import_comfy(Path(args.comfyui), args.device)
        import_pack()
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        print(json.dumps(worker(args.worker, args.dit_file, args.device, args.rank, args.latent, args.repeats)))
        return

    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
    from gguf_files import write_random_dit

    cfg = dit_config(args.hidden, args.double, args.single)
    results = {}
    with tempfile.TemporaryDirectory(prefix="hy21_lora_bench_") as tmp:
        start = time.perf_counter()
        dit_file = write_random_dit(Path(tmp), cfg, "dit", formats=("bf16",))["bf16"]
        written = time.perf_counter() - start
        for fmt in args.formats.split(","):
            results[fmt] = run_format(fmt, dit_file, args)

    judged = args.hidden == FULL_HIDDEN
    first = next(iter(results.values()))
    print(f"LoRA patch through ComfyUI's patcher on {args.device}: DiT hidden {cfg.hidden_size}, {cfg.num_heads} "
          f"heads, {cfg.depth_double} double + {cfg.depth_single} single blocks (random weights, file written in "
          f"{written:.0f} s); LoRA rank {args.rank} on all {first['patched_layers']} block linears "
          f"({first['lora_mib']:.1f} MiB bf16); largest layer {first['layer_mib']:.1f} MiB in bf16; bound = LoRA + "
          f"that layer = {first['bound_mib']:.1f} MiB; forward on a {args.latent}x{args.latent} latent + 16 text "
          f"tokens, median of {args.repeats} forward(s)")  # fmt: skip
    print(f"memory: {first['method']}; all relative to the unpatched model loaded")
    print("memory columns: MiB over the unpatched model; changed: relative L2 change of the output by the LoRA")
    print(f"{'weights':<8}{'model MiB':>10}{'patch s':>9}{'fwd s':>8}{'fwd+LoRA s':>11}{'patch peak':>11}"
          f"{'resident':>10}{'fwd extra':>10}{'peak extra':>11}{'changed':>9}{'restored':>9}")  # fmt: skip
    for fmt, r in results.items():
        print(f"{fmt:<8}{r['model_mib']:>10.1f}{r['patch_s']:>9.3f}{r['forward_unpatched_s']:>8.3f}"
              f"{r['forward_patched_s']:>11.3f}{r['patch_peak_mib']:>11.1f}{r['patch_resident_mib']:>10.1f}"
              f"{r['forward_extra_mib']:>10.1f}{r['peak_extra_mib']:>11.1f}{r['lora_changed_output']:>9.4f}"
              f"{r['unpatch_restored']!s:>9}")  # fmt: skip
    for fmt, r in results.items():
        for what, key in (("peak extra", "peak_extra_mib"), ("resident after patch", "patch_resident_mib")):
            print(f"{fmt} {what} / bound: {verdict(r[key], r['bound_mib'], judged)}")
    print(json.dumps({"device": args.device, "hidden": cfg.hidden_size, "rank": args.rank, "double": args.double,
                      "single": args.single, "latent": args.latent, "repeats": args.repeats, "judged": judged,
                      "formats": results}))  # fmt: skip


if __name__ == "__main__":
    main()
