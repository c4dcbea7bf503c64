"""Partial loading through ComfyUI's own ``ModelPatcher``: a DiT in bf16, fp8 (quantized at load) and GGUF Q4_K,
loaded fully and then with a VRAM budget smaller than the model, gives bit-identical outputs.

For each format the DiT is built by the pack's loader with the pack's ``comfy.ops`` layers, wrapped as the nodes
wrap it, and run twice on the same inputs: after ``patch_model(device)`` (everything on the device) and after
``patch_model(device, lowvram_model_memory=budget)`` (ComfyUI loads what fits and streams the rest per forward).
Reports the streamed modules, the bytes on the device, the forward time of each and, on CUDA, the peak memory.
The weights are random (generated here, real file formats); ``--width full`` is the released width (hidden 3584)
at reduced depth.

Run inside a ComfyUI tree (``--comfyui``, default ``$COMFYUI_PATH`` or ``.host/ComfyUI``):
    .venv/bin/python bench/bench_partial_load.py [--device cuda] [--width tiny|full] [--double 1] [--single 1]
        [--budget 0.3 | --budget-gb 12] [--latent 64] [--formats bf16,fp8,Q4_K]
Prints a table and, last, one JSON line with every number.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORMATS = ("bf16", "fp8", "Q4_K")


def import_comfy(comfyui: Path, device: str) -> None:
    """Import ComfyUI from ``comfyui`` set up for ``device`` (its CLI args must be set before model management)."""
    sys.path.insert(0, str(comfyui))
    from comfy.cli_args import args

    args.cpu = device == "cpu"


def import_pack():
    """The pack imported as ComfyUI imports a custom node (package ``hy21_pack``)."""
    spec = importlib.util.spec_from_file_location(
        "hy21_pack", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
    )
    pack = importlib.util.module_from_spec(spec)
    sys.modules["hy21_pack"] = pack
    spec.loader.exec_module(pack)
    return pack


def write_files(folder: Path, width: str, double: int, single: int) -> tuple[object, dict[str, Path]]:
    """A random DiT as a bf16 safetensors file and as a QuantStack-style Q4_K GGUF."""
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
    from gguf_files import write_random_dit

    from hunyuan_core.dit import DiTConfig

    if width == "full":
        cfg = DiTConfig(
            variant="distilled", depth_double=double, depth_single=single, guidance_embed=True, meanflow=True
        )
    else:
        cfg = DiTConfig(
            variant="distilled", hidden_size=256, num_heads=2, depth_double=double, depth_single=single,
            rope_axes=(64, 64), text_dim=256, byt5_dim=64, byt5_hidden=256, guidance_embed=True, meanflow=True,
        )  # fmt: skip
    return cfg, write_random_dit(folder, cfg, "dit")


def inputs_for(cfg, latent: int, device) -> dict:
    import torch

    g = torch.Generator().manual_seed(0)
    text = 32
    found = dict(
        x=torch.randn(1, cfg.in_channels, latent, latent, generator=g), t=torch.tensor([700.0]),
        text=torch.randn(1, text, cfg.text_dim, generator=g), text_mask=torch.ones(1, text, dtype=torch.long),
        byt5=torch.randn(1, 8, cfg.byt5_dim, generator=g), byt5_mask=torch.ones(1, 8, dtype=torch.long),
        guidance=torch.tensor([3250.0]), timestep_r=torch.tensor([500.0]),
    )  # fmt: skip
    return {k: v.to(device) for k, v in found.items()}


def measure(patcher, inputs: dict, device, budget: int) -> dict:
    """Load with ``budget`` bytes (0: everything), run one warm and one timed forward, unload."""
    import torch

    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    patcher.patch_model(device_to=device, lowvram_model_memory=budget)
    model = patcher.model
    streamed = [n for n, m in model.named_modules() if getattr(m, "prev_comfy_cast_weights", None) is not None]
    try:
        with torch.no_grad():
            out = model(**inputs)
            if cuda:
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            out = model(**inputs)
            if cuda:
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - start
    finally:
        patcher.unpatch_model(device_to=patcher.offload_device)
    return {
        "out": out.float().cpu(),
        "streamed": len(streamed),
        "streamed_quantized": sum(1 for n in streamed if hasattr(model.get_submodule(n), "weight_format")),
        "seconds": seconds,
        "peak_gb": torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None,
    }


def run(device_name: str, width: str, double: int, single: int, budget: float, budget_gb: float | None,
        latent: int, formats: list[str]) -> dict:  # fmt: skip
    import torch
    from hy21_pack.hunyuan_core.dit.checkpoint import load_dit
    from hy21_pack.nodes import management

    device = torch.device(device_name)
    results = {}
    with tempfile.TemporaryDirectory(prefix="hy21_partial_") as tmp:
        cfg, files = write_files(Path(tmp), width, double, single)
        inputs = inputs_for(cfg, latent, device)
        for fmt in formats:
            path = files["Q4_K" if fmt == "Q4_K" else "bf16"]
            model = load_dit(path, operations=management.operations(), quantize_fp8=fmt == "fp8")
            loose = [  # modules owning parameters that ComfyUI could not stream
                n for n, m in model.named_modules()
                if any(p is not None for p in m._parameters.values()) and not hasattr(m, "comfy_cast_weights")
            ]  # fmt: skip
            patcher = management.patch(model, "diffusion")
            size = patcher.model_size()
            allowed = int(budget_gb * 2**30) if budget_gb else int(size * budget)
            full = measure(patcher, inputs, device, 0)
            part = measure(patcher, inputs, device, allowed)
            results[fmt] = {
                "model_gb": size / 2**30, "budget_gb": allowed / 2**30, "modules": sum(1 for _ in model.modules()),
                "streamed": part["streamed"], "streamed_quantized": part["streamed_quantized"],
                "bit_identical": bool(torch.equal(full["out"], part["out"])),
                "finite": bool(full["out"].isfinite().all()), "not_streamable": loose,
                "full_s": full["seconds"], "partial_s": part["seconds"], "full_peak_gb": full["peak_gb"],
                "partial_peak_gb": part["peak_gb"],
            }  # fmt: skip
            del model, patcher
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", default=os.environ.get("COMFYUI_PATH") or str(ROOT / ".host" / "ComfyUI"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--width", choices=("tiny", "full"), default="tiny")
    parser.add_argument("--double", type=int, default=1)
    parser.add_argument("--single", type=int, default=1)
    parser.add_argument("--budget", type=float, default=0.3, help="VRAM budget as a fraction of the model")
    parser.add_argument("--budget-gb", type=float, default=None, help="VRAM budget in GiB (overrides --budget)")
    parser.add_argument("--latent", type=int, default=4, help="latent side (64 is 2048x2048)")
    parser.add_argument("--formats", default=",".join(FORMATS))
    a = parser.parse_args()
    import_comfy(Path(a.comfyui), a.device)
    import_pack()
    results = run(a.device, a.width, a.double, a.single, a.budget, a.budget_gb, a.latent, a.formats.split(","))
    print(f"partial load on {a.device}, {a.width} width, {a.double}+{a.single} blocks, latent {a.latent}x{a.latent}")
    print(f"{'format':8} {'model GB':>9} {'budget GB':>9} {'streamed':>9} {'identical':>9} {'full s':>8} "
          f"{'partial s':>9} {'peak GB full/partial':>21}")  # fmt: skip
    for fmt, r in results.items():
        peaks = "n/a" if r["full_peak_gb"] is None else f"{r['full_peak_gb']:.2f}/{r['partial_peak_gb']:.2f}"
        print(f"{fmt:8} {r['model_gb']:9.3f} {r['budget_gb']:9.3f} {r['streamed']:9d} {r['bit_identical']!s:>9} "
              f"{r['full_s']:8.3f} {r['partial_s']:9.3f} {peaks:>21}")  # fmt: skip
    print(json.dumps(results))


if __name__ == "__main__":
    main()
