"""The refiner VAE as ComfyUI sees it: IMAGE tensors in and out, a working precision, batch slices.

Latents are raw refiner-VAE space, ``[B, 32, 1, H/16, W/16]`` float32: the refiner's sampling code packs two of
them into its 64-channel input and applies the 1.03682 scaling factor, never this module. IMAGEs are
``[B, H, W, 3]`` float32 in 0..1. Precision handling and slicing are shared with the stage-1 VAE
(``hunyuan_core.vae_common``).
"""

from __future__ import annotations

import torch

from ..vae_common import from_image, run_sliced, to_image
from .model import RefinerVAE


def encode_image(
    vae: RefinerVAE,
    images: torch.Tensor,
    precision: str | torch.dtype | None = None,
    batch_size: int | None = None,
    output_device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
    sample: bool = False,
) -> torch.Tensor:
    """IMAGE ``[B, H, W, 3]`` (0..1, sides multiples of 16) -> raw latent ``[B, 32, 1, H/16, W/16]`` float32.

    The posterior mean by default; ``sample=True`` draws ``mean + std * noise`` as the official refiner does
    (``latent_dist.sample()``), the noise coming from ``generator`` (on its device; the global CPU generator if
    None), drawn in float32 for the whole batch at once so ``batch_size`` never changes the result. A side
    that is not a multiple of 16 raises ``ValueError`` naming the nearest valid sizes.
    """
    pixels = from_image(images, vae.config.spatial_compression)
    noise = None
    if sample:
        factor = vae.config.spatial_compression
        shape = (pixels.shape[0], vae.config.latent_channels, 1, pixels.shape[2] // factor, pixels.shape[3] // factor)
        noise_device = generator.device if generator is not None else torch.device("cpu")
        noise = torch.randn(shape, generator=generator, device=noise_device, dtype=torch.float32)

    def step(part: torch.Tensor, offset: int) -> torch.Tensor:
        posterior = vae.encode(part)
        latent = posterior.mean.float()
        if noise is not None:
            eps = noise[offset : offset + part.shape[0]].to(latent.device)
            latent = latent + torch.exp(0.5 * posterior.logvar.float()) * eps
        return latent

    return run_sliced(vae, pixels, step, precision, batch_size, output_device)


def decode_image(
    vae: RefinerVAE,
    latents: torch.Tensor,
    precision: str | torch.dtype | None = None,
    batch_size: int | None = None,
    output_device: torch.device | str | None = None,
) -> torch.Tensor:
    """Raw latents ``[B, 32, 1, h, w]`` (or ``[B, 32, h, w]``) -> IMAGE ``[B, 16h, 16w, 3]`` (float32, 0..1).

    ``batch_size`` decodes that many images at a time (same result, less memory); ``output_device`` defaults to
    the latents' device, and each slice moves there as soon as it is done.
    """

    def step(part: torch.Tensor, _offset: int) -> torch.Tensor:
        return to_image(vae.decode(part).squeeze(2))

    return run_sliced(vae, latents, step, precision, batch_size, output_device)
