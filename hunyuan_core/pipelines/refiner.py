"""The official refiner stage end to end: stage-1 IMAGE in, refined IMAGE out, at the same size.

1. The prompt is encoded with the refiner's own template (Qwen only; the refiner DiT has no glyph branch).
2. The image goes through the refiner VAE, taking a posterior sample as the official ``latent_dist.sample()``.
3. The refiner procedure (``sampling.refiner.refine``): pure-noise start, condition channels mixed with
   augmentation noise, the official schedule and embedded guidance.
4. The refined latent is decoded by the refiner VAE.

The official pipeline draws the posterior sample and the augmentation noise from the global CUDA generator,
which no CPU draw can reproduce; here they come from their own CPU generators seeded ``seed + 1`` and
``seed + 2``, so a seed gives one image on any device. The starting noise is the official draw for ``seed``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..refiner_vae.images import decode_image, encode_image
from ..sampling.conditioning import Conditioning
from ..sampling.guidance import Guidance, guidance_for
from ..sampling.noise import make_noise
from ..sampling.refiner import check_refiner, check_strength, refine
from ..sampling.sampler import StepCallback, resolve_schedule
from ..sampling.schedule import Schedule
from ..text.encoder import encode_prompt
from ..variants import REFINER, REFINER_CONDITION_STRENGTH

log = logging.getLogger(__name__)

SEED_SPACE = 2**64
POSTERIOR_SEED_OFFSET = 1
AUGMENT_SEED_OFFSET = 2

Prepare = Callable[[nn.Module], None]
"""Called with a model right before it is used (a host moves it to its device there); by default nothing."""


def offset_seed(seed: int, offset: int) -> int:
    """The seed of a secondary draw, kept in the 64-bit seed space."""
    return (int(seed) + offset) % SEED_SPACE


@dataclass(frozen=True)
class RefinerSettings:
    """What a user may choose for the refiner; None takes the official value (4 steps, shift 4, guidance 3.5).

    ``vae_precision`` is the refiner VAE's working precision ("fp32", "bf16", "fp16" or None for its weights').
    """

    steps: int | None = None
    shift: float | None = None
    guidance_scale: float | None = None
    condition_strength: float = REFINER_CONDITION_STRENGTH
    noise_mode: str = "official"
    vae_precision: str | torch.dtype | None = None

    def __post_init__(self) -> None:
        check_strength(self.condition_strength)

    def schedule(self) -> Schedule:
        return resolve_schedule(REFINER.name, self.steps, self.shift)

    def guidance(self) -> Guidance:
        return guidance_for(REFINER.name, scale=self.guidance_scale)


@torch.no_grad()
def refine_image(
    dit: nn.Module,
    vae: nn.Module,
    text_encoder: nn.Module,
    image: torch.Tensor,
    prompt: str,
    seed: int,
    settings: RefinerSettings = RefinerSettings(),  # noqa: B008 (frozen, so one shared default is safe)
    *,
    prepare: Prepare | None = None,
    callback: StepCallback | None = None,
    output_device: torch.device | str | None = None,
) -> torch.Tensor:
    """Refine IMAGE ``[B, H, W, 3]`` (0..1, sides multiples of 16) under ``prompt``; returns the same shape.

    ``dit`` is the refiner DiT, ``vae`` the refiner VAE and ``text_encoder`` the Qwen prompt encoder
    (``QwenPromptEncoder``). ``prepare(model)`` runs before each model is used, so a host can load it then.
    """
    prepare = prepare or (lambda model: None)
    check_refiner(dit)
    schedule, guidance = settings.schedule(), settings.guidance()

    prepare(text_encoder)
    positive = Conditioning.of(encode_prompt(text_encoder, None, prompt, template=REFINER.template))

    prepare(vae)
    posterior = torch.Generator("cpu").manual_seed(offset_seed(seed, POSTERIOR_SEED_OFFSET))
    latent = encode_image(vae, image, precision=settings.vae_precision, sample=True, generator=posterior)
    packed = (latent.shape[0], 2 * latent.shape[1], *latent.shape[2:])
    noise = make_noise(packed, seed, settings.noise_mode)
    condition_noise = make_noise(packed, offset_seed(seed, AUGMENT_SEED_OFFSET), "comfy")

    prepare(dit)
    log.info("refining %d image(s) at %dx%d, %d steps", image.shape[0], image.shape[2], image.shape[1], schedule.steps)
    refined = refine(
        dit, latent, positive, noise=noise, condition_noise=condition_noise, strength=settings.condition_strength,
        schedule=schedule, guidance=guidance, callback=callback,
    )  # fmt: skip

    prepare(vae)
    return decode_image(vae, refined, precision=settings.vae_precision, output_device=output_device)
