"""Euler sampling of the HunyuanImage-2.1 DiT exactly as the official pipeline runs it.

Everything here is in the DiT's latent space (raw VAE latents times the variant's latent scale, see
``latents.py``). The DiT predicts the velocity ``v = noise - x0`` of ``x_σ = (1 - σ)·x0 + σ·noise``, and each
step is the Euler jump ``x ← x - (σ_i - σ_{i+1})·v`` in float32. What a step's velocity is made of (one pass,
CFG, APG, the official mix, the guidance embedding) is the ``Guidance`` object's business.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..variants import get_variant
from .conditioning import Conditioning
from .guidance import APGSettings, Guidance, guidance_for
from .schedule import Schedule, build_schedule, check_denoise, custom_schedule

logger = logging.getLogger(__name__)

StepCallback = Callable[[int, int, torch.Tensor, torch.Tensor], None]
"""``callback(step, total, x, denoised)`` after every step: ``step`` is the 0-based index of the step just
done, ``x`` the latents after it and ``denoised`` that step's x0 estimate ``x_σ - σ·v`` (both model space; with
MeanFlow's average velocity it is a preview-grade estimate). Exceptions raised inside it stop sampling and
propagate (interruption)."""


def resolve_schedule(
    variant: str,
    steps: int | None = None,
    shift: float | None = None,
    sigmas: torch.Tensor | Sequence[float] | None = None,
    denoise: float = 1.0,
) -> Schedule:
    """The schedule a run uses: custom sigmas as given, else the variant's official values for what is unset."""
    entry = get_variant(variant)
    check_denoise(denoise)
    if sigmas is not None:
        if denoise != 1.0:
            raise ValueError("denoise applies to a built schedule; with custom sigmas pass the tail you want")
        schedule = custom_schedule(sigmas)
        if steps is not None and steps != schedule.steps:
            raise ValueError(f"steps={steps} disagrees with the {schedule.steps} steps of the custom sigmas")
        return schedule
    return build_schedule(entry.steps if steps is None else steps, entry.shift if shift is None else shift, denoise)


@dataclass(frozen=True)
class SamplingPlan:
    """A run's schedule and guidance, decided together from a variant's official values and the user's choices."""

    schedule: Schedule
    guidance: Guidance


def plan_sampling(
    variant: str,
    *,
    steps: int | None = None,
    shift: float | None = None,
    sigmas: torch.Tensor | Sequence[float] | None = None,
    denoise: float = 1.0,
    mode: str | None = None,
    guidance_scale: float | None = None,
    apg_settings: APGSettings | None = None,
    apg_start: str | int | None = None,
    batched_cfg: bool = True,
) -> SamplingPlan:
    """Everything left unset takes ``variant``'s official value (base 50 steps / 3.5 / shift 5 with the CFG->APG
    mix; distilled 8 / 3.25 / 4 with embedded guidance and MeanFlow; refiner 4 / 3.5 / 4, embedded).

    ``apg_start`` is where the mix hands over to APG: ``"official"`` (None too) the official fixed switch, step 6
    or 39 with quoted text at any step count; ``"scaled"`` that switch scaled to the step count (not official); or
    a first APG step index. With ``denoise < 1`` it counts in the full schedule whose tail runs, with custom sigmas
    from their first sigma (``guidance.py`` says why)."""
    guidance = guidance_for(
        variant, mode, guidance_scale, apg_settings=apg_settings, apg_start=apg_start, batched=batched_cfg
    )
    return SamplingPlan(resolve_schedule(variant, steps, shift, sigmas, denoise), guidance)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _velocity(
    model: nn.Module,
    x: torch.Tensor,
    t: torch.Tensor,
    text: Conditioning,
    guidance: torch.Tensor | None = None,
    timestep_r: torch.Tensor | None = None,
) -> torch.Tensor:
    """One DiT forward; ``x`` is repeated when ``text`` carries several conditionings per latent ([neg, pos])."""
    if text.batch != x.shape[0]:
        x = torch.cat([x] * (text.batch // x.shape[0]))
    n = x.shape[0]
    out = model(
        x,
        t.reshape(1).expand(n),
        text.mllm,
        text.mllm_mask,
        text.byt5,
        text.byt5_mask,
        guidance=None if guidance is None else guidance.reshape(1).expand(n),
        timestep_r=None if timestep_r is None else timestep_r.reshape(1).expand(n),
    )
    return out.float()


def _start(
    noise: torch.Tensor, latent: torch.Tensor | None, sigma0: torch.Tensor, device: torch.device
) -> torch.Tensor:
    """The first latents: pure noise at σ = 1, else the given latent noised to σ0 (img2img)."""
    x = noise.to(device, torch.float32)
    if float(sigma0) >= 1.0:
        return x
    if latent is None:
        raise ValueError(
            f"the schedule starts below pure noise (sigma {float(sigma0):.4f}): img2img needs a latent to start from"
        )
    if latent.shape != noise.shape:
        raise ValueError(f"latent shape {tuple(latent.shape)} differs from noise shape {tuple(noise.shape)}")
    sigma0 = sigma0.to(device)
    return (1 - sigma0) * latent.to(device, torch.float32) + sigma0 * x


def _check_shapes(model: nn.Module, noise: torch.Tensor, concat: torch.Tensor | None) -> None:
    dims = 2 + model.config.patch_dims
    if noise.ndim != dims:
        layout = "[B, C, 1, H, W]" if dims == 5 else "[B, C, H, W]"
        raise ValueError(f"the {model.config.variant} DiT samples {layout} latents, got shape {tuple(noise.shape)}")
    need = model.config.in_channels - noise.shape[1]
    if concat is None:
        if need:
            raise ValueError(
                f"the {model.config.variant} DiT takes {model.config.in_channels} channels, the noise has "
                f"{noise.shape[1]}: pass the {need} condition channels as concat"
            )
        return
    if concat.shape[1] != need or concat.shape[2:] != noise.shape[2:] or concat.shape[0] not in (1, noise.shape[0]):
        raise ValueError(
            f"concat must be [1 or {noise.shape[0]}, {need}, {', '.join(map(str, noise.shape[2:]))}], "
            f"got {tuple(concat.shape)}"
        )


@torch.no_grad()
def sample(
    model: nn.Module,
    noise: torch.Tensor,
    positive: Conditioning,
    negative: Conditioning | None = None,
    *,
    schedule: Schedule | None = None,
    guidance: Guidance | None = None,
    latent: torch.Tensor | None = None,
    concat: torch.Tensor | None = None,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """Denoise ``noise`` ``[B, C, H, W]`` (refiner ``[B, C, 1, H, W]``) into model-space latents.

    ``schedule`` and ``guidance`` default to the official ones of ``model.config.variant`` (``plan_sampling``
    builds both from user settings). A schedule that starts below σ = 1 (img2img) starts from ``latent`` noised
    to its first sigma. ``concat`` holds the refiner's condition latents, joined to ``x`` on channels each step.
    ``negative`` is needed by guidance that predicts an unconditional velocity.
    """
    config = model.config
    schedule = resolve_schedule(config.variant) if schedule is None else schedule
    guidance = guidance_for(config.variant) if guidance is None else guidance
    guidance.check_model(config)
    if guidance.needs_uncond and negative is None:
        raise ValueError(f"{guidance} predicts an unconditional velocity each step: it needs a negative conditioning")
    _check_shapes(model, noise, concat)

    device = _device(model)
    batch = noise.shape[0]
    run = guidance.start(schedule, positive.has_quoted_text)
    run.bind(positive.expand(batch).to(device), negative.expand(batch).to(device) if guidance.needs_uncond else None)
    sig = schedule.sigmas.to(device)
    timesteps = schedule.timesteps.to(device)
    extra = None if concat is None else concat.to(device, torch.float32).expand(batch, *concat.shape[1:])
    x = _start(noise, latent, schedule.sigmas[0], device)
    logger.debug(
        "sampling %s: %d steps (of %d), sigma %.4f -> 0, %s, batch %d",
        config.variant, schedule.steps, schedule.total_steps, float(schedule.sigmas[0]), guidance, batch,
    )  # fmt: skip

    total = schedule.steps
    for i in range(total):
        x_in = x if extra is None else torch.cat([x, extra], dim=1)

        def predict(text: Conditioning, g: torch.Tensor | None, r: torch.Tensor | None) -> torch.Tensor:
            return _velocity(model, x_in, timesteps[i], text, g, r)  # noqa: B023 (called within this step)

        v = run.velocity(i, predict)
        denoised = x - sig[i] * v
        x = x - (sig[i] - sig[i + 1]) * v
        if callback is not None:
            callback(i, total, x, denoised)
    return x
