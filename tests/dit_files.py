"""Tiny HunyuanImage-2.1 DiTs: checkpoints written in every published layout, twins of diffusers' transformer,
and a wrapper that records what a sampler feeds the model."""

from __future__ import annotations

import torch
from helpers import randomize
from torch import nn

from hunyuan_core.checkpoints.fp8 import quantize_fp8
from hunyuan_core.dit import DiTConfig, HunyuanImageDiT
from hunyuan_core.dit import keys as K
from hy21_host.tiny_models import random_tensors, shapes_of

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
    return random_tensors(shapes_of(model), seed, dtype, scale=0.1)


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


# --- twins of diffusers' transformer ----------------------------------------------------------------------------

# diffusers' ByT5 projection is 2048 wide at any model size (as in the real model), so its stage-1 twins are too.
PARITY = TINY.with_(byt5_hidden=2048)
PARITY_DISTILLED = TINY_DISTILLED.with_(byt5_hidden=2048)


def diffusers_pair(cfg: DiTConfig, seed: int | torch.Generator, out_gain: float = 1.0):
    """(diffusers ``HunyuanImageTransformer2DModel``, our DiT) shaped by ``cfg``, both fp32 in eval mode and holding
    the same weights: every diffusers parameter drawn as ``N(0, 1) * 0.1`` from ``seed`` (zero-initialised gates and
    final layer included), then ``out_gain`` times the output projection (larger velocities)."""
    from diffusers import HunyuanImageTransformer2DModel

    ref = HunyuanImageTransformer2DModel(
        in_channels=cfg.in_channels, out_channels=cfg.out_channels, num_attention_heads=cfg.num_heads,
        attention_head_dim=cfg.head_dim, num_layers=cfg.depth_double, num_single_layers=cfg.depth_single,
        num_refiner_layers=cfg.refiner_depth, mlp_ratio=cfg.mlp_ratio, patch_size=(1,) * cfg.patch_dims,
        guidance_embeds=cfg.guidance_embed, text_embed_dim=cfg.text_dim, text_embed_2_dim=cfg.byt5_dim,
        rope_theta=cfg.rope_theta, rope_axes_dim=cfg.rope_axes, use_meanflow=cfg.meanflow,
    ).float()  # fmt: skip
    randomize(ref, seed, scale=0.1)
    if out_gain != 1.0:
        with torch.no_grad():
            for p in ref.proj_out.parameters():
                p.mul_(out_gain)
    return ref, from_diffusers(ref, HunyuanImageDiT(cfg, dtype=torch.float32).eval())


# --- a DiT that records its calls -------------------------------------------------------------------------------


class RecordingDiT(nn.Module):
    """Wraps a DiT and records what the sampler feeds it, one dict a forward pass."""

    def __init__(self, inner: HunyuanImageDiT) -> None:
        super().__init__()
        self.inner, self.config, self.calls = inner, inner.config, []

    def forward(self, x, t, text, text_mask, byt5=None, byt5_mask=None, guidance=None, timestep_r=None):
        self.calls.append(
            {"x": x.clone(), "t": t.clone(), "guidance": guidance, "r": timestep_r, "text": text, "byt5": byt5}
        )
        return self.inner(x, t, text, text_mask, byt5, byt5_mask, guidance=guidance, timestep_r=timestep_r)


def recording_dit(cfg: DiTConfig, seed: int = 0) -> RecordingDiT:
    """A tiny fp32 DiT holding ``random_state(cfg, seed)``, wrapped to record its calls."""
    model = HunyuanImageDiT(cfg, dtype=torch.float32).eval()
    model.load_state_dict(random_state(cfg, seed))
    return RecordingDiT(model)
