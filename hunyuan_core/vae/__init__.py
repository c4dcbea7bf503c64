"""HunyuanImage-2.1's stage-1 VAE: 32x, 64 latent channels, DC-AE style (model.md §2.1).

Latents are raw VAE space, as in ComfyUI; the 0.75289 scaling factor is the DiT side's business.
"""

from .checkpoint import VAECheckpointError, VAECheckpointInfo, inspect_vae, load_vae
from .config import STAGE1, VAEConfig
from .images import Tiling, decode, encode
from .model import DiagonalGaussian, HunyuanImageVAE

__all__ = [
    "STAGE1",
    "DiagonalGaussian",
    "HunyuanImageVAE",
    "Tiling",
    "VAECheckpointError",
    "VAECheckpointInfo",
    "VAEConfig",
    "decode",
    "encode",
    "inspect_vae",
    "load_vae",
]
