"""The refiner node: stage-1 IMAGE in, refined IMAGE out, the official refiner procedure end to end."""

from __future__ import annotations

import comfy.model_management as mm
import torch
from comfy_api.latest import io

from ..hunyuan_core.refiner_vae.images import decode_image, encode_image
from ..hunyuan_core.sampling import NOISE_MODES, make_noise, resolve_schedule, variant_defaults
from ..hunyuan_core.sampling import Conditioning as CoreConditioning
from ..hunyuan_core.sampling.refiner import OFFICIAL_STRENGTH, check_refiner, refine
from ..hunyuan_core.text import REFINER_TEMPLATE
from ..hunyuan_core.text.encoder import encode_prompt
from . import management
from .sampler import DEFAULT, _or_default
from .types import Conditioning, DiTModel, PromptPair, RefinerVAE, TextEncoderBundle, TextEncoders
from .vae import AUTO, PRECISIONS, resolve_precision

SEED_SPACE = 2**64
# The posterior sample and the augmentation noise get their own seeds (the official pipeline draws them from the
# global CUDA generator, which no CPU draw can reproduce); the starting noise is the official draw for `seed`.
POSTERIOR_SEED_OFFSET, AUGMENT_SEED_OFFSET = 1, 2


def _seeded(seed: int, offset: int) -> int:
    return (seed + offset) % SEED_SPACE


class HunyuanImage21Refiner(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="HunyuanImage21Refiner",
            display_name="HunyuanImage 2.1 Refiner",
            category="HunyuanImage/sampling",
            description=(
                "The official second stage: re-draws the stage-1 image at the same size with the refiner DiT for "
                "sharper faces and textures. The prompt is re-encoded with the refiner's own template automatically. "
                "Defaults are the official ones: 4 steps, shift 4, guidance 3.5, condition augmentation 0.25."
            ),
            inputs=[
                DiTModel.Input("model", tooltip="The refiner DiT, from the HunyuanImage 2.1 DiT Loader."),
                RefinerVAE.Input("refiner_vae", tooltip="From the HunyuanImage 2.1 Refiner VAE Loader (16x VAE)."),
                TextEncoders.Input("text_encoders", tooltip="The same text encoders as stage 1 (only Qwen is used)."),
                Conditioning.Input(
                    "conditioning",
                    tooltip="The stage-1 Text Encode output: its prompt is re-encoded with the refiner template.",
                ),
                io.Image.Input("image", tooltip="The stage-1 image (sides multiples of 16), e.g. from VAE Decode."),
                io.Int.Input(
                    "seed", default=0, min=0, max=SEED_SPACE - 1, control_after_generate=True,
                    tooltip="The official pipeline reuses the stage-1 seed.",
                ),
                io.Int.Input("steps", default=DEFAULT, min=DEFAULT, max=100, tooltip="-1 = official (4)."),
                io.Float.Input(
                    "guidance_scale", default=DEFAULT, min=DEFAULT, max=30.0, step=0.05, round=0.01,
                    tooltip="-1 = 3.5. The official pipeline passes the stage-1 scale: 3.5 after base, 3.25 after "
                    "distilled. Embedded guidance, no CFG.",
                ),
                io.Float.Input(
                    "shift", default=DEFAULT, min=DEFAULT, max=100.0, step=0.1, round=0.01,
                    tooltip="-1 = official (4).",
                ),
                io.Float.Input(
                    "condition_strength", default=OFFICIAL_STRENGTH, min=0.0, max=1.0, step=0.01,
                    tooltip="Noise mixed into the stage-1 latent (official 0.25): s*noise + (1-s)*latent. Higher "
                    "lets the refiner change more.",
                ),
                io.Combo.Input(
                    "noise_mode", options=list(NOISE_MODES), default="official",
                    tooltip="official: the official pipeline's starting noise for the seed (bf16 draw). comfy: fp32.",
                ),
                io.Combo.Input(
                    "vae_precision", options=[AUTO, *PRECISIONS], default=AUTO,
                    tooltip="auto: fp16 on a GPU (as official), fp32 on the CPU.",
                ),
            ],
            outputs=[io.Image.Output(tooltip="The refined image, same size as the input.")],
        )  # fmt: skip

    @classmethod
    def validate_inputs(cls, steps: int, guidance_scale: float, shift: float, condition_strength: float) -> bool | str:
        if steps is not None and steps != DEFAULT and steps < 1:
            return f"steps {steps} is invalid: use at least 1 step, or -1 for the official 4"
        if guidance_scale is not None and guidance_scale != DEFAULT and guidance_scale < 0:
            return f"guidance_scale {guidance_scale} is invalid: use 0 or more, or -1 for the official value"
        if shift is not None and shift != DEFAULT and shift <= 0:
            return f"shift {shift} is invalid: use a value above 0, or -1 for the official 4"
        if condition_strength is not None and not 0 <= condition_strength <= 1:
            return f"condition_strength {condition_strength} is invalid: it must be in [0, 1] (official 0.25)"
        return True

    @classmethod
    def execute(
        cls, model, refiner_vae, text_encoders: TextEncoderBundle, conditioning: PromptPair, image: torch.Tensor,
        seed: int, steps: int, guidance_scale: float, shift: float, condition_strength: float, noise_mode: str,
        vae_precision: str,
    ) -> io.NodeOutput:  # fmt: skip
        dit = model.model
        check_refiner(dit)
        precision = resolve_precision(vae_precision, refiner_vae)

        management.load(text_encoders.qwen)
        prompt = encode_prompt(text_encoders.qwen.model, None, conditioning.prompt, template=REFINER_TEMPLATE)
        positive = CoreConditioning.of(prompt)

        management.load(refiner_vae)
        posterior = torch.Generator("cpu").manual_seed(_seeded(seed, POSTERIOR_SEED_OFFSET))
        latent = encode_image(refiner_vae.model, image, precision=precision, sample=True, generator=posterior)
        packed = (latent.shape[0], 2 * latent.shape[1], *latent.shape[2:])
        noise = make_noise(packed, seed, noise_mode)
        condition_noise = make_noise(packed, _seeded(seed, AUGMENT_SEED_OFFSET), "comfy")

        schedule = resolve_schedule("refiner", _or_default(steps), _or_default(shift))
        import latent_preview  # pulls in transformers via ComfyUI: keep it out of the pack's import

        management.load(model)
        progress = latent_preview.prepare_callback(model, schedule.steps)
        refined = refine(
            dit, latent, positive, noise=noise, condition_noise=condition_noise, strength=condition_strength,
            steps=_or_default(steps), shift=_or_default(shift),
            guidance_scale=_or_default(guidance_scale, variant_defaults("refiner").guidance_scale),
            callback=lambda i, total, x, x0: progress(i, x0, x, total),
        )  # fmt: skip

        management.load(refiner_vae)
        images = decode_image(refiner_vae.model, refined, precision=precision, output_device=mm.intermediate_device())
        return io.NodeOutput(images)
