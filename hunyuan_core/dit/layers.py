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
        normed = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.to(x.dtype) * self.weight.to(x.dtype)


def layer_norm(x: torch.Tensor) -> torch.Tensor:
    """LayerNorm without affine parameters (eps 1e-6), as used inside the DiT blocks."""
    return F.layer_norm(x, (x.shape[-1],), eps=LN_EPS)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def rope_tables(
    grid: tuple[int, ...], axes: tuple[int, ...], theta: float, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables ``[tokens, head_dim]`` for an n-D integer grid, pairs interleaved (dims 2i, 2i+1).

    Positions start at 0 on every axis; the grid is flattened row-major (first axis outermost).
    """
    coords = torch.meshgrid(*[torch.arange(n, dtype=torch.float32, device=device) for n in grid], indexing="ij")
    cos_parts, sin_parts = [], []
    for pos, dim in zip(coords, axes, strict=True):
        freqs = 1.0 / theta ** (torch.arange(0, dim, 2, device=device, dtype=torch.float32)[: dim // 2] / dim)
        angles = torch.outer(pos.reshape(-1), freqs)
        cos_parts.append(angles.cos().repeat_interleave(2, dim=1))
        sin_parts.append(angles.sin().repeat_interleave(2, dim=1))
    return torch.cat(cos_parts, dim=1), torch.cat(sin_parts, dim=1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x [B, N, heads, D]`` by the tables; each pair (a, b) turns into (a cos - b sin, b cos + a sin)."""
    xf = x.float()
    pairs = xf.unflatten(-1, (-1, 2))
    rotated = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
    cos, sin = cos[None, :, None, :], sin[None, :, None, :]
    return (xf * cos + rotated * sin).to(x.dtype)
