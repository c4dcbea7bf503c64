"""The registry of HunyuanImage-2.1 variants: every official constant of base, distilled and refiner, once.

Sampler defaults, prompt templates, latent scales, node tooltips, workflows and error messages all read from
here, so a fact is changed in one place. Only two leaf modules are imported (the DiT config class and the prompt
templates), so any module of the core may import this one.

Sources of the values: the official configs and pipelines (Tencent-Hunyuan/HunyuanImage-2.1) and its README
table (steps, guidance, shift); file names from the official release and Comfy-Org's repack.
"""

from __future__ import annotations

from dataclasses import dataclass

from .dit.config import DiTConfig
from .text.prompt import REFINER_TEMPLATE, STAGE1_TEMPLATE, PromptTemplate

# Guidance kinds a variant samples with by default (the Guidance classes live in ``sampling.guidance``).
OFFICIAL_MIX = "official"  # CFG with the user's scale, then APG (base model)
EMBEDDED = "distilled"  # one pass, scale x1000 into the guidance embedding (distilled model, refiner)

GUIDANCE_EMBED_MULTIPLIER = 1000.0  # guidance_in receives scale * 1000
TIMESTEP_MULTIPLIER = 1000.0  # the DiT's timestep is sigma * 1000


@dataclass(frozen=True)
class ModelFile:
    """One released file: the ComfyUI models folder it goes in, Comfy-Org's name and Tencent's own path."""

    folder: str
    name: str
    official: str


@dataclass(frozen=True)
class LatentSpace:
    """A VAE latent as the DiT reads it: channels, spatial compression and the scale applied on the way in."""

    channels: int
    compression: int
    scale: float


STAGE1_LATENT = LatentSpace(channels=64, compression=32, scale=0.75289)
# The refiner's 16x causal-3D VAE: 32 channels per frame; the refiner DiT reads two frames packed into 64.
REFINER_LATENT = LatentSpace(channels=32, compression=16, scale=1.03682)

STAGE1_VAE_FILE = ModelFile("vae", "hunyuan_image_2.1_vae_fp16.safetensors", "vae/vae_2_1/pytorch_model.ckpt")
REFINER_VAE_FILE = ModelFile("vae", "hunyuan_image_refiner_vae_fp16.safetensors", "vae/vae_refiner/pytorch_model.pt")
QWEN_FILE = ModelFile("text_encoders", "qwen_2.5_vl_7b.safetensors", "Qwen2.5-VL-7B-Instruct/")
QWEN_FP8_FILE = ModelFile("text_encoders", "qwen_2.5_vl_7b_fp8_scaled.safetensors", "")
GLYPH_FILE = ModelFile(
    "text_encoders", "byt5_small_glyphxl_fp16.safetensors", "Glyph-SDXL-v2/checkpoints/byt5_model.pt"
)

# Refiner condition augmentation: cond = s * noise + (1 - s) * cond (official and diffusers 0.25; ComfyUI 0.10).
REFINER_CONDITION_STRENGTH = 0.25


@dataclass(frozen=True)
class Variant:
    """One DiT variant with its official sampling settings, text template, latent space and files.

    ``meanflow``: sampled with MeanFlow's second timestep (the next sigma). The refiner checkpoint carries the
    ``time_r_in`` weights too, but the official refiner pipeline passes no second timestep.
    """

    name: str
    dit: DiTConfig
    steps: int
    guidance_scale: float
    shift: float
    guidance: str
    meanflow: bool
    template: PromptTemplate
    latent: LatentSpace
    dit_file: ModelFile
    vae_file: ModelFile
    summary: str

    @property
    def embedded_guidance(self) -> bool:
        return self.guidance == EMBEDDED

    def describe_defaults(self) -> str:
        """'50 steps, guidance 3.5, shift 5' for tooltips and notes."""
        return f"{self.steps} steps, guidance {self.guidance_scale:g}, shift {self.shift:g}"


# One row a fact, as in the official README's table; kept as written (not re-wrapped by the formatter).
# fmt: off
BASE = Variant(
    name="base", dit=DiTConfig(variant="base"),
    steps=50, guidance_scale=3.5, shift=5.0, guidance=OFFICIAL_MIX, meanflow=False,
    template=STAGE1_TEMPLATE, latent=STAGE1_LATENT, vae_file=STAGE1_VAE_FILE,
    dit_file=ModelFile("diffusion_models", "hunyuanimage2.1_bf16.safetensors", "dit/hunyuanimage2.1.safetensors"),
    summary="CFG then APG",
)
# shift 4 as in the distilled config; the official __call__'s own shift=5 default overrides it by mistake.
DISTILLED = Variant(
    name="distilled", dit=DiTConfig(variant="distilled", guidance_embed=True, meanflow=True),
    steps=8, guidance_scale=3.25, shift=4.0, guidance=EMBEDDED, meanflow=True,
    template=STAGE1_TEMPLATE, latent=STAGE1_LATENT, vae_file=STAGE1_VAE_FILE,
    dit_file=ModelFile("diffusion_models", "hunyuanimage2.1_distilled_bf16.safetensors",
                       "dit/hunyuanimage2.1-distilled.safetensors"),
    summary="embedded guidance and MeanFlow",
)
# 4 steps hard-coded by stage 1, shift 4 from the refiner's __call__ (its config's shift 1 is never used), the
# scale inherited from stage 1 (3.5 after the base model, 3.25 after the distilled one). The checkpoint has
# time_r_in (MeanFlow) weights, but the official refiner pipeline passes no second timestep.
REFINER = Variant(
    name="refiner",
    dit=DiTConfig(variant="refiner", in_channels=128, hidden_size=3328, num_heads=26, patch_dims=3,
                  rope_axes=(16, 56, 56), byt5_dim=None, guidance_embed=True, meanflow=True),
    steps=4, guidance_scale=3.5, shift=4.0, guidance=EMBEDDED, meanflow=False,
    template=REFINER_TEMPLATE, latent=REFINER_LATENT, vae_file=REFINER_VAE_FILE,
    dit_file=ModelFile("diffusion_models", "hunyuanimage2.1_refiner_bf16.safetensors",
                       "dit/hunyuanimage-refiner.safetensors"),
    summary="embedded guidance, no CFG",
)
# fmt: on

VARIANTS: dict[str, Variant] = {v.name: v for v in (BASE, DISTILLED, REFINER)}
STAGE1_VARIANTS = (BASE.name, DISTILLED.name)


def get_variant(name: str) -> Variant:
    """The registry entry for ``name``, with an error listing the known variants."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown DiT variant {name!r}; expected one of {', '.join(VARIANTS)}") from None
