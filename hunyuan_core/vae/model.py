"""The stage-1 VAE (``HunyuanVAE2D``, DC-AE style, model.md §2.1) under the official module names.

The official checkpoint and Comfy-Org's repackage use the same names as these modules, so their tensors load
without renaming. Resampling is done by moving 2x2 pixel blocks into channels (and back) rather than by strided
convolutions, and every resampling step, the encoder's output and the decoder's input carry a parameter-free
shortcut that averages or repeats channels; together they are what lets 64 channels carry 32x32 pixels.

Latents here are raw VAE space: the 0.75289 scaling factor belongs to the DiT side and is never applied here.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from .config import NORM_GROUPS, STAGE1, VAEConfig

NORM_EPS = 1e-6
LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0


def _free(t: torch.Tensor) -> bool:
    """True when ``t`` may be overwritten: autograd does not track it (inference, the only use here)."""
    return not t.requires_grad


def _silu(x: torch.Tensor) -> torch.Tensor:
    """SiLU, in place on fresh normalisation outputs to spare one full-resolution activation at 2K."""
    return F.silu(x, inplace=_free(x))


def _add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a + b``, into ``a`` when that changes nothing but memory.

    Under mixed-precision autocast the convolutions return fp16 while the residual stream is fp32; the sum must
    then be a new fp32 tensor, exactly as the official out-of-place additions give.
    """
    if _free(a) and a.dtype == b.dtype and a.shape == b.shape:
        return a.add_(b)
    return a + b


def space_to_channels(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, 2H, 2W] -> [B, 4C, H, W]``, new channel ``(2*dy + dx) * C + c``.

    The 2x2 offset is the outer index, which is what the checkpoint was trained with (torch's pixel_unshuffle
    puts it innermost and would scramble the channel groups that the shortcuts average).
    """
    h, w = x.shape[2:]
    blocks = x.unflatten(3, (w // 2, 2)).unflatten(2, (h // 2, 2))  # b, c, h', dy, w', dx
    return blocks.permute(0, 3, 5, 1, 2, 4).flatten(1, 3)


def channels_to_space(x: torch.Tensor) -> torch.Tensor:
    """Inverse of ``space_to_channels``: ``[B, 4C, H, W] -> [B, C, 2H, 2W]`` in a single copy."""
    b, c4, h, w = x.shape
    offsets = x.unflatten(1, (2, 2, c4 // 4))  # b, dy, dx, c, h, w
    return offsets.permute(0, 3, 4, 1, 5, 2).reshape(b, c4 // 4, 2 * h, 2 * w)


def _add_repeated(h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``h + x.repeat_interleave(r, dim=1)`` with ``r = h.C / x.C``, broadcast so the repeat is never materialised."""
    grouped = h.unflatten(1, (x.shape[1], h.shape[1] // x.shape[1]))
    if _free(h) and h.dtype == x.dtype:
        return grouped.add_(x.unsqueeze(2)).flatten(1, 2)
    return (grouped + x.unsqueeze(2)).flatten(1, 2)


def _group_mean(x: torch.Tensor, group: int) -> torch.Tensor:
    """Average runs of ``group`` consecutive channels: the parameter-free shortcut onto fewer channels."""
    return x if group == 1 else x.unflatten(1, (x.shape[1] // group, group)).mean(2)


def _norm(channels: int, dtype, device, operations: SimpleNamespace) -> nn.Module:
    return operations.GroupNorm(NORM_GROUPS, channels, eps=NORM_EPS, affine=True, dtype=dtype, device=device)


def _conv(c_in: int, c_out: int, kernel: int, dtype, device, operations: SimpleNamespace) -> nn.Module:
    return operations.Conv2d(c_in, c_out, kernel_size=kernel, padding=kernel // 2, dtype=dtype, device=device)


class ResnetBlock(nn.Module):
    """GN-SiLU-conv3x3 twice, plus the input (through a 1x1 ``nin_shortcut`` when the width changes)."""

    def __init__(self, c_in: int, c_out: int, dtype=None, device=None, operations: SimpleNamespace = nn) -> None:
        super().__init__()
        self.norm1 = _norm(c_in, dtype, device, operations)
        self.conv1 = _conv(c_in, c_out, 3, dtype, device, operations)
        self.norm2 = _norm(c_out, dtype, device, operations)
        self.conv2 = _conv(c_out, c_out, 3, dtype, device, operations)
        self.nin_shortcut = _conv(c_in, c_out, 1, dtype, device, operations) if c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One name for every intermediate, so each dies as soon as the next exists: at most the input and two
        # full-size tensors are alive (holding the first conv's output through the second norm would add one).
        h = _silu(self.norm1(x))
        h = self.conv1(h)
        h = _silu(self.norm2(h))
        h = self.conv2(h)
        return _add(h, x if self.nin_shortcut is None else self.nin_shortcut(x))


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
        return _add(self.proj_out(h), x)


class Downsample(nn.Module):
    """Halve H and W: conv3x3 to ``out/4`` channels then 2x2 blocks into channels; shortcut averages the input's."""

    def __init__(self, c_in: int, c_out: int, dtype=None, device=None, operations: SimpleNamespace = nn) -> None:
        super().__init__()
        self.conv = _conv(c_in, c_out // 4, 3, dtype, device, operations)
        self.group = 4 * c_in // c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = space_to_channels(self.conv(x))
        return _add(h, _group_mean(space_to_channels(x), self.group))


class Upsample(nn.Module):
    """Double H and W: conv3x3 to ``4*out`` channels then channels into 2x2 blocks; shortcut repeats the input's.

    The repeat is added before the shuffle (one shuffle instead of two; the same numbers, as a shuffle only
    moves values).
    """

    def __init__(self, c_in: int, c_out: int, dtype=None, device=None, operations: SimpleNamespace = nn) -> None:
        super().__init__()
        self.conv = _conv(c_in, 4 * c_out, 3, dtype, device, operations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channels_to_space(_add_repeated(self.conv(x), x))


class MidBlock(nn.Module):
    """ResnetBlock, AttnBlock, ResnetBlock at the deepest width (the only global mixing in the VAE)."""

    def __init__(self, channels: int, dtype=None, device=None, operations: SimpleNamespace = nn) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dtype, device, operations)
        self.attn_1 = AttnBlock(channels, dtype, device, operations)
        self.block_2 = ResnetBlock(channels, channels, dtype, device, operations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Level(nn.Module):
    """One resolution: ``block`` (ResnetBlocks), then an optional ``downsample`` (encoder) or ``upsample``.

    A container only: the encoder and decoder call its modules one by one. Calling the level as a module would
    keep its input alive (in the call's arguments) until its last block is done, one more full-size activation
    at the peak of a 2K decode.
    """

    def __init__(self, blocks: list[ResnetBlock], resample: nn.Module | None, resample_name: str) -> None:
        super().__init__()
        self.block = nn.ModuleList(blocks)
        if resample is not None:
            self.add_module(resample_name, resample)

    def steps(self) -> list[nn.Module]:
        """The modules to apply in order (looked up each time, so replaced submodules are honoured)."""
        return [*self.block, *(m for name, m in self.named_children() if name != "block")]


class Encoder(nn.Module):
    """Image ``[B, 3, H, W]`` in [-1, 1] -> moments ``[B, 2*latent, H/32, W/32]`` (mean, then log-variance)."""

    def __init__(self, cfg: VAEConfig, dtype=None, device=None, operations: SimpleNamespace = nn) -> None:
        super().__init__()
        chans = cfg.block_out_channels
        self.conv_in = _conv(cfg.in_channels, chans[0], 3, dtype, device, operations)
        self.down = nn.ModuleList()
        width = chans[0]
        for i, target in enumerate(chans):
            blocks = []
            for _ in range(cfg.layers_per_block):
                blocks.append(ResnetBlock(width, target, dtype, device, operations))
                width = target
            downsample = None
            if i < cfg.num_resamples:
                downsample = Downsample(width, chans[i + 1], dtype, device, operations)
                width = chans[i + 1]
            self.down.append(Level(blocks, downsample, "downsample"))
        self.mid = MidBlock(width, dtype, device, operations)
        self.norm_out = _norm(width, dtype, device, operations)
        self.conv_out = _conv(width, 2 * cfg.latent_channels, 3, dtype, device, operations)
        self.out_group = cfg.encoder_out_group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            for step in level.steps():
                h = step(h)
        h = self.mid(h)
        shortcut = _group_mean(h, self.out_group)
        return _add(self.conv_out(_silu(self.norm_out(h))), shortcut)


class Decoder(nn.Module):
    """Latent ``[B, latent, h, w]`` -> image ``[B, 3, 32h, 32w]`` in about [-1, 1] (not clamped)."""

    def __init__(self, cfg: VAEConfig, dtype=None, device=None, operations: SimpleNamespace = nn) -> None:
        super().__init__()
        chans = cfg.decoder_channels
        width = chans[0]
        self.conv_in = _conv(cfg.latent_channels, width, 3, dtype, device, operations)
        self.mid = MidBlock(width, dtype, device, operations)
        self.up = nn.ModuleList()
        for i, target in enumerate(chans):
            blocks = []
            for _ in range(cfg.layers_per_block + 1):
                blocks.append(ResnetBlock(width, target, dtype, device, operations))
                width = target
            upsample = None
            if i < cfg.num_resamples:
                upsample = Upsample(width, chans[i + 1], dtype, device, operations)
                width = chans[i + 1]
            self.up.append(Level(blocks, upsample, "upsample"))
        self.norm_out = _norm(width, dtype, device, operations)
        self.conv_out = _conv(width, cfg.out_channels, 3, dtype, device, operations)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(_add_repeated(self.conv_in(z), z))
        for level in self.up:
            for step in level.steps():
                h = step(h)
        h = _silu(self.norm_out(h))
        return self.conv_out(h)


@dataclass
class DiagonalGaussian:
    """The encoder's posterior; ``mean`` is what ComfyUI and the official pipeline use as the latent."""

    mean: torch.Tensor
    logvar: torch.Tensor

    @classmethod
    def from_moments(cls, moments: torch.Tensor) -> DiagonalGaussian:
        """Split ``[B, 2C, h, w]`` into mean and log-variance, clamping the latter to [-30, 20] as the official."""
        mean, logvar = moments.chunk(2, dim=1)
        return cls(mean, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX))

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def mode(self) -> torch.Tensor:
        return self.mean

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(self.mean.shape, generator=generator, dtype=self.mean.dtype, device=self.mean.device)
        return self.mean + self.std * noise


def size_problem(height: int, width: int, factor: int) -> str | None:
    """Why an image of ``width x height`` cannot be encoded (sides must be multiples of ``factor``), or None."""
    if height % factor == 0 and width % factor == 0 and height > 0 and width > 0:
        return None

    def down(n: int) -> int:
        return n - n % factor

    def up(n: int) -> int:
        return down(n) if n % factor == 0 else down(n) + factor

    options = []
    if down(width) > 0 and down(height) > 0:
        options.append(f"crop to {down(width)}x{down(height)}")
    options.append(f"pad or resize to {up(max(width, 1))}x{up(max(height, 1))}")
    return (
        f"image size {width}x{height} (width x height) cannot be encoded: both sides must be multiples of "
        f"{factor}, as the VAE compresses {factor}x; nearest valid sizes: {' or '.join(options)}"
    )


class HunyuanImageVAE(nn.Module):
    """Encoder plus decoder of the stage-1 VAE, working on raw tensors (see ``images.py`` for ComfyUI IMAGEs).

    ``encode`` takes ``[B, 3, H, W]`` in [-1, 1] and returns the posterior; ``decode`` takes raw latents
    ``[B, 64, H/32, W/32]`` (no 0.75289 scaling; the DiT side applies it) and returns ``[B, 3, H, W]``,
    nominally in [-1, 1] and unclamped.
    """

    def __init__(self, config: VAEConfig = STAGE1, dtype=None, device=None, operations: SimpleNamespace = nn) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config, dtype, device, operations)
        self.decoder = Decoder(config, dtype, device, operations)

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"encode expects [B, {self.config.in_channels}, H, W] images, got {tuple(x.shape)}")
        problem = size_problem(x.shape[2], x.shape[3], self.config.spatial_compression)
        if problem:
            raise ValueError(problem)
        return DiagonalGaussian.from_moments(self.encoder(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 4 or z.shape[1] != self.config.latent_channels:
            raise ValueError(
                f"decode expects [B, {self.config.latent_channels}, h, w] HunyuanImage-2.1 latents, got "
                f"{tuple(z.shape)}" + (" (a 4-channel SD/SDXL latent?)" if z.ndim == 4 and z.shape[1] == 4 else "")
            )
        return self.decoder(z)
