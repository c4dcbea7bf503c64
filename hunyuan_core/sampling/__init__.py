"""Sampling HunyuanImage-2.1 as the official pipeline does: flow-matching Euler, CFG->APG mix, MeanFlow, img2img.

``sample`` works in the DiT's latent space with a ``Schedule`` and a ``Guidance``; ``plan_sampling`` decides
both from a variant's official values and the user's settings; ``to_model_space`` / ``to_vae_space`` convert
ComfyUI's raw VAE latents. Noise comes from ``make_noise`` (``official`` mode reproduces the official seed).
"""

from .conditioning import Conditioning, concat_conditionings
from .guidance import (
    APG_OFFICIAL,
    APG_SCALED,
    APG_STARTS,
    MODES,
    APGGuidance,
    APGSettings,
    CFGGuidance,
    EmbeddedGuidance,
    Guidance,
    GuidanceRun,
    MomentumBuffer,
    OfficialMix,
    apg,
    cfg,
    guidance_for,
    parse_apg_start,
    resolve_apg_start,
)
from .latents import REFINER_SCALE, STAGE1_SCALE, to_model_space, to_vae_space
from .noise import NOISE_MODES, make_noise
from .sampler import SamplingPlan, StepCallback, plan_sampling, resolve_schedule, sample
from .schedule import Schedule, build_schedule, check_sigmas, custom_schedule, shifted_sigmas

__all__ = [
    "APG_OFFICIAL",
    "APG_SCALED",
    "APG_STARTS",
    "MODES",
    "NOISE_MODES",
    "REFINER_SCALE",
    "STAGE1_SCALE",
    "APGGuidance",
    "APGSettings",
    "CFGGuidance",
    "Conditioning",
    "EmbeddedGuidance",
    "Guidance",
    "GuidanceRun",
    "MomentumBuffer",
    "OfficialMix",
    "SamplingPlan",
    "Schedule",
    "StepCallback",
    "apg",
    "build_schedule",
    "cfg",
    "check_sigmas",
    "concat_conditionings",
    "custom_schedule",
    "guidance_for",
    "make_noise",
    "parse_apg_start",
    "plan_sampling",
    "resolve_apg_start",
    "resolve_schedule",
    "sample",
    "shifted_sigmas",
    "to_model_space",
    "to_vae_space",
]
