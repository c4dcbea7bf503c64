"""No silent black images: every tensor the pack hands on is checked for NaN and infinity where it is made.

A NaN anywhere in a diffusion run ends as an all-black PNG that ComfyUI saves as a success. The DiT's output is
checked at each model call (one ``aminmax`` over a latent-sized tensor), the VAE's input and output at each
decode and encode; a failure stops the prompt with what went wrong, where, and what to change. Loaded weights are
checked once at load (``hunyuan_core.checkpoints.finite``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..hunyuan_core.checkpoints.errors import SHOWN_MODULE
from ..hunyuan_core.checkpoints.finite import is_finite


class NonFiniteError(ValueError):
    """A tensor the pack made holds NaN or infinity (the message says where and what to do)."""


NonFiniteError.__module__ = SHOWN_MODULE  # not the install path in ComfyUI's error dialog


# Why a DiT run with finite weights (the loaders refuse NaN in a file) turns non-finite, and what to do.
DIT_CAUSES = (
    "a LoRA or model patch too strong for this model (lower its strength or remove it), or a DiT file whose values "
    "are finite but wrong (download it again)"
)


def check_dit_output(output: torch.Tensor, where: Callable[[], str], compute_dtype: torch.dtype) -> None:
    """Stop at the first DiT call whose output is not finite, naming the step (``where()``, only built on failure)
    and the likely cause."""
    if is_finite(output):
        return
    if compute_dtype == torch.float16:
        fix = "the DiT computes in fp16, which overflows for this model: set the DiT loader's weight_dtype to bf16"
    else:
        fix = DIT_CAUSES
    raise NonFiniteError(f"the DiT's output holds NaN or infinite values at {where()}: {fix}")


def check_step(latent: torch.Tensor, step: int, total: int, node: str, vae_precision: str) -> None:
    """A sampling loop the pack runs itself (the refiner's, which starts from its own VAE encode): its latent after
    each step must be finite."""
    if is_finite(latent):
        return
    causes = DIT_CAUSES
    if vae_precision in ("fp16", "float16"):  # the input image was encoded in fp16 first
        causes = f"the fp16 VAE encode of the input image overflowing (set vae_precision to bf16 or fp32), {causes}"
    raise NonFiniteError(f"{node}: the latent holds NaN or infinite values after step {step + 1} of {total}: {causes}")


def check_latent(samples: torch.Tensor, node: str) -> None:
    """A latent arriving at ``node`` must be finite (a NaN latent decodes to a black image)."""
    if not is_finite(samples):
        raise NonFiniteError(
            f"{node}: the latent holds NaN or infinite values, so its image would be black; it was made that way "
            "upstream (the sampler, a latent node or a loaded latent file): fix or replace the node that made it"
        )


def check_image(
    image: torch.Tensor, node: str, precision: str, made: str = "decoding", field: str = "precision", auto: bool = False
) -> None:
    """An image (or latent) a VAE made in ``precision`` must be finite; fp16 overflow is the usual cause. Images
    come clamped to [0, 1], where infinity has become a saturated pixel: what is left to find is NaN (black)."""
    if is_finite(image):
        return
    if precision in ("fp16", "float16"):
        chosen = " (what auto picks on a GPU)" if auto else ""
        fix = f"{made} in fp16{chosen} overflowed: set {node}'s {field} to bf16 or fp32"
    else:
        fix = "the VAE file's values are wrong (download it again) or its input holds extreme values"
    raise NonFiniteError(f"{node}: {made} gave NaN or infinite values: {fix}")
