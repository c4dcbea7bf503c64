"""Euler sampling of the HunyuanImage-2.1 DiT exactly as the official pipeline runs it (model.md §4).

Everything here is in the DiT's latent space (raw VAE latents times 0.75289, see ``latents.py``). The DiT
predicts the velocity ``v = noise - x0`` of ``x_σ = (1 - σ)·x0 + σ·noise``, and each step is the Euler jump
``x ← x - (σ_i - σ_{i+1})·v`` in float32.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
from torch import nn

from .conditioning import Conditioning, concat_conditionings
from .defaults import variant_defaults
from .guidance import TWO_PASS_MODES, APGSettings, Guider
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
    """The schedule a run uses: custom sigmas as given, else the variant's defaults for what is left unset."""
    defaults = variant_defaults(variant)
    check_denoise(denoise)
    if sigmas is not None:
        if denoise != 1.0:
            raise ValueError("denoise applies to a built schedule; with custom sigmas pass the tail you want")
        schedule = custom_schedule(sigmas)
        if steps is not None and steps != schedule.steps:
            raise ValueError(f"steps={steps} disagrees with the {schedule.steps} steps of the custom sigmas")
        return schedule
    return build_schedule(
        defaults.steps if steps is None else steps, defaults.shift if shift is None else shift, denoise
    )


def check_mode(mode: str, guidance_embed: bool, variant: str) -> None:
    """Refuse a guidance mode the model cannot run: CFG/APG need a plain model, ``distilled`` an embedded one."""
    if guidance_embed and mode in TWO_PASS_MODES:
        raise ValueError(
            f"the {variant} model is guidance-distilled (it takes the scale as an embedding); "
            f"guidance mode {mode!r} needs the base model, use 'distilled'"
        )
    if not guidance_embed and mode == "distilled":
        raise ValueError(
            f"the {variant} model has no guidance embedding; 'distilled' mode needs the distilled model or the "
            "refiner, use 'official', 'cfg' or 'apg'"
        )


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
    dims = 2 + model.cfg.patch_dims
    if noise.ndim != dims:
        layout = "[B, C, 1, H, W]" if dims == 5 else "[B, C, H, W]"
        raise ValueError(f"the {model.cfg.variant} DiT samples {layout} latents, got shape {tuple(noise.shape)}")
    need = model.cfg.in_channels - noise.shape[1]
    if concat is None:
        if need:
            raise ValueError(
                f"the {model.cfg.variant} DiT takes {model.cfg.in_channels} channels, the noise has {noise.shape[1]}:"
                f" pass the {need} condition channels as concat"
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
    steps: int | None = None,
    shift: float | None = None,
    guidance_scale: float | None = None,
    mode: str | None = None,
    sigmas: torch.Tensor | Sequence[float] | None = None,
    denoise: float = 1.0,
    latent: torch.Tensor | None = None,
    concat: torch.Tensor | None = None,
    apg_settings: APGSettings | None = None,
    apg_start: int | None = None,
    batched_cfg: bool = True,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """Denoise ``noise`` ``[B, C, H, W]`` (refiner ``[B, C, 1, H, W]``) into model-space latents.

    Unset ``steps``/``shift``/``guidance_scale``/``mode`` take the official defaults of ``model.cfg.variant``
    (base 50 / 3.5 / 5 / official; distilled 8 / 3.25 / 4 / distilled; refiner 4 / 3.5 / 4 / distilled).
    ``sigmas`` replaces the built schedule. ``denoise < 1`` samples the schedule's tail from ``latent`` noised
    to its first sigma. ``concat`` holds the refiner's condition latents, joined to ``x`` on channels each step.
    Two-pass modes run ``[negative, positive]`` in one batched forward, or one after the other with
    ``batched_cfg=False`` (less memory, same result). ``apg_start`` overrides the official mix's first APG step.
    """
    cfg = model.cfg
    defaults = variant_defaults(cfg.variant)
    schedule = resolve_schedule(cfg.variant, steps, shift, sigmas, denoise)
    mode = defaults.mode if mode is None else mode
    scale = defaults.guidance_scale if guidance_scale is None else float(guidance_scale)
    guider = Guider(mode, scale, schedule, positive.has_quoted_text, apg_settings, apg_start)
    check_mode(mode, cfg.guidance_embed, cfg.variant)
    two_pass = guider.needs_uncond
    if two_pass and negative is None:
        raise ValueError(f"guidance mode {mode!r} with scale {scale} needs a negative conditioning")
    _check_shapes(model, noise, concat)

    device = _device(model)
    batch = noise.shape[0]
    sig = schedule.sigmas.to(device)
    timesteps = schedule.timesteps.to(device)
    pos = positive.expand(batch).to(device)
    neg = negative.expand(batch).to(device) if two_pass else None
    both = concat_conditionings([neg, pos]) if two_pass and batched_cfg else None
    guidance = torch.tensor(scale, dtype=torch.float32, device=device) * 1000 if guider.embedded else None
    meanflow = guider.embedded and defaults.meanflow
    extra = None if concat is None else concat.to(device, torch.float32).expand(batch, *concat.shape[1:])
    x = _start(noise, latent, schedule.sigmas[0], device)
    logger.debug(
        "sampling %s: %d steps (of %d), sigma %.4f -> 0, mode %s, scale %g, apg_start %s, batch %d",
        cfg.variant, schedule.steps, schedule.total_steps, float(schedule.sigmas[0]), mode, scale,
        guider.apg_start, batch,
    )  # fmt: skip

    total = schedule.steps
    for i in range(total):
        t = timesteps[i]
        x_in = x if extra is None else torch.cat([x, extra], dim=1)
        if guider.embedded:
            r = sig[i + 1] * 1000 if meanflow else None  # MeanFlow: the next timestep, 0 at the last step
            v = _velocity(model, x_in, t, pos, guidance, r)
        elif not two_pass:
            v = _velocity(model, x_in, t, pos)
        elif both is not None:
            uncond, cond = _velocity(model, torch.cat([x_in, x_in]), t, both).chunk(2)
            v = guider.combine(i, uncond, cond)
        else:
            uncond = _velocity(model, x_in, t, neg)
            cond = _velocity(model, x_in, t, pos)
            v = guider.combine(i, uncond, cond)
        denoised = x - sig[i] * v
        x = x - (sig[i] - sig[i + 1]) * v
        if callback is not None:
            callback(i, total, x, denoised)
    return x
