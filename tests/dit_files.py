"""Tiny HunyuanImage-2.1 DiT checkpoints written in every published layout, for loader tests."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from hunyuan_core.dit import DiTConfig, HunyuanImageDiT
from hunyuan_core.dit import keys as K
from hunyuan_core.fp8 import quantize_fp8

TINY = DiTConfig(
    variant="base", hidden_size=64, num_heads=2, depth_double=2, depth_single=2, rope_axes=(16, 16),
    text_dim=48, byt5_dim=40, byt5_hidden=96,
)  # fmt: skip
TINY_DISTILLED = TINY.with_(variant="distilled", guidance_embed=True, meanflow=True)
TINY_REFINER = TINY.with_(
    variant="refiner", in_channels=128, patch_dims=3, rope_axes=(4, 14, 14), byt5_dim=None, byt5_hidden=2048,
    guidance_embed=True, meanflow=True,
)  # fmt: skip


def random_state(cfg: DiTConfig, seed: int = 0, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Our (official fused) state dict with every tensor random, so no layer is an identity by accident."""
    with torch.device("meta"):
        model = HunyuanImageDiT(cfg, dtype=dtype)
    gen = torch.Generator().manual_seed(seed)
    return {name: (torch.randn(t.shape, generator=gen) * 0.1).to(dtype) for name, t in model.state_dict().items()}


def from_diffusers(reference: torch.nn.Module, model: HunyuanImageDiT) -> HunyuanImageDiT:
    """Load a diffusers ``HunyuanImageTransformer2DModel``'s weights into our DiT (fusing split projections).

    Every diffusers tensor must be used exactly once, so a mapping that forgets or repeats one fails here.
    """
    ref_state, converted, used = reference.state_dict(), {}, []
    for name in model.state_dict():
        source = K.source_of(name, K.DIFFUSERS)
        tensor = torch.cat([ref_state[k] for k in source.keys], dim=0)
        converted[name] = torch.cat(tensor.chunk(2, dim=0)[::-1], dim=0) if source.swap_halves else tensor
        used.extend(source.keys)
    assert sorted(used) == sorted(ref_state), "conversion left diffusers tensors unused or used some twice"
    model.load_state_dict(converted, strict=True)
    return model


def part_sizes(name: str, tensor: torch.Tensor, n_parts: int, hidden: int) -> list[int]:
    if n_parts == 4:  # single block linear1: q, k, v, mlp
        return [hidden, hidden, hidden, tensor.shape[0] - 3 * hidden]
    return [tensor.shape[0] // n_parts] * n_parts


def to_layout(state: dict[str, torch.Tensor], layout: str, hidden: int, prefix: str = "") -> dict[str, torch.Tensor]:
    """Re-express our state dict in another layout, splitting fused tensors the way that layout stores them."""
    out = {}
    for name, tensor in state.items():
        source = K.source_of(name, layout)
        if source.swap_halves:
            tensor = torch.cat(tensor.chunk(2, dim=0)[::-1], dim=0)
        pieces = tensor.split(part_sizes(name, tensor, len(source.keys), hidden)) if len(source.keys) > 1 else [tensor]
        for key, piece in zip(source.keys, pieces, strict=True):
            out[prefix + key] = piece.contiguous()
    return out


def is_block_linear_weight(key: str, tensor: torch.Tensor) -> bool:
    return ("double_blocks." in key or "single_blocks." in key) and key.endswith(".weight") and tensor.ndim == 2


def to_official_fp8(
    split_state: dict[str, torch.Tensor], in_file_scales: bool
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Official fp8 release: block linears as e4m3 weights with per-module scales (amax / 448).

    Returns (checkpoint tensors, scale-file tensors keyed by module name, the dequantized weights expected).
    """
    ckpt, scales, expected = {}, {}, {}
    for key, tensor in split_state.items():
        if is_block_linear_weight(key, tensor):
            weight, scale = quantize_fp8(tensor)
            module = key.removesuffix(".weight")
            ckpt[key] = weight
            scales[module] = scale.reshape(())
            if in_file_scales:
                ckpt[f"{module}.weight_scale"] = scale.reshape(())
            expected[key] = (weight.float() * scale).to(torch.bfloat16)
        else:
            ckpt[key] = tensor.to(torch.bfloat16)
            expected[key] = ckpt[key]
    return ckpt, scales, expected


def save(tensors: dict[str, torch.Tensor], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".pt", ".ckpt"):
        torch.save(tensors, path)
    else:
        save_file(tensors, str(path))
    return path
