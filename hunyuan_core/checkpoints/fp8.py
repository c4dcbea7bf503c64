"""fp8 weights as files hold them: the dtypes, the official per-tensor quantization, and ``Fp8Weight`` (a weight
with its scale, as a reader hands it to the loader). The layer that keeps them fp8 is ``quantized.QuantizedLinear``.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from typing import Any, NamedTuple

import torch
from torch import nn

FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)


# Elements converted at a time. Small enough that the float32 temporaries (1 MiB) stay under glibc's mmap threshold
# region and are reused, instead of leaving 16 MiB holes the allocator keeps after a large model is loaded
# (measured in tests/test_load_memory.py: peak 0.58x the file with 1 << 18, up to 0.65x with 1 << 22).
QUANTIZE_CHUNK = 1 << 18


def quantize_fp8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tensor e4m3 quantization as the official files do it: scale = amax / 448.

    Works through the tensor in row chunks, so quantizing a bf16 file at load never holds a float32 copy of a layer
    (the result equals the one-shot ``(w.float() / scale).to(e4m3)``)."""
    flat = weight.reshape(weight.shape[0], -1) if weight.dim() > 1 else weight.reshape(1, -1)
    amax = torch.stack([chunk.abs().amax().float() for chunk in _row_chunks(flat)]).amax()
    scale = amax.clamp(min=1e-12) / torch.finfo(torch.float8_e4m3fn).max
    out = torch.empty(flat.shape, dtype=torch.float8_e4m3fn, device=weight.device)
    start = 0
    for chunk in _row_chunks(flat):
        out[start : start + chunk.shape[0]] = (chunk.float() / scale).to(torch.float8_e4m3fn)
        start += chunk.shape[0]
    return out.reshape(weight.shape), scale


def _row_chunks(rows: torch.Tensor) -> list[torch.Tensor]:
    step = max(1, QUANTIZE_CHUNK // max(1, rows.shape[1]))
    return list(rows.split(step))


class Fp8Weight(NamedTuple):
    """An fp8 weight as read from a file, with its scale (per tensor, or one per output row)."""

    weight: torch.Tensor
    scale: torch.Tensor

    def dequantized(self) -> torch.Tensor:
        """The weight in fp32, for parameters that are not ``Linear`` weights (norms, embeddings) and stay plain."""
        scale = self.scale.float()
        if scale.numel() > 1:
            scale = scale.reshape(-1, *([1] * (self.weight.dim() - 1)))
        return self.weight.float() * scale


def quantizing_reader(read: Callable[[str], Any], names: Container[str]) -> Callable[[str], Any]:
    """``read`` with the float tensors of ``names`` quantized to fp8 as they are read (``quantize_fp8``); what is
    already compact (fp8 with its scale, GGUF blocks) passes as it is. How a bf16 file becomes an fp8 model at load
    without ever holding the bf16 model."""

    def reading(name: str) -> Any:
        value = read(name)
        if name in names and isinstance(value, torch.Tensor) and value.dtype not in FP8_DTYPES:
            return Fp8Weight(*quantize_fp8(value))
        return value

    return reading


def linear_weights(model: nn.Module, under: tuple[str, ...]) -> set[str]:
    """The weight names of every ``Linear`` whose module path starts with one of ``under`` (what fp8 quantizes)."""
    return {
        f"{name}.weight" for name, module in model.named_modules()
        if name.startswith(under) and isinstance(module, nn.Linear)
    }  # fmt: skip
