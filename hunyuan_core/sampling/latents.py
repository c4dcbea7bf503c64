"""ComfyUI LATENTs <-> the DiT's latent space.

ComfyUI stores raw VAE latents (neither VAE in the core ever scales). The DiT was trained on latents multiplied
by the VAE's scaling factor (no shift): 0.75289 for the stage-1 32x VAE, 1.03682 for the refiner's 16x VAE, both
held by ``hunyuan_core.variants``. The sampler's inputs are multiplied on the way in, its output divided on the
way out.
"""

from __future__ import annotations

import torch

from ..variants import REFINER_LATENT, STAGE1_LATENT

STAGE1_SCALE = STAGE1_LATENT.scale
REFINER_SCALE = REFINER_LATENT.scale


def to_model_space(latent: torch.Tensor, scale: float = STAGE1_SCALE) -> torch.Tensor:
    """A raw VAE latent (ComfyUI LATENT) as the DiT sees it."""
    return latent * scale


def to_vae_space(x: torch.Tensor, scale: float = STAGE1_SCALE) -> torch.Tensor:
    """A DiT-space latent back to a raw VAE latent (ComfyUI LATENT)."""
    return x / scale
