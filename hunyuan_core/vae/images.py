"""The stage-1 VAE as ComfyUI sees it: IMAGE tensors in and out, a working precision, batch slices, opt-in tiles.

Latents are raw VAE space, ``[B, 64, H/32, W/32]``, the same as ComfyUI's own HunyuanImage latents, so they
pass freely between this pack and ComfyUI's nodes. The 0.75289 scaling factor is applied by the DiT side
(multiply on the way in, divide on the way out), never here. IMAGEs are ``[B, H, W, 3]`` float32 in 0..1.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import partial

import torch

from .. import vae_common as common
from ..vae_common import Device, Precision, encode_image
from .model import HunyuanImageVAE

__all__ = ["Tiling", "decode_image", "encode_image", "tile_starts", "tiled_decode"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tiling:
    """Opt-in spatial tiling of the decode, in latent cells (one cell is 32x32 pixels).

    Approximate by nature: each tile's GroupNorm statistics and mid-block attention see only that tile, which is
    why the official code refuses to tile. Tiles overlap by at least ``overlap`` cells and are cross-faded
    linearly over each shared band, which hides seams but does not make the result equal to a full decode;
    the error is measured in tests/test_vae_checkpoint.py and bench/bench_vae.py.
    """

    tile: int = 32
    overlap: int = 8

    def __post_init__(self) -> None:
        if self.tile < 1 or not 0 <= self.overlap < self.tile:
            raise ValueError(f"invalid tiling: tile {self.tile}, overlap {self.overlap} (need 0 <= overlap < tile)")


def decode_image(
    vae: HunyuanImageVAE,
    latents: torch.Tensor,
    precision: Precision = None,
    batch_size: int | None = None,
    tiling: Tiling | None = None,
    output_device: Device = None,
) -> torch.Tensor:
    """Raw latents ``[B, 64, h, w]`` -> IMAGE ``[B, 32h, 32w, 3]`` (float32, 0..1) on ``output_device``.

    ``batch_size`` decodes that many images at a time (same result, less memory); ``tiling`` (off by default)
    decodes overlapping spatial tiles, an approximation (see ``Tiling``). ``output_device`` defaults to the
    latents' device; each slice moves there as soon as it is done.
    """
    decode = None
    if tiling is not None:
        log.info("tiled VAE decode (%s): approximate, the official pipeline decodes in one piece", tiling)
        decode = partial(tiled_decode, vae, tiling=tiling)
    return common.decode_image(vae, latents, precision, batch_size, output_device, decode)


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Evenly spread tile origins covering ``size`` cells, neighbours sharing at least ``overlap`` cells."""
    if size <= tile:
        return [0]
    count = math.ceil((size - overlap) / (tile - overlap))
    return [round(i * (size - tile) / (count - 1)) for i in range(count)]


def _ramps(starts: list[int], tile: int, size: int, scale: int, device: torch.device) -> list[torch.Tensor]:
    """Per-tile blend weights along one axis, in pixels: linear cross-fades over each band shared with a neighbour.

    Inside a shared band the two weights add up to one; every pixel keeps a positive weight, so the final
    division by the weight sum is safe.
    """
    ramps = []
    for i, start in enumerate(starts):
        length = (min(start + tile, size) - start) * scale
        weight = torch.ones(length, device=device)
        if i > 0:
            band = (starts[i - 1] + tile - start) * scale
            weight[:band] *= (torch.arange(band, device=device) + 0.5) / band
        if i + 1 < len(starts):
            band = (start + tile - starts[i + 1]) * scale
            weight[length - band :] *= 1 - (torch.arange(band, device=device) + 0.5) / band
        ramps.append(weight)
    return ramps


def tiled_decode(vae: HunyuanImageVAE, z: torch.Tensor, tiling: Tiling) -> torch.Tensor:
    """Decode ``z`` tile by tile, cross-fading overlaps: ``[B, 3, 32h, 32w]`` float32, like ``vae.decode``.

    Peak memory is that of one tile's decode plus the float32 canvas. A latent no larger than one tile is
    decoded in one piece, exactly.
    """
    scale = vae.config.spatial_compression
    b, _, height, width = z.shape
    if height <= tiling.tile and width <= tiling.tile:
        return vae.decode(z)
    rows, cols = tile_starts(height, tiling.tile, tiling.overlap), tile_starts(width, tiling.tile, tiling.overlap)
    row_w = _ramps(rows, tiling.tile, height, scale, z.device)
    col_w = _ramps(cols, tiling.tile, width, scale, z.device)
    canvas = torch.zeros(b, vae.config.out_channels, height * scale, width * scale, device=z.device)
    total = torch.zeros(height * scale, width * scale, device=z.device)
    for top, wy in zip(rows, row_w, strict=True):
        for left, wx in zip(cols, col_w, strict=True):
            piece = vae.decode(z[:, :, top : top + tiling.tile, left : left + tiling.tile]).float()
            weight = wy[:, None] * wx[None, :]
            ys = slice(top * scale, top * scale + piece.shape[2])
            xs = slice(left * scale, left * scale + piece.shape[3])
            canvas[:, :, ys, xs] += piece * weight
            total[ys, xs] += weight
    return canvas.div_(total)
