"""Sampling HunyuanImage-2.1 as the official pipeline does: flow-matching Euler, CFG->APG mix, MeanFlow, img2img.

``sample`` works in the DiT's latent space; ``to_model_space`` / ``to_vae_space`` convert ComfyUI's raw VAE
latents. Noise comes from ``make_noise`` (``official`` mode reproduces the official pipeline's seed).
"""

from .conditioning import Conditioning, concat_conditionings
from .defaults import VARIANT_DEFAULTS, VariantDefaults, variant_defaults
from .guidance import MODES, APGSettings, Guider, MomentumBuffer, apg, cfg, official_apg_start
from .latents import REFINER_SCALE, STAGE1_SCALE, to_model_space, to_vae_space
from .noise import NOISE_MODES, make_noise
from .sampler import StepCallback, check_mode, resolve_schedule, sample
from .schedule import Schedule, build_schedule, check_sigmas, custom_schedule, shifted_sigmas

__all__ = [
    "MODES",
    "NOISE_MODES",
    "REFINER_SCALE",
    "STAGE1_SCALE",
    "VARIANT_DEFAULTS",
    "APGSettings",
    "Conditioning",
    "Guider",
    "MomentumBuffer",
    "Schedule",
    "StepCallback",
    "VariantDefaults",
    "apg",
    "build_schedule",
    "cfg",
    "check_mode",
    "check_sigmas",
    "concat_conditionings",
    "custom_schedule",
    "make_noise",
    "official_apg_start",
    "resolve_schedule",
    "sample",
    "shifted_sigmas",
    "to_model_space",
    "to_vae_space",
    "variant_defaults",
]
