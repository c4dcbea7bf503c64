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
    """``y = x @ (weight * scale).T + bias`` with ``weight`` kept in fp8 and the product formed in ``compute_dtype``.

    Built empty (on the meta device during a load) and given its tensors through ``load_state_dict``, like every
    other layer: ``weight`` (fp8), ``weight_scale`` (fp32, one value or one per output row) and ``bias``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool,
        compute_dtype: torch.dtype,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.compute_dtype = compute_dtype
        weight = torch.empty(out_features, in_features, dtype=torch.float8_e4m3fn, device=device)
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = nn.Parameter(torch.empty(out_features, dtype=compute_dtype, device=device)) if bias else None
        self.register_buffer("weight_scale", torch.ones((), dtype=torch.float32, device=device))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):
        # The scale is one value or one per output row, whichever the file has: the empty buffer takes its shape.
        scale = state_dict.get(prefix + "weight_scale")
        if scale is not None and scale.shape != self.weight_scale.shape:
            self.weight_scale = torch.empty(scale.shape, dtype=torch.float32, device="meta")
        weight = state_dict.get(prefix + "weight")
        if weight is not None and weight.dtype not in FP8_DTYPES:
            errors.append(f"Fp8Linear {prefix}weight: needs a float8 tensor, got {weight.dtype}")
            return
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing, unexpected, errors)

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


def fp8_state(
    weight: Fp8Weight, bias: torch.Tensor | None, compute_dtype: torch.dtype, device: torch.device | str
) -> dict[str, torch.Tensor]:
    """The state dict an ``Fp8Linear`` loads: the fp8 weight as stored, its scale in fp32 (a column of per-row
    scales when the fused layer's parts had their own), the bias in the compute dtype."""
    scale = weight.scale.float()
    scale = scale.reshape(-1, 1) if scale.numel() > 1 else scale
    state = {"weight": weight.weight.to(device), "weight_scale": scale.to(device)}
    if bias is not None:
        state["bias"] = bias.to(device, compute_dtype)
    return state


def swap_in_fp8(model: nn.Module, module_name: str, *, has_bias: bool, compute_dtype: torch.dtype) -> Fp8Linear:
    """Replace the ``Linear`` at ``module_name`` by an empty ``Fp8Linear`` of the same size (on the meta device),
    ready for ``load_state_dict``. The sizes come from the layer's attributes: a lazy layer has no weight yet."""
    linear = model.get_submodule(module_name)
    with torch.device("meta"):
        layer = Fp8Linear(linear.in_features, linear.out_features, has_bias, compute_dtype)
    parent, _, child = module_name.rpartition(".")
    setattr(model.get_submodule(parent), child, layer)
    return layer
