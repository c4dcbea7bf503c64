"""The refiner VAE as ComfyUI sees it: IMAGE tensors in and out, a working precision, batch slices.

Latents are raw refiner-VAE space, ``[B, 32, 1, H/16, W/16]`` float32 (``decode_image`` also takes
``[B, 32, h, w]``): the refiner's sampling code packs two of them into its 64-channel input and applies the
1.03682 scaling factor, never this module. IMAGEs are ``[B, H, W, 3]`` float32 in 0..1; sides must be multiples
of 16. ``encode_image(..., sample=True, generator=...)`` draws from the posterior as the official refiner does.

The two functions are the ones the stage-1 VAE uses too (``hunyuan_core.vae_common``): both VAEs convert
IMAGEs, slice batches and pick the working precision alike.
"""

from ..vae_common import decode_image, encode_image

__all__ = ["decode_image", "encode_image"]
