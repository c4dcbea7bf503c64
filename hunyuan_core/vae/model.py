"""The stage-1 VAE (``HunyuanVAE2D``: DC-AE style, 32x in space, 64 latent channels) under the official names.

The official checkpoint and Comfy-Org's repackage use the same names as these modules, so their tensors load
without renaming. Resampling is done by moving 2x2 pixel blocks into channels (and back) rather than by strided
convolutions, and every resampling step, the encoder's output and the decoder's input carry a parameter-free
shortcut that averages or repeats channels; together they are what lets 64 channels carry 32x32 pixels.

Latents here are raw VAE space: the 0.75289 scaling factor belongs to the DiT side and is never applied here.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from ..vae_common import (
    Autoencoder,
    DecoderWalk,
    DiagonalGaussian,
    EncoderWalk,
    MidBlock,
    ResidualBlock,
    add,
    add_repeated,
    build_levels,
    channels_to_space,
    group_mean,
    space_to_channels,
)
from .config import NORM_GROUPS, STAGE1_VAE, VAEConfig

NORM_EPS = 1e-6


def _norm(channels: int, dtype, device, operations: SimpleNamespace) -> nn.Module:
    return operations.GroupNorm(NORM_GROUPS, channels, eps=NORM_EPS, affine=True, dtype=dtype, device=device)


def _conv(c_in: int, c_out: int, kernel: int, dtype, device, operations: SimpleNamespace) -> nn.Module:
    return operations.Conv2d(c_in, c_out, kernel_size=kernel, padding=kernel // 2, dtype=dtype, device=device)


class ResnetBlock(ResidualBlock):
    """GN-SiLU-conv3x3 twice, plus the input (through a 1x1 ``nin_shortcut`` when the width changes)."""

    def __init__(self, c_in: int, c_out: int, dtype=None, device=None, operations: SimpleNamespace = nn) -> None:
        super().__init__()
        self.norm1 = _norm(c_in, dtype, device, operations)
        self.conv1 = _conv(c_in, c_out, 3, dtype, device, operations)
        self.norm2 = _norm(c_out, dtype, device, operations)
        self.conv2 = _conv(c_out, c_out, 3, dtype, device, operations)
        self.nin_shortcut = _conv(c_in, c_out, 1, dtype, device, operations) if c_in != c_out else None


class AttnBlock(nn.Module):
    """Single-head self-attention over all H*W positions, the channels being the head dimension."""

    def __init__(self, channels: int, dtype=None, device=None, operations: SimpleNamespace = nn) -> None:
        super().__init__()
        self.norm = _norm(channels, dtype, device, operations)
        self.q = _conv(channels, channels, 1, dtype, device, operations)
        self.k = _conv(channels, channels, 1, dtype, device, operations)
        self.v = _conv(channels, channels, 1, dtype, device, operations)
        self.proj_out = _conv(channels, channels, 1, dtype, device, operations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, height, width = x.shape
        h = self.norm(x)
        q, k, v = (proj(h).flatten(2).transpose(1, 2).unsqueeze(1) for proj in (self.q, self.k, self.v))
        h = F.scaled_dot_product_attention(q, k, v)  # [B, 1, H*W, C]
        h = h.squeeze(1).transpose(1, 2).reshape(b, c, height, width)
        return add(self.proj_out(h), x)


class Downsample(nn.Module):
    """Halve H and W: conv3x3 to ``out/4`` channels then 2x2 blocks into channels; shortcut averages the input's."""

    def __init__(self, c_in: int, c_out: int, dtype=None, device=None, operations: SimpleNamespace = nn) -> None:
        super().__init__()
        self.conv = _conv(c_in, c_out // 4, 3, dtype, device, operations)
        self.group = 4 * c_in // c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = space_to_channels(self.conv(x))
        return add(h, group_mean(space_to_channels(x), self.group))


class Upsample(nn.Module):
    """Double H and W: conv3x3 to ``4*out`` channels then channels into 2x2 blocks; shortcut repeats the input's.

    The repeat is added before the shuffle (one shuffle instead of two; the same numbers, as a shuffle only
    moves values).
    """

    def __init__(self, c_in: int, c_out: int, dtype=None, device=None, operations: SimpleNamespace = nn) -> None:
        super().__init__()
        self.conv = _conv(c_in, 4 * c_out, 3, dtype, device, operations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channels_to_space(add_repeated(self.conv(x), x))


class Encoder(EncoderWalk):
    """Image ``[B, 3, H, W]`` in [-1, 1] -> moments ``[B, 2*latent, H/32, W/32]`` (mean, then log-variance)."""

    def __init__(self, cfg: VAEConfig, dtype=None, device=None, operations: SimpleNamespace = nn) -> None:
        super().__init__()
        chans = cfg.block_out_channels
        self.conv_in = _conv(cfg.in_channels, chans[0], 3, dtype, device, operations)
        self.down, width = build_levels(
            chans[0], chans, cfg.layers_per_block,
            lambda c_in, c_out: ResnetBlock(c_in, c_out, dtype, device, operations),
            cfg.downsample_pairs, lambda c_in, c_out: Downsample(c_in, c_out, dtype, device, operations), "downsample",
        )  # fmt: skip
        self.mid = MidBlock(width, ResnetBlock, AttnBlock, dtype, device, operations)
        self.norm_out = _norm(width, dtype, device, operations)
        self.conv_out = _conv(width, 2 * cfg.latent_channels, 3, dtype, device, operations)
        self.out_group = cfg.encoder_out_group


class Decoder(DecoderWalk):
    """Latent ``[B, latent, h, w]`` -> image ``[B, 3, 32h, 32w]`` in about [-1, 1] (not clamped)."""

    def __init__(self, cfg: VAEConfig, dtype=None, device=None, operations: SimpleNamespace = nn) -> None:
        super().__init__()
        chans = cfg.decoder_channels
        width = chans[0]
        self.conv_in = _conv(cfg.latent_channels, width, 3, dtype, device, operations)
        self.mid = MidBlock(width, ResnetBlock, AttnBlock, dtype, device, operations)
        self.up, width = build_levels(
            width, chans, cfg.layers_per_block + 1,
            lambda c_in, c_out: ResnetBlock(c_in, c_out, dtype, device, operations),
            cfg.upsample_pairs, lambda c_in, c_out: Upsample(c_in, c_out, dtype, device, operations), "upsample",
        )  # fmt: skip
        self.norm_out = _norm(width, dtype, device, operations)
        self.conv_out = _conv(width, cfg.out_channels, 3, dtype, device, operations)


class HunyuanImageVAE(Autoencoder):
    """Encoder plus decoder of the stage-1 VAE, working on raw tensors (see ``images.py`` for ComfyUI IMAGEs).

    ``encode`` takes ``[B, 3, H, W]`` in [-1, 1] and returns the posterior; ``decode`` takes raw latents
    ``[B, 64, H/32, W/32]`` (no 0.75289 scaling; the DiT side applies it) and returns ``[B, 3, H, W]``,
    nominally in [-1, 1] and unclamped.
    """

    def __init__(
        self, config: VAEConfig = STAGE1_VAE, dtype=None, device=None, operations: SimpleNamespace = nn
    ) -> None:
        super().__init__(config, Encoder(config, dtype, device, operations), Decoder(config, dtype, device, operations))

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"encode expects [B, {self.config.in_channels}, H, W] images, got {tuple(x.shape)}")
        return self.posterior(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 4 or z.shape[1] != self.config.latent_channels:
            raise ValueError(
                f"decode expects [B, {self.config.latent_channels}, h, w] HunyuanImage-2.1 latents, got "
                f"{tuple(z.shape)}" + (" (a 4-channel SD/SDXL latent?)" if z.ndim == 4 and z.shape[1] == 4 else "")
            )
        return self.decoder(z)
