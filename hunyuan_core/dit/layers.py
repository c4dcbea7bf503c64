"""Small building blocks of the DiT: time features, embedders, RMS norm, RoPE, modulation."""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

TIME_FEATURES = 256
LN_EPS = 1e-6


def timestep_features(t: torch.Tensor, dim: int = TIME_FEATURES, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of a float timestep (sigma*1000), ordered [cos, sin] as in the official code."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimestepEmbedder(nn.Module):
    """Time features -> Linear -> SiLU -> Linear (keys ``mlp.0``, ``mlp.2``)."""

    def __init__(self, hidden: int, dtype=None, device=None, operations: SimpleNamespace = nn) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            operations.Linear(TIME_FEATURES, hidden, dtype=dtype, device=device),
            nn.SiLU(),
            operations.Linear(hidden, hidden, dtype=dtype, device=device),
        )

    def forward(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return self.mlp(timestep_features(t).to(dtype))


class RMSNorm(nn.Module):
    """Per-head RMS norm, computed in fp32 and cast back before the learnable scale (official order)."""

    def __init__(self, dim: int, eps: float = 1e-6, dtype=None, device=None) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, dtype=dtype, device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wide = x.float()
        normed = (wide * torch.rsqrt(wide.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)
        normed *= self.weight.to(x.dtype)  # in place on the fresh tensor: one temporary fewer, the same rounding
        return normed


def layer_norm(x: torch.Tensor) -> torch.Tensor:
    """LayerNorm without affine parameters (eps 1e-6), as used inside the DiT blocks."""
    return F.layer_norm(x, (x.shape[-1],), eps=LN_EPS)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``x * (1 + scale) + shift`` per sample, the shift added in place (one temporary fewer, the same rounding)."""
    out = x * (1 + scale.unsqueeze(1))
    out += shift.unsqueeze(1)
    return out


def rope_rotation(
    grid: tuple[int, ...], axes: tuple[int, ...], theta: float, device: torch.device, unrotated: int = 0
) -> torch.Tensor:
    """The RoPE rotations ``[tokens, head_dim / 2, 2, 2]`` of an n-D integer grid: for each token and each pair of
    dims (2i, 2i+1) the matrix ``[[cos, -sin], [sin, cos]]`` of its angle.

    Positions start at 0 on every axis; the grid is flattened row-major (first axis outermost). ``unrotated``
    identity rows follow (the text tokens of the joint sequence, which the official model does not rotate: the
    identity leaves them exactly as they are).
    """
    coords = torch.meshgrid(*[torch.arange(n, dtype=torch.float32, device=device) for n in grid], indexing="ij")
    angles = []
    for pos, dim in zip(coords, axes, strict=True):
        freqs = 1.0 / theta ** (torch.arange(0, dim, 2, device=device, dtype=torch.float32)[: dim // 2] / dim)
        angles.append(torch.outer(pos.reshape(-1), freqs))
    angle = torch.cat(angles, dim=1)
    if unrotated:
        angle = torch.cat([angle, angle.new_zeros(unrotated, angle.shape[1])])
    cos, sin = angle.cos(), angle.sin()
    return torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)


def apply_rope_(x: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Rotate ``x [B, N, heads, D]`` by ``rotation [N, D / 2, 2, 2]`` in float32: each pair (a, b) turns into
    (a cos - b sin, b cos + a sin), the official arithmetic and rounding.

    Consumes ``x``: a float32 ``x`` is overwritten as scratch space (the blocks pass their freshly normed q and k),
    which saves a temporary as large as ``x`` per call.
    """
    pairs = x.float().unflatten(-1, (-1, 2))
    matrix = rotation[None, :, None]
    out = matrix[..., 0] * pairs[..., 0:1]  # (a cos, a sin)
    b = pairs[..., 1]
    pairs[..., 0].copy_(b).mul_(matrix[..., 0, 1])  # a is used: its slot takes -b sin
    b.mul_(matrix[..., 1, 1])  # b cos
    out += pairs
    return out.flatten(-2).to(x.dtype)
