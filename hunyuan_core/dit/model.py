"""``HunyuanImageDiT``: the HunyuanImage-2.1 MM-DiT forward pass, with padded text kept out of attention."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import torch
from torch import nn

from .attention import get_backend
from .blocks import ByT5Mapper, DoubleStreamBlock, FinalLayer, SingleStreamBlock, TokenRefiner
from .config import DiTConfig
from .layers import TimestepEmbedder, rope_rotation
from .step_cache import ForwardCache


class PatchEmbed(nn.Module):
    """``img_in``: a kernel-1 convolution (2-D, or 3-D for the refiner) from latent channels to hidden."""

    def __init__(self, cfg: DiTConfig, dtype=None, device=None, operations: SimpleNamespace = nn) -> None:
        super().__init__()
        conv = operations.Conv3d if cfg.patch_dims == 3 else operations.Conv2d
        self.proj = conv(cfg.in_channels, cfg.hidden_size, kernel_size=1, stride=1, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


@dataclass
class TextTokens:
    """Joint text stream after the token refiner and the ByT5 mapper: valid tokens first in every sample."""

    tokens: torch.Tensor  # [B, L, H]
    valid: list[int]  # valid tokens per sample (a prefix of L)


def valid_first(states: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """Move each sample's valid tokens to the front (stable), dropping columns that are padding everywhere."""
    mask = mask.bool()
    order = torch.sort((~mask).to(torch.uint8), dim=1, stable=True).indices
    states = torch.gather(states, 1, order.unsqueeze(-1).expand_as(states))
    valid = mask.sum(dim=1).tolist()
    return states[:, : max(max(valid), 1)], valid


def trim_padding(states: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop trailing columns that are padding in every sample (they can never change a valid token)."""
    cols = mask.bool().any(dim=0).nonzero()
    keep = int(cols.max()) + 1 if len(cols) else 1
    return states[:, :keep], mask[:, :keep]


# With fp16 layers (GPUs without bf16: Turing, Pascal), the residual stream between blocks grows past fp16's 65504 and
# turns into inf / NaN (a black image). It is kept in float32 there, each layer still running in fp16 on its
# normed input; in bf16 and float32 nothing changes (the official arithmetic).
FP16_RESIDUAL = torch.float32


class HunyuanImageDiT(nn.Module):
    """The HunyuanImage-2.1 MM-DiT (base, distilled or refiner, per ``cfg``).

    ``forward`` takes the latent ``x [B, C, H, W]`` (``[B, C, T, H, W]`` for the refiner), the timestep
    ``t = sigma * 1000``, the MLLM states and mask, optionally the ByT5 states and mask, the guidance (already
    multiplied by 1000) and the MeanFlow second timestep, and returns the predicted velocity ``noise - x0``.
    """

    def __init__(
        self,
        cfg: DiTConfig,
        dtype: torch.dtype | None = torch.bfloat16,
        device: torch.device | str | None = None,
        operations: SimpleNamespace = nn,
        attention_backend: str = "sdpa",
    ) -> None:
        super().__init__()
        self.config = cfg
        self.attention = get_backend(attention_backend)
        kw = {"dtype": dtype, "device": device, "operations": operations}
        h = cfg.hidden_size
        self.img_in = PatchEmbed(cfg, **kw)
        self.txt_in = TokenRefiner(cfg.text_dim, h, cfg.num_heads, cfg.refiner_depth, **kw)
        self.time_in = TimestepEmbedder(h, **kw)
        self.time_r_in = TimestepEmbedder(h, **kw) if cfg.meanflow else None
        self.guidance_in = TimestepEmbedder(h, **kw) if cfg.guidance_embed else None
        self.byt5_in = ByT5Mapper(cfg.byt5_dim, cfg.byt5_hidden, h, **kw) if cfg.has_byt5 else None
        self.double_blocks = nn.ModuleList(
            [DoubleStreamBlock(h, cfg.num_heads, cfg.mlp_hidden, **kw) for _ in range(cfg.depth_double)]
        )
        self.single_blocks = nn.ModuleList(
            [SingleStreamBlock(h, cfg.num_heads, cfg.mlp_hidden, **kw) for _ in range(cfg.depth_single)]
        )
        self.final_layer = FinalLayer(h, cfg.out_channels, **kw)

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype activations run in: the embedding layer's (a quantized layer says its own; bare fp8 storage
        computes in bf16)."""
        layer = self.time_in.mlp[0]
        dtype = getattr(layer, "compute_dtype", None) or layer.weight.dtype
        return torch.bfloat16 if dtype.itemsize == 1 else dtype

    def conditioning(
        self, t: torch.Tensor, guidance: torch.Tensor | None, timestep_r: torch.Tensor | None, dtype: torch.dtype
    ) -> torch.Tensor:
        vec = self.time_in(t, dtype)
        if timestep_r is not None:
            if self.time_r_in is None:
                raise ValueError("this model has no MeanFlow embedder (time_r_in); do not pass timestep_r")
            vec = (vec + self.time_r_in(timestep_r, dtype)) / 2
        if self.guidance_in is not None:
            if guidance is None:
                raise ValueError("this guidance-distilled model needs a guidance value (scale * 1000)")
            vec = vec + self.guidance_in(guidance, dtype)
        return vec

    def text_tokens(
        self,
        t: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        byt5: torch.Tensor | None,
        byt5_mask: torch.Tensor | None,
        dtype: torch.dtype,
    ) -> TextTokens:
        text, text_mask = trim_padding(text.to(dtype), text_mask)
        txt = self.txt_in(text, t, text_mask, self.attention)
        if self.byt5_in is not None and byt5 is not None and byt5_mask is not None and bool(byt5_mask.any()):
            byt5, byt5_mask = trim_padding(byt5.to(dtype), byt5_mask)
            txt = torch.cat([self.byt5_in(byt5), txt], dim=1)
            text_mask = torch.cat([byt5_mask.bool(), text_mask.bool()], dim=1)
        tokens, valid = valid_first(txt, text_mask)
        return TextTokens(tokens, valid)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        byt5: torch.Tensor | None = None,
        byt5_mask: torch.Tensor | None = None,
        guidance: torch.Tensor | None = None,
        timestep_r: torch.Tensor | None = None,
        cache: ForwardCache | None = None,
    ) -> torch.Tensor:
        """``cache`` (opt-in step caching, ``step_cache.py``) may answer the forward from the last residual of the
        blocks instead of running them; None runs the model as officially."""
        dtype = self.compute_dtype
        batch = x.shape[0]
        grid = tuple(x.shape[2:])
        t = t.reshape(-1).expand(batch) if t.numel() == 1 else t
        vec = self.conditioning(t, _per_sample(guidance, batch), _per_sample(timestep_r, batch), dtype)
        residual = FP16_RESIDUAL if dtype == torch.float16 else dtype
        img = self.img_in(x.to(dtype)).to(residual)
        img_len = img.shape[1]
        if cache is not None:
            reused = cache.reuse(self.cache_probe(img, vec))
            if reused is not None:
                return self.unpatchify(self.final_layer(img + reused.to(img.dtype), vec), batch, grid, x.dtype)
            img_in = img
        text_in = self.text_tokens(t, text, text_mask, byt5, byt5_mask, dtype)
        txt = text_in.tokens.to(residual)
        rope = rope_rotation(grid, self.config.rope_axes, self.config.rope_theta, x.device, unrotated=txt.shape[1])
        valid = [img_len + n for n in text_in.valid]
        for block in self.double_blocks:
            img, txt = block(img, txt, vec, rope[:img_len], valid, self.attention)
        joint = torch.cat([img, txt], dim=1)
        for block in self.single_blocks:
            joint = block(joint, vec, rope, valid, self.attention)
        if cache is not None:
            cache.remember(joint[:, :img_len] - img_in)
        return self.unpatchify(self.final_layer(joint[:, :img_len], vec), batch, grid, x.dtype)

    def cache_probe(self, img: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
        """What a step cache compares between forwards: the first block's modulated image input."""
        if self.double_blocks:
            return self.double_blocks[0].image_input(img, vec)
        return self.single_blocks[0].layer_input(img, vec)

    def unpatchify(self, tokens: torch.Tensor, batch: int, grid: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """The final layer's tokens ``[B, L, C]`` as the latent ``[B, C, *grid]``."""
        return tokens.transpose(1, 2).reshape(batch, self.config.out_channels, *grid).to(dtype)


def _per_sample(value: torch.Tensor | float | None, batch: int) -> torch.Tensor | None:
    if value is None:
        return None
    value = torch.as_tensor(value)
    return value.reshape(-1).expand(batch) if value.numel() == 1 else value
