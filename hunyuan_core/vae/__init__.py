"""HunyuanImage-2.1's stage-1 VAE: 32x in space, 64 latent channels, DC-AE style (2x2 blocks moved into channels).

Latents are raw VAE space, as in ComfyUI; the 0.75289 scaling factor is the DiT side's business.
"""

from ..vae_common import DiagonalGaussian
from .checkpoint import VAECheckpointError, VAECheckpointInfo, inspect_vae, load_vae
from .config import STAGE1_VAE, VAEConfig
from .images import Tiling, decode_image, encode_image
from .model import HunyuanImageVAE

__all__ = [
    "STAGE1_VAE",
    "DiagonalGaussian",
    "HunyuanImageVAE",
    "Tiling",
    "VAECheckpointError",
    "VAECheckpointInfo",
    "VAEConfig",
    "decode_image",
    "encode_image",
    "inspect_vae",
    "load_vae",
]
