"""HunyuanImage-2.1's refiner VAE: 16x in space, 4x in time, causal 3-D, 32 latent channels, run on single images.

Latents are raw VAE space ``[B, 32, 1, H/16, W/16]``; the 1.03682 scaling factor is the refiner sampler's business.
"""

from .checkpoint import (
    RefinerVAECheckpointError,
    RefinerVAECheckpointInfo,
    inspect_refiner_vae,
    load_refiner_vae,
)
from .config import REFINER_VAE, RefinerVAEConfig
from .images import decode_image, encode_image
from .model import RefinerVAE

__all__ = [
    "REFINER_VAE",
    "RefinerVAE",
    "RefinerVAECheckpointError",
    "RefinerVAECheckpointInfo",
    "RefinerVAEConfig",
    "decode_image",
    "encode_image",
    "inspect_refiner_vae",
    "load_refiner_vae",
]
