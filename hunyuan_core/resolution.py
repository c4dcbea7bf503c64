"""Image sizes and latent geometry of HunyuanImage-2.1's stage-1 model.

The 32x VAE maps an image of ``H x W`` pixels to a ``[64, H/32, W/32]`` latent, and the DiT was trained on
about 4K latent tokens ("2K" images). The official README lists five sizes; smaller images are accepted by
the code but give visibly worse results (broken faces, artifacts), so callers warn about them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .variants import STAGE1_LATENT

LATENT_CHANNELS = STAGE1_LATENT.channels
SPATIAL_COMPRESSION = STAGE1_LATENT.compression
MAX_SIDE = 16384


@dataclass(frozen=True)
class SizePreset:
    """One of the official 2K sizes, named as in a UI list."""

    width: int
    height: int
    aspect: str

    @property
    def label(self) -> str:
        return f"{self.width}x{self.height} ({self.aspect})"


OFFICIAL_SIZES: tuple[SizePreset, ...] = (
    SizePreset(2048, 2048, "1:1"),
    SizePreset(2560, 1536, "16:9"),
    SizePreset(1536, 2560, "9:16"),
    SizePreset(2304, 1792, "4:3"),
    SizePreset(1792, 2304, "3:4"),
)
CUSTOM_SIZE = "custom"

# The smallest official size (2560x1536) has 3840 latent tokens; below that the model leaves its trained range.
MIN_TRAINED_PIXELS = min(p.width * p.height for p in OFFICIAL_SIZES)


def preset_by_label(label: str) -> SizePreset:
    """Find an official size by its UI label, with an error that lists the valid ones."""
    for preset in OFFICIAL_SIZES:
        if preset.label == label:
            return preset
    valid = ", ".join(p.label for p in OFFICIAL_SIZES)
    raise ValueError(f"unknown size preset {label!r}; choose one of: {valid}, or {CUSTOM_SIZE!r}")


def size_problem(width: int, height: int) -> str | None:
    """Describe why ``width x height`` cannot be generated, or return None when it can."""
    for name, value in (("width", width), ("height", height)):
        if value < SPATIAL_COMPRESSION:
            return f"{name} {value} is too small: the minimum is {SPATIAL_COMPRESSION} pixels"
        if value > MAX_SIDE:
            return f"{name} {value} is too large: the maximum is {MAX_SIDE} pixels"
        if value % SPATIAL_COMPRESSION:
            lower = value - value % SPATIAL_COMPRESSION
            return (
                f"{name} {value} is not a multiple of {SPATIAL_COMPRESSION} (HunyuanImage-2.1's VAE compresses "
                f"by {SPATIAL_COMPRESSION}); use {lower} or {lower + SPATIAL_COMPRESSION}"
            )
    return None


def check_size(width: int, height: int) -> None:
    """Raise ``ValueError`` naming the problem when the size cannot be generated."""
    problem = size_problem(width, height)
    if problem:
        raise ValueError(problem)


def below_trained_range(width: int, height: int) -> bool:
    """True when the image has fewer pixels than the smallest official 2K size."""
    return width * height < MIN_TRAINED_PIXELS


def latent_shape(width: int, height: int, batch_size: int = 1) -> tuple[int, int, int, int]:
    """Shape ``[B, 64, H/32, W/32]`` of the stage-1 latent for an image of ``width x height``."""
    check_size(width, height)
    if batch_size < 1:
        raise ValueError(f"batch size {batch_size} is invalid: it must be at least 1")
    return (batch_size, LATENT_CHANNELS, height // SPATIAL_COMPRESSION, width // SPATIAL_COMPRESSION)


def latent_tokens(width: int, height: int) -> int:
    """Number of image tokens the DiT sees (patch size 1 on the 32x latent)."""
    return math.prod(latent_shape(width, height)[2:])
