"""The distilled workflow through a real ComfyUI server on a GPU, with ComfyUI's own low-VRAM modes: full load,
``--reserve-vram`` (ComfyUI keeps that much free and streams the rest) and ``--lowvram``; peak GPU memory and time.

The DiT is full width (hidden 3584, 28 heads) at reduced depth with random weights, in the formats given (bf16
safetensors, Q4_K GGUF in QuantStack's layout); the text encoders and VAE are the tiny test set, so the DiT is what
fills the GPU. Peak memory is polled from ``nvidia-smi`` (the server is another process), sampled every 50 ms. Each
mode restarts the server; every run's image must equal the full load's (streaming changes no arithmetic).

Run on a GPU machine (a few minutes, no downloads):
    .venv/bin/python bench/bench_lowvram_server.py [--double 4] [--single 8] [--size 2048] [--formats bf16,Q4_K]
        [--reserve-gb 130]
Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts"), str(ROOT / "tests")]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from gguf_files import write_random_dit  # noqa: E402
from PIL import Image  # noqa: E402

from hunyuan_core.dit import DiTConfig  # noqa: E402
from hy21_host import ComfyClient, ComfyHost  # noqa: E402
from hy21_host.tiny_models import GLYPH_WIDTH, QWEN_HIDDEN, write_tiny_models  # noqa: E402

WORKFLOW = ROOT / "workflows" / "api" / "hunyuanimage21_distilled_api.json"
LOADER, LATENT, SAVE = "1", "5", "8"


class MemoryPoll:
    """The largest ``memory.used`` nvidia-smi reports for GPU 0 while active (MiB); None without nvidia-smi."""

    def __init__(self) -> None:
        self.peak: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(
                    ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                    capture_output=True, text=True, timeout=5, check=True,
                )  # fmt: skip
                used = int(out.stdout.strip().splitlines()[0])
                self.peak = used if self.peak is None else max(self.peak, used)
            except (OSError, subprocess.SubprocessError, ValueError, IndexError):
                return
            time.sleep(0.05)

    def __enter__(self) -> MemoryPoll:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def write_models(models: Path, double: int, single: int, formats: list[str]) -> dict[str, str]:
    """The tiny set plus a full-width DiT per format; returns the DiT file name per format."""
    write_tiny_models(models)
    cfg = DiTConfig(
        variant="distilled", depth_double=double, depth_single=single, text_dim=QWEN_HIDDEN, byt5_dim=GLYPH_WIDTH,
        guidance_embed=True, meanflow=True,
    )  # fmt: skip
    files = write_random_dit(models / "diffusion_models", cfg, "bench_full_width", tuple(formats), seed=3)
    return {fmt: path.name for fmt, path in files.items()}


def run_mode(base: Path, args: tuple[str, ...], graph: dict, cpu: bool = False) -> dict:
    host = ComfyHost(base_dir=base, extra_args=args, cpu=cpu)
    host.start(timeout=300)
    try:
        client = ComfyClient(host.url)
        with MemoryPoll() as poll:
            started = time.perf_counter()
            result = client.run(graph, timeout=1800).raise_for_error()
            seconds = time.perf_counter() - started
        (entry,) = result.outputs[SAVE]["images"]
        with Image.open(io.BytesIO(client.view(entry["filename"], entry["subfolder"], entry["type"]))) as png:
            pixels = np.asarray(png.convert("RGB"))
        partial = "loaded partially" in host.log_path.read_text(errors="replace")
    finally:
        host.stop()
    return {"seconds": seconds, "peak_mib": poll.peak, "partial": partial, "image": pixels}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--double", type=int, default=4)
    parser.add_argument("--single", type=int, default=8)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--formats", default="bf16,Q4_K")
    parser.add_argument("--reserve-gb", type=float, default=None, help="--reserve-vram value (default: all but 12 GB)")
    parser.add_argument("--cpu-smoke", action="store_true", help="full load only, on the CPU: checks the plumbing")
    a = parser.parse_args()
    formats = a.formats.split(",")
    if a.cpu_smoke:  # ComfyUI refuses --lowvram with --cpu: only the full load can run here
        total_gb, modes = 0.0, {"full": ()}
    else:
        total_gb = torch.cuda.get_device_properties(0).total_memory / 2**30
        reserve = a.reserve_gb if a.reserve_gb is not None else max(0.0, total_gb - 12)
        modes = {"full": (), "reserve": ("--reserve-vram", f"{reserve:g}"), "lowvram": ("--lowvram",)}
    rows = []
    with tempfile.TemporaryDirectory(prefix="hy21_lowvram_") as tmp:
        base = Path(tmp)
        names = write_models(base / "models", a.double, a.single, formats)
        for fmt in formats:
            graph = json.loads(WORKFLOW.read_text())
            graph[LATENT]["inputs"].update(size="custom", width=a.size, height=a.size)
            graph[LOADER]["inputs"]["dit_name"] = names[fmt]
            reference = None
            for mode, extra in modes.items():
                r = run_mode(base, extra, graph, cpu=a.cpu_smoke)
                reference = r["image"] if reference is None else reference
                rows.append({
                    "format": fmt, "mode": mode, "seconds": r["seconds"], "peak_mib": r["peak_mib"],
                    "partial": r["partial"], "same_image": bool(np.array_equal(r["image"], reference)),
                })  # fmt: skip
    print(
        f"distilled workflow at {a.size}x{a.size}, full-width DiT {a.double}+{a.single} blocks, GPU {total_gb:.0f} GB"
    )
    print(f"{'format':7} {'mode':8} {'seconds':>8} {'peak MiB':>9} {'partial':>8} {'same image':>11}")
    for r in rows:
        print(f"{r['format']:7} {r['mode']:8} {r['seconds']:8.2f} {r['peak_mib'] or 0:9d} {r['partial']!s:>8} "
              f"{r['same_image']!s:>11}")  # fmt: skip
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
