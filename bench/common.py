"""What the benchmarks share: seeded stand-in weights, worker subprocesses and their memory readings.

Each model runs in a fresh subprocess (the benchmark script again, with ``--worker KIND``) so its peak resident
memory (ru_maxrss) is its own; the worker prints one JSON line of statistics as its last output.
"""

from __future__ import annotations

import ctypes
import json
import re
import resource
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

GIB = 1024**3


def fill(tensor: torch.Tensor, name: str) -> torch.Tensor:
    """Deterministic weights by our parameter name, so ours and the reference get the same numbers, drawn on the
    tensor's own device (a GPU benchmark never builds its weights on the host). Returns ``tensor``.

    Matrices and convolution weights N(0, 1/fan_in); norm gains (1-D weights, RMS gammas) 1; biases N(0, 0.02^2).
    """
    gen = torch.Generator(device=tensor.device).manual_seed(zlib.crc32(name.encode()))
    if name.endswith("gamma") or (tensor.ndim == 1 and name.endswith("weight")):
        return tensor.fill_(1.0)
    scale = tensor[0].numel() ** -0.5 if tensor.ndim > 1 else 0.02
    return tensor.copy_(torch.randn(tensor.shape, generator=gen, device=tensor.device) * scale)


def materialise(model: nn.Module, ours_of: dict[str, str]) -> nn.Module:
    """A meta-device ``model`` on the CPU, each parameter filled by ``fill`` under its name in our model."""
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for name, param in model.named_parameters():
            fill(param, ours_of[name])
    return model.eval()


def rss_now() -> int:
    """Resident memory now, in bytes (the baseline a worker's peak is compared with)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def peak_rss() -> int:
    """Peak resident memory of this process so far, in bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def timed(run: Callable[[], torch.Tensor], repeats: int) -> tuple[torch.Tensor, list[float]]:
    """The last output of ``repeats`` runs without autograd, and each run's wall time."""
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            start = time.perf_counter()
            out = run()
            times.append(time.perf_counter() - start)
    return out, times


def run_worker(script: str, kind: str, args: list[str]) -> dict:
    """Run ``script --worker kind *args`` in a fresh interpreter and return its last line's JSON statistics."""
    result = subprocess.run(
        [sys.executable, script, "--worker", kind, *args], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"{kind} worker failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


class CpuMeter:
    """Resident bytes of this process (VmRSS) and their high-water mark since ``reset`` (VmHWM), with glibc told to
    map every block over 64 KiB on its own, so a freed tensor leaves the RSS at once and it follows live memory.
    Linux only: ``available()`` says whether it works here."""

    method = "CPU: process RSS, VmHWM reset per step via /proc/self/clear_refs, glibc mmap threshold 64 KiB"

    def __init__(self) -> None:
        if not self.available():
            raise SystemExit("glibc refused M_MMAP_THRESHOLD (or no /proc): the RSS would not follow freed tensors")

    @staticmethod
    def available() -> bool:
        """Set glibc's mmap threshold (once is enough) and report whether the meter can run."""
        try:
            libc = ctypes.CDLL("libc.so.6")
        except OSError:
            return False
        return bool(libc.mallopt(-3, 1 << 16)) and Path("/proc/self/clear_refs").exists()  # M_MMAP_THRESHOLD

    @staticmethod
    def _field(name: str) -> int:
        text = Path("/proc/self/status").read_text()
        return int(re.search(rf"^{name}:\s+(\d+) kB", text, re.M)[1]) * 1024

    def now(self) -> int:
        return self._field("VmRSS")

    def reset(self) -> None:
        Path("/proc/self/clear_refs").write_text("5")

    def peak(self) -> int:
        return self._field("VmHWM")

    def sync(self) -> None:
        pass

    def added_by(self, run: Callable[[], object]) -> int:
        """Peak resident bytes ``run()`` adds (what it returns is held until the peak is read)."""
        self.reset()
        before = self.now()
        out = run()
        peak = self.peak() - before
        del out
        return peak
