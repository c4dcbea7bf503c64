"""Initial noise, reproducible per seed and batch index.

Sample ``b`` of a batch is the ``b``-th consecutive draw of one sample's shape from a CPU ``torch.Generator``
seeded with ``seed``, so it does not depend on the batch size or the device (for 64-channel latents this equals
drawing the whole batch at once).

- ``official``: drawn in bfloat16, then cast to float32, as the official pipeline's ``_prepare_latents`` does
  (``torch.randn(shape, generator=Generator('cpu').manual_seed(seed), dtype=bfloat16)``): the same seed gives
  the official image's noise. (diffusers draws in the transformer's dtype instead.)
- ``comfy``: drawn in float32, as ComfyUI's KSampler prepares noise for the same seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

NOISE_MODES = ("official", "comfy")
_DRAW_DTYPE = {"official": torch.bfloat16, "comfy": torch.float32}


def make_noise(shape: Sequence[int], seed: int, mode: str = "official", batch_offset: int = 0) -> torch.Tensor:
    """Float32 CPU noise of ``shape`` ``[B, ...]`` for batch indices ``batch_offset .. batch_offset + B - 1``."""
    if mode not in NOISE_MODES:
        raise ValueError(f"unknown noise mode {mode!r}; expected one of {', '.join(NOISE_MODES)}")
    shape = tuple(int(n) for n in shape)
    if len(shape) < 2 or min(shape) < 1:
        raise ValueError(f"noise shape must be [B, C, ...] with every size >= 1, got {shape}")
    if batch_offset < 0:
        raise ValueError(f"batch_offset must be >= 0, got {batch_offset}")
    generator = torch.Generator("cpu").manual_seed(int(seed))
    one = (1, *shape[1:])
    draws = [torch.randn(one, generator=generator, dtype=_DRAW_DTYPE[mode]) for _ in range(batch_offset + shape[0])]
    return torch.cat(draws[batch_offset:]).to(torch.float32)
