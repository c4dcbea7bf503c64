"""The stage-1 VAE as ComfyUI sees it: IMAGE tensors in and out, a working precision, batch slices, opt-in tiles.

Latents are raw VAE space, ``[B, 64, H/32, W/32]``, the same as ComfyUI's own HunyuanImage latents, so they
pass freely between this pack and ComfyUI's nodes. The 0.75289 scaling factor is applied by the DiT side
(multiply on the way in, divide on the way out), never here. IMAGEs are ``[B, H, W, 3]`` float32 in 0..1.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .model import HunyuanImageVAE, size_problem

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
HALF_DTYPES = (torch.float16, torch.bfloat16)


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


def resolve_precision(precision: str | torch.dtype | None) -> torch.dtype | None:
    """``"fp32" | "bf16" | "fp16"`` (or a dtype, or None for the weights' own) to a dtype."""
    if precision is None or isinstance(precision, torch.dtype):
        return precision
    try:
        return PRECISIONS[precision]
    except KeyError:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}") from None


def _weights(vae: HunyuanImageVAE) -> torch.Tensor:
    return next(vae.parameters())


@contextlib.contextmanager
def working_precision(vae: HunyuanImageVAE, precision: str | torch.dtype | None) -> Iterator[torch.dtype]:
    """Run the VAE at ``precision``; yields the dtype its inputs must have.

    Same dtype as the weights (or None): plain. A half precision over wider weights: autocast, which is how the
    official pipeline decodes (fp32 weights, fp16 autocast: convolutions in fp16, GroupNorm and the residual
    stream in fp32). fp32 over half weights cannot be honoured without a second copy of the weights, so it is
    refused with the fix.
    """
    wanted = resolve_precision(precision)
    weights = _weights(vae)
    if wanted is None or wanted == weights.dtype:
        yield weights.dtype
        return
    if wanted in HALF_DTYPES:
        with torch.autocast(weights.device.type, dtype=wanted):
            yield weights.dtype
        return
    raise ValueError(
        f"cannot run the VAE in {wanted} with {weights.dtype} weights; load it with dtype {wanted} instead"
    )


def _slices(batch: torch.Tensor, batch_size: int | None) -> Iterator[torch.Tensor]:
    """The batch in slices of ``batch_size`` (None: all at once). Slicing never changes a result."""
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    yield from batch.split(batch_size or max(batch.shape[0], 1))


def to_image(decoded: torch.Tensor) -> torch.Tensor:
    """Decoder output ``[B, 3, H, W]`` around [-1, 1] -> IMAGE ``[B, H, W, 3]`` float32 in 0..1."""
    return decoded.float().div(2).add_(0.5).clamp_(0, 1).movedim(1, -1)


def from_image(images: torch.Tensor, factor: int) -> torch.Tensor:
    """IMAGE ``[B, H, W, C>=3]`` in 0..1 -> ``[B, 3, H, W]`` in [-1, 1]; extra channels (alpha) are dropped."""
    if images.ndim != 4 or images.shape[-1] < 3:
        raise ValueError(f"expected an IMAGE [B, H, W, 3], got shape {tuple(images.shape)}")
    problem = size_problem(images.shape[1], images.shape[2], factor)
    if problem:
        raise ValueError(problem)
    return images[..., :3].movedim(-1, 1) * 2 - 1


def decode(
    vae: HunyuanImageVAE,
    latents: torch.Tensor,
    precision: str | torch.dtype | None = None,
    batch_size: int | None = None,
    tiling: Tiling | None = None,
    output_device: torch.device | str | None = None,
) -> torch.Tensor:
    """Raw latents ``[B, 64, h, w]`` -> IMAGE ``[B, 32h, 32w, 3]`` (float32, 0..1) on ``output_device``.

    ``batch_size`` decodes that many images at a time (same result, less memory); ``tiling`` (off by default)
    decodes overlapping spatial tiles, an approximation (see ``Tiling``). ``output_device`` defaults to the
    latents' device; each slice moves there as soon as it is done.
    """
    weights = _weights(vae)
    out_device = torch.device(output_device) if output_device is not None else latents.device
    if tiling is not None:
        log.info("tiled VAE decode (%s): approximate, the official pipeline decodes in one piece", tiling)
    images = []
    with torch.no_grad(), working_precision(vae, precision) as input_dtype:
        for part in _slices(latents, batch_size):
            z = part.to(weights.device, input_dtype)
            decoded = vae.decode(z) if tiling is None else tiled_decode(vae, z, tiling)
            images.append(to_image(decoded).to(out_device))
    return torch.cat(images)


def encode(
    vae: HunyuanImageVAE,
    images: torch.Tensor,
    precision: str | torch.dtype | None = None,
    batch_size: int | None = None,
    output_device: torch.device | str | None = None,
) -> torch.Tensor:
    """IMAGE ``[B, H, W, 3]`` (0..1, sides multiples of 32) -> raw latent ``[B, 64, H/32, W/32]`` float32.

    The latent is the posterior mean, as in ComfyUI's VAEEncode; a side that is not a multiple of 32 raises
    ``ValueError`` naming the nearest valid sizes.
    """
    weights = _weights(vae)
    out_device = torch.device(output_device) if output_device is not None else images.device
    pixels = from_image(images, vae.config.spatial_compression)
    latents = []
    with torch.no_grad(), working_precision(vae, precision) as input_dtype:
        for part in _slices(pixels, batch_size):
            posterior = vae.encode(part.to(weights.device, input_dtype))
            latents.append(posterior.mean.float().to(out_device))
    return torch.cat(latents)


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
