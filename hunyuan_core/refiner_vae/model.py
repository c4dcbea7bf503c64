"""The refiner VAE (``AutoencoderKLConv3D`` in the official code), for single images.

It is a causal 3-D video VAE (16x in space, 4x in time, 32 latent channels, RMS norms, DC-AE style resampling
with parameter-free shortcuts). The refiner only ever encodes and decodes one frame, and with one frame every
temporal mechanism collapses: a causal convolution's three time taps all see that frame, the temporal
down/upsamplers fold the frame onto itself, and the attention's causal frame mask has nothing to hide. So the
modules below run on frames ``[B, C, H, W]`` and keep the 3-D parameter shapes and names of the checkpoints
(the official names, which Comfy-Org's file also uses). ``Encoder``/``Decoder``/``RefinerVAE`` take and return
5-D ``[B, C, 1, H, W]`` tensors and refuse more than one frame.

Latents are raw VAE space: the 1.03682 scaling factor belongs to the refiner's sampling code.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from .. import vae_common as common
from ..variants import STAGE1_LATENT
from .config import REFINER_VAE, RefinerVAEConfig

DIRECT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
NORMALIZE_EPS = 1e-12  # F.normalize's default, which the official RMS norm uses


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no argument: it answers for CUDA, the CPU has its own query
        return torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()
    except RuntimeError:  # a device type autocast does not know (meta): never autocast
        return False


def weights_usable(conv: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``conv``'s own weight and bias may be used in a direct functional call on ``x``.

    Calling the module is always right; bypassing it (to run the 3-D convolution as a 2-D one) is only right
    when the module's forward would use its parameters as they are. That is: a plain ``Conv3d``, or one of
    ComfyUI's cast-capable layers (recognised by their ``comfy_cast_weights`` attribute) whose cast would change
    nothing: no LoRA-style ``weight_function``/``bias_function`` patches, parameters on the input's device and
    of the input's dtype (or autocast on, which casts both sides the same way the module would be cast). Any
    other subclass may do anything in its forward, so it is always called.
    """
    if type(conv).forward is not nn.Conv3d.forward and not hasattr(conv, "comfy_cast_weights"):
        return False
    if getattr(conv, "weight_function", None) or getattr(conv, "bias_function", None):
        return False
    autocast = _autocast_enabled(x.device.type)
    for p in (conv.weight, conv.bias):
        if p is None:
            continue
        if type(p) not in (torch.Tensor, nn.Parameter) or p.device != x.device or p.dtype not in DIRECT_DTYPES:
            return False
        if p.dtype != x.dtype and not autocast:
            return False
    return True


def _first_halves(t: torch.Tensor, groups: int, dim: int) -> torch.Tensor:
    """Keep the first half of each of ``groups`` equal runs along ``dim`` (``groups=0``: keep everything)."""
    if not groups:
        return t
    runs = t.unflatten(dim, (groups, t.shape[dim] // groups))
    return runs.narrow(dim + 1, 0, runs.shape[dim + 1] // 2).flatten(dim, dim + 1)


class CausalConv3d(nn.Module):
    """3x3x3 convolution, replicate-padded in space and causally (two frames before, none after) in time.

    ``conv`` is the checkpoint's ``Conv3d`` (no padding of its own). On one frame the causal padding repeats that
    frame twice, so the three time taps see the same data and the result is a 2-D convolution with the kernel
    summed over time: a third of the work and no padded 3-D copy of the input. That path is taken whenever the
    weights can be used directly (``weights_usable``); otherwise the padded frame triple goes through the module,
    so ComfyUI's casting, offloading and patches apply as they would to any of its layers.
    """

    def __init__(self, c_in: int, c_out: int, dtype=None, device=None, operations: SimpleNamespace = nn) -> None:
        super().__init__()
        self.conv = operations.Conv3d(c_in, c_out, kernel_size=3, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor, halve_groups: int = 0) -> torch.Tensor:
        """``[B, C_in, H, W]`` -> ``[B, C_out, H, W]``.

        ``halve_groups=g`` keeps only the first half of each of ``g`` equal runs of output channels, which the
        temporal upsampler would otherwise compute and then drop (the direct path never computes them).
        """
        if not weights_usable(self.conv, x):
            return self.forward_padded(x, halve_groups)
        weight, bias = self.conv.weight, self.conv.bias
        weight = _first_halves(weight, halve_groups, 0).sum(dim=2)
        bias = None if bias is None else _first_halves(bias, halve_groups, 0)
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), weight, bias)

    def forward_padded(self, x: torch.Tensor, halve_groups: int = 0) -> torch.Tensor:
        """The literal causal 3-D convolution through the module: the reference for, and fallback of, ``forward``."""
        padded = F.pad(x.unsqueeze(2), (1, 1, 1, 1, 2, 0), mode="replicate")
        return _first_halves(self.conv(padded).squeeze(2), halve_groups, 1)


def pointwise(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A 1x1x1 ``Conv3d`` on a frame ``[B, C, H, W]``: directly when ``weights_usable``, else through the module."""
    if weights_usable(conv, x):
        return F.conv2d(x, conv.weight.squeeze(2), conv.bias)
    return conv(x.unsqueeze(2)).squeeze(2)


class RMSNorm(nn.Module):
    """``F.normalize(x, dim=channels) * sqrt(C) * gamma``: the official norm, without bias or groups.

    Half-precision inputs are normalised in fp32 and rounded back, as the official; the result then takes the
    promoted dtype of input and ``gamma`` (fp32 under autocast over fp32 weights, again as the official).
    """

    def __init__(self, channels: int, dtype=None, device=None) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels, 1, 1, 1, dtype=dtype, device=device))
        self.scale = math.sqrt(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The norm is reduced in fp32 without a full fp32 copy of x; the division runs in fp32 and rounds once
        # into x's dtype, which is what normalising an fp32 copy and casting back gives.
        wide = torch.float32 if x.dtype in common.HALF_DTYPES else None
        norm = torch.linalg.vector_norm(x, dim=1, keepdim=True, dtype=wide).clamp_min_(NORMALIZE_EPS)
        if x.requires_grad:  # out= is inference-only
            y = (x.float() / norm).to(x.dtype) if wide else x / norm
        else:
            y = torch.div(x, norm, out=torch.empty_like(x))
        y.mul_(self.scale)  # before gamma and in x's dtype, rounding where the official rounds
        gamma = self.gamma.to(x.device).view(-1, 1, 1)
        return y.mul_(gamma) if torch.result_type(y, gamma) == y.dtype else y * gamma


class ResnetBlock(common.ResidualBlock):
    """RMS-SiLU-causal conv twice, plus the input (through a 1x1x1 ``nin_shortcut`` when the width changes)."""

    def __init__(self, c_in: int, c_out: int, dtype=None, device=None, operations: SimpleNamespace = nn) -> None:
        super().__init__()
        self.norm1 = RMSNorm(c_in, dtype, device)
        self.conv1 = CausalConv3d(c_in, c_out, dtype, device, operations)
        self.norm2 = RMSNorm(c_out, dtype, device)
        self.conv2 = CausalConv3d(c_out, c_out, dtype, device, operations)
        self.nin_shortcut = None
        if c_in != c_out:
            self.nin_shortcut = operations.Conv3d(c_in, c_out, kernel_size=1, dtype=dtype, device=device)

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.nin_shortcut is None else pointwise(self.nin_shortcut, x)


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions, the channels being the head dimension.

    The official causal frame mask lets each frame see itself and earlier frames: with one frame, everything.
    """

    def __init__(self, channels: int, dtype=None, device=None, operations: SimpleNamespace = nn) -> None:
        super().__init__()
        self.norm = RMSNorm(channels, dtype, device)
        self.q = operations.Conv3d(channels, channels, kernel_size=1, dtype=dtype, device=device)
        self.k = operations.Conv3d(channels, channels, kernel_size=1, dtype=dtype, device=device)
        self.v = operations.Conv3d(channels, channels, kernel_size=1, dtype=dtype, device=device)
        self.proj_out = operations.Conv3d(channels, channels, kernel_size=1, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, height, width = x.shape
        h = self.norm(x)
        q, k, v = (pointwise(proj, h).flatten(2).transpose(1, 2).unsqueeze(1) for proj in (self.q, self.k, self.v))
        del h
        h = F.scaled_dot_product_attention(q, k, v)  # [B, 1, H*W, C]
        h = h.squeeze(1).transpose(1, 2).reshape(b, c, height, width)
        return common.add(pointwise(self.proj_out, h), x)


class Downsample(nn.Module):
    """Halve H and W: a causal conv, then 2x2 blocks into channels; the shortcut averages the input's blocks.

    The temporal kind's conv emits half the channels and, on the one frame it sees, its blocks fill both halves
    of the output (the official first-frame rule: that frame stands for the pair). Both shortcuts average
    ``4 * in / out`` consecutive channels of the input's blocks.
    """

    def __init__(
        self, c_in: int, c_out: int, temporal: bool, dtype=None, device=None, operations: SimpleNamespace = nn
    ) -> None:
        super().__init__()
        self.conv = CausalConv3d(c_in, c_out // (8 if temporal else 4), dtype, device, operations)
        self.temporal = temporal
        self.group = 4 * c_in // c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = common.space_to_channels(self.conv(x))
        shortcut = common.group_mean(common.space_to_channels(x), self.group)
        if self.temporal:
            return (shortcut.unflatten(1, (2, h.shape[1])) + h.unsqueeze(1)).flatten(1, 2)
        return common.add(h, shortcut)


class Upsample(nn.Module):
    """Double H and W: a causal conv, then channels into 2x2 blocks; the shortcut repeats the input's channels.

    The temporal kind's conv emits two frames' worth of channels, and only the first frame is kept (the other
    half is never computed on the direct path). Its shortcut, shuffling first and repeating after, equals the
    spatial kind's repeat-then-shuffle whenever the input width divides by 4 (which the config requires), so
    both add the repeat before one shuffle (a shuffle only moves values).
    """

    def __init__(
        self, c_in: int, c_out: int, temporal: bool, dtype=None, device=None, operations: SimpleNamespace = nn
    ) -> None:
        super().__init__()
        self.conv = CausalConv3d(c_in, c_out * (8 if temporal else 4), dtype, device, operations)
        self.temporal = temporal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Channels are (dy, dx, frame, c) for the temporal kind: keeping frame 0 of each 2x2 offset.
        h = self.conv(x, halve_groups=4 if self.temporal else 0)
        return common.channels_to_space(common.add_repeated(h, x))


def single_frame(x: torch.Tensor, what: str) -> torch.Tensor:
    """``[B, C, 1, H, W]`` -> ``[B, C, H, W]``; more frames are refused (the refiner only handles images)."""
    if x.ndim != 5:
        raise ValueError(f"{what} must be [B, C, 1, H, W], got shape {tuple(x.shape)}")
    if x.shape[2] != 1:
        raise ValueError(
            f"{what} has {x.shape[2]} frames: this refiner VAE handles single images only (T = 1); "
            "encode or decode frames one at a time"
        )
    return x.squeeze(2)


class Encoder(common.EncoderWalk):
    """Image ``[B, 3, 1, H, W]`` in [-1, 1] -> moments ``[B, 2*latent, 1, H/16, W/16]`` (mean, then log-variance)."""

    def __init__(self, cfg: RefinerVAEConfig, dtype=None, device=None, operations: SimpleNamespace = nn) -> None:
        super().__init__()
        chans = cfg.block_out_channels
        self.conv_in = CausalConv3d(cfg.in_channels, chans[0], dtype, device, operations)
        self.down, width = common.build_levels(
            chans[0], chans, cfg.layers_per_block,
            lambda c_in, c_out: ResnetBlock(c_in, c_out, dtype, device, operations),
            cfg.downsamplers, lambda *spec: Downsample(*spec, dtype, device, operations), "downsample",
        )  # fmt: skip
        self.mid = common.MidBlock(width, ResnetBlock, AttnBlock, dtype, device, operations)
        self.norm_out = RMSNorm(width, dtype, device)
        self.conv_out = CausalConv3d(width, 2 * cfg.latent_channels, dtype, device, operations)
        self.out_group = cfg.encoder_out_group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(single_frame(x, "the encoder input")).unsqueeze(2)


class Decoder(common.DecoderWalk):
    """Latent ``[B, latent, 1, h, w]`` -> image ``[B, 3, 1, 16h, 16w]`` in about [-1, 1] (not clamped)."""

    def __init__(self, cfg: RefinerVAEConfig, dtype=None, device=None, operations: SimpleNamespace = nn) -> None:
        super().__init__()
        chans = cfg.decoder_channels
        width = chans[0]
        self.conv_in = CausalConv3d(cfg.latent_channels, width, dtype, device, operations)
        self.mid = common.MidBlock(width, ResnetBlock, AttnBlock, dtype, device, operations)
        self.up, width = common.build_levels(
            width, chans, cfg.layers_per_block + 1,
            lambda c_in, c_out: ResnetBlock(c_in, c_out, dtype, device, operations),
            cfg.upsamplers, lambda *spec: Upsample(*spec, dtype, device, operations), "upsample",
        )  # fmt: skip
        self.norm_out = RMSNorm(width, dtype, device)
        self.conv_out = CausalConv3d(width, cfg.out_channels, dtype, device, operations)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return super().forward(single_frame(z, "the latent")).unsqueeze(2)


def _latent_hint(channels: int, expected: int) -> str:
    if channels == STAGE1_LATENT.channels:
        return (
            f" ({channels} channels: a stage-1 HunyuanImage-2.1 latent, which the stage-1 VAE decodes, or a packed "
            f"refiner latent of two {expected}-channel frames, whose second frame is the one to decode)"
        )
    if channels == 4:
        return " (a 4-channel SD/SDXL latent?)"
    return ""


class RefinerVAE(common.Autoencoder):
    """Encoder plus decoder of the refiner VAE on raw tensors (see ``images.py`` for ComfyUI IMAGEs).

    ``encode`` takes ``[B, 3, H, W]`` or ``[B, 3, 1, H, W]`` in [-1, 1] (sides multiples of 16) and returns the
    posterior, whose mean is ``[B, 32, 1, H/16, W/16]``; ``decode`` takes raw latents ``[B, 32, 1, h, w]`` (or
    ``[B, 32, h, w]``; no 1.03682 scaling) and returns ``[B, 3, 1, 16h, 16w]``, nominally in [-1, 1], unclamped.
    """

    def __init__(
        self, config: RefinerVAEConfig = REFINER_VAE, dtype=None, device=None, operations: SimpleNamespace = nn
    ) -> None:
        super().__init__(config, Encoder(config, dtype, device, operations), Decoder(config, dtype, device, operations))

    def encode(self, x: torch.Tensor) -> common.DiagonalGaussian:
        channels = self.config.in_channels
        if x.ndim not in (4, 5) or x.shape[1] != channels:
            raise ValueError(f"encode expects [B, {channels}, H, W] or [B, {channels}, 1, H, W], got {tuple(x.shape)}")
        return self.posterior(x.unsqueeze(2) if x.ndim == 4 else x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        channels = self.config.latent_channels
        if z.ndim not in (4, 5) or z.shape[1] != channels:
            raise ValueError(
                f"the refiner VAE decodes [B, {channels}, 1, h, w] (or [B, {channels}, h, w]) latents, got "
                f"{tuple(z.shape)}" + (_latent_hint(z.shape[1], channels) if z.ndim in (4, 5) else "")
            )
        return self.decoder(z.unsqueeze(2) if z.ndim == 4 else z)
