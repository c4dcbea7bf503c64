"""ComfyUI LATENTs <-> the DiT's latent space.

ComfyUI stores raw VAE latents (the VAE in ``hunyuan_core.vae`` never scales). The DiT was trained on latents
multiplied by the VAE's scaling factor, 0.75289 for the stage-1 32x VAE (no shift), so the sampler's inputs are
multiplied by it on the way in and its output divided on the way out. The refiner's 16x VAE uses 1.03682.
"""

from __future__ import annotations

import torch

STAGE1_SCALE = 0.75289
REFINER_SCALE = 1.03682


def to_model_space(latent: torch.Tensor, scale: float = STAGE1_SCALE) -> torch.Tensor:
    """A raw VAE latent (ComfyUI LATENT) as the DiT sees it."""
    return latent * scale


def to_vae_space(x: torch.Tensor, scale: float = STAGE1_SCALE) -> torch.Tensor:
    """A DiT-space latent back to a raw VAE latent (ComfyUI LATENT)."""
    return x / scale
