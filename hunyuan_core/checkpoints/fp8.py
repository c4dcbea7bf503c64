"""Linear layers whose weights stay in float8 in memory and are dequantized per layer at compute time.

Matches the official FP8 path (weight-only: ``F.linear(x_bf16, w.to(bf16) * scale, bias)``), so fp8 files save
memory without changing the arithmetic. A fused layer made of parts with their own scales (q, k, v, mlp) keeps
one scale per output row. ``swap_in_fp8`` is the one place a loader replaces a ``Linear`` by an ``Fp8Linear``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)


class Fp8Linear(nn.Module):
    """``y = x @ (weight * scale).T + bias`` with ``weight`` kept in fp8 and the product formed in ``compute_dtype``."""

    def __init__(
        self, weight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None, compute_dtype: torch.dtype
    ) -> None:
        super().__init__()
        if weight.dtype not in FP8_DTYPES:
            raise ValueError(f"Fp8Linear needs a float8 weight, got {weight.dtype}")
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        self.compute_dtype = compute_dtype
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)
        self.register_buffer("weight_scale", scale.float().reshape(-1, 1) if scale.numel() > 1 else scale.float())

    def dequantized_weight(self) -> torch.Tensor:
        return (self.weight.float() * self.weight_scale).to(self.compute_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(self.compute_dtype)
        return F.linear(x.to(self.compute_dtype), self.dequantized_weight(), bias)

    def extra_repr(self) -> str:
        dtypes = f"weight={self.weight.dtype}, compute={self.compute_dtype}"
        return f"in={self.in_features}, out={self.out_features}, {dtypes}"


def quantize_fp8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tensor e4m3 quantization as the official files do it: scale = amax / 448."""
    scale = weight.float().abs().amax().clamp(min=1e-12) / torch.finfo(torch.float8_e4m3fn).max
    return (weight.float() / scale).to(torch.float8_e4m3fn), scale


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


def swap_in_fp8(
    model: nn.Module,
    module_name: str,
    weight: Fp8Weight,
    bias: torch.Tensor | None,
    compute_dtype: torch.dtype,
    device: torch.device | str,
) -> Fp8Linear:
    """Replace the ``Linear`` at ``module_name`` by an ``Fp8Linear`` holding the fp8 weight, scale and bias."""
    bias = None if bias is None else bias.to(device, compute_dtype)
    layer = Fp8Linear(weight.weight.to(device), weight.scale.to(device), bias, compute_dtype)
    parent, _, child = module_name.rpartition(".")
    setattr(model.get_submodule(parent), child, layer)
    return layer
