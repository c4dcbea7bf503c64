"""The refiner stage's latent procedure: re-draw a stage-1 image at the same size with the refiner DiT.

The refiner is a video-style model: its 16x VAE gives latents ``[B, 32, T, h, w]`` and its DiT reads frames in
pairs folded into channels, so a single image (T = 1) has its frame duplicated and becomes ``[B, 64, 1, h, w]``.
The DiT sees ``cat([x, condition])`` (128 channels): ``x`` starts as pure noise and runs the whole 1 -> 0
schedule (this is not img2img), ``condition`` is the image's latent times 1.03682, mixed with fresh noise at the
augmentation strength (official 0.25). The output's second packed frame is the refined image.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from ..variants import REFINER, REFINER_CONDITION_STRENGTH
from .conditioning import Conditioning
from .guidance import Guidance, guidance_for
from .latents import REFINER_SCALE, to_model_space, to_vae_space
from .sampler import StepCallback, resolve_schedule, sample
from .schedule import Schedule

log = logging.getLogger(__name__)


def _frames(latent: torch.Tensor) -> torch.Tensor:
    """``[B, C, h, w]`` or ``[B, C, T, h, w]`` -> 5-D."""
    if latent.ndim == 4:
        return latent.unsqueeze(2)
    if latent.ndim != 5:
        raise ValueError(f"expected a refiner-VAE latent [B, C, T, h, w], got shape {tuple(latent.shape)}")
    return latent


def pack_frames(latent: torch.Tensor) -> torch.Tensor:
    """``[B, C, T, h, w]`` -> ``[B, 2C, (T+1)/2, h, w]``: the first frame duplicated, then frames paired on channels.

    Within a pair the earlier frame comes first. For an image (T = 1) that is simply ``cat([f0, f0])`` on channels.
    """
    latent = _frames(latent)
    frames = torch.cat([latent[:, :, :1], latent], dim=2)
    if frames.shape[2] % 2:
        raise ValueError(f"a refiner latent needs an odd number of frames (1 for an image), got {latent.shape[2]}")
    b, c, t, h, w = frames.shape
    pairs = frames.reshape(b, c, t // 2, 2, h, w)  # frame 2f + n at [:, :, f, n]
    return pairs.permute(0, 3, 1, 2, 4, 5).reshape(b, 2 * c, t // 2, h, w)  # channel n·C + c


def unpack_frames(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of ``pack_frames``: ``[B, 2C, F, h, w]`` -> ``[B, C, 2F - 1, h, w]``, without the duplicated frame."""
    packed = _frames(packed)
    b, c2, f, h, w = packed.shape
    if c2 % 2:
        raise ValueError(f"a packed refiner latent has an even channel count, got {c2}")
    frames = packed.reshape(b, 2, c2 // 2, f, h, w).permute(0, 2, 3, 1, 4, 5).reshape(b, c2 // 2, 2 * f, h, w)
    return frames[:, :, 1:]


def check_strength(strength: float) -> float:
    if not 0.0 <= strength <= 1.0:
        raise ValueError(
            f"condition augmentation strength {strength} is invalid: it must be in [0, 1] "
            f"(official {REFINER_CONDITION_STRENGTH})"
        )
    return float(strength)


def condition_latents(
    latent: torch.Tensor, noise: torch.Tensor, strength: float = REFINER_CONDITION_STRENGTH
) -> torch.Tensor:
    """The refiner's condition channels from a raw refiner-VAE latent: packed, scaled, then ``s·noise + (1-s)·cond``.

    ``noise`` has the packed shape ``[B, 2C, F, h, w]``.
    """
    strength = check_strength(strength)
    cond = to_model_space(pack_frames(latent).float(), REFINER_SCALE)
    if noise.shape != cond.shape:
        raise ValueError(f"augmentation noise has shape {tuple(noise.shape)}, the condition {tuple(cond.shape)}")
    return strength * noise.to(cond.device, torch.float32) + (1 - strength) * cond


def check_refiner(model: nn.Module) -> None:
    """Refuse a stage-1 DiT: name it and say which file the refiner needs."""
    config = model.config
    if config.variant != REFINER.name or config.patch_dims != 3 or config.in_channels != 2 * config.out_channels:
        raise ValueError(
            f"the loaded DiT is the {config.variant} model ({config.in_channels} input channels, "
            f"{config.patch_dims}-D patches), not the refiner: load the refiner DiT (e.g. {REFINER.dit_file.name} "
            f"or Tencent's {REFINER.dit_file.official}) for the refiner"
        )


@torch.no_grad()
def refine(
    model: nn.Module,
    latent: torch.Tensor,
    positive: Conditioning,
    *,
    noise: torch.Tensor,
    condition_noise: torch.Tensor,
    strength: float = REFINER_CONDITION_STRENGTH,
    schedule: Schedule | None = None,
    guidance: Guidance | None = None,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """Refine raw refiner-VAE latents ``[B, 32, 1, h, w]`` (of the stage-1 image); returns the same shape, raw.

    ``noise`` is the starting noise and ``condition_noise`` the augmentation noise, both packed-shaped
    ``[B, 64, 1, h, w]``. Unset ``schedule``/``guidance`` are the official refiner ones (4 steps at shift 4,
    embedded guidance 3.5 without MeanFlow; the official pipeline passes on the stage-1 scale, 3.25 after the
    distilled model). ``positive`` must be encoded with the refiner's prompt template. No CFG.
    """
    check_refiner(model)
    cond = condition_latents(latent, condition_noise, strength)
    if noise.shape != cond.shape:
        raise ValueError(f"noise has shape {tuple(noise.shape)}, the refiner samples {tuple(cond.shape)}")
    guidance = guidance_for(REFINER.name) if guidance is None else guidance
    if not guidance.embedded:
        raise ValueError(f"the refiner takes its guidance as an embedding, not {guidance}")
    log.debug("refining %s latents at strength %g", tuple(cond.shape), strength)
    schedule = resolve_schedule(REFINER.name) if schedule is None else schedule
    x = sample(model, noise, positive, schedule=schedule, guidance=guidance, concat=cond, callback=callback)
    return unpack_frames(to_vae_space(x, REFINER_SCALE))
