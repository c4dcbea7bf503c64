"""The sampler node: the official flow-matching Euler loop with CFG->APG, or distilled guidance with MeanFlow."""

from __future__ import annotations

import comfy.model_management as mm
from comfy_api.latest import io

from ..hunyuan_core.sampling import (
    NOISE_MODES,
    make_noise,
    resolve_schedule,
    sample,
    to_model_space,
    to_vae_space,
    variant_defaults,
)
from . import management
from .types import Conditioning, DiTModel, PromptPair

AUTO = "auto"
GUIDANCE_MODES = [AUTO, "official", "cfg", "apg", "distilled"]


DEFAULT = -1  # on the steps, guidance and shift widgets: "the loaded model's official value"


def _or_default(value: float, default: float | None = None) -> float | None:
    return default if value == DEFAULT else value


class HunyuanImage21Sampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="HunyuanImage21Sampler",
            display_name="HunyuanImage 2.1 Sampler",
            category="HunyuanImage/sampling",
            description=(
                "Samples exactly as the official pipeline. Leave steps, guidance and shift at -1 for the loaded "
                "model's official values (base 50 steps / 3.5 / shift 5 with the CFG->APG mix; distilled 8 / 3.25 / "
                "shift 4 with guidance embedding and MeanFlow), so one workflow serves both."
            ),
            inputs=[
                DiTModel.Input("model", tooltip="From the HunyuanImage 2.1 DiT Loader; its variant sets the defaults."),
                Conditioning.Input("conditioning", tooltip="From the HunyuanImage 2.1 Text Encode node."),
                io.Latent.Input("latent", tooltip="An empty latent, or an encoded image with denoise < 1."),
                io.Int.Input(
                    "seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                    tooltip="Same seed, same image; with noise_mode 'official' the official pipeline's seed.",
                ),
                io.Int.Input(
                    "steps", default=DEFAULT, min=DEFAULT, max=1000,
                    tooltip="-1 = the model's official count (base 50, distilled 8). Fewer is faster but rougher.",
                ),
                io.Float.Input(
                    "guidance_scale", default=DEFAULT, min=DEFAULT, max=30.0, step=0.05, round=0.01,
                    tooltip="-1 = official (base 3.5, distilled 3.25). Higher follows the prompt harder.",
                ),
                io.Float.Input(
                    "shift", default=DEFAULT, min=DEFAULT, max=100.0, step=0.1, round=0.01,
                    tooltip="-1 = official (base 5, distilled 4). Higher spends more steps on coarse structure.",
                ),
                io.Combo.Input(
                    "guidance_mode", options=GUIDANCE_MODES, default=AUTO,
                    tooltip=(
                        "auto: official for base (CFG, then APG from step 6, or 39 with quoted text), embedded "
                        "for distilled. cfg/apg: one method throughout (base only)."
                    ),
                ),
                io.Float.Input(
                    "denoise", default=1.0, min=0.01, max=1.0, step=0.01,
                    tooltip="1 for text-to-image. Below 1 keeps that much of the input latent's structure (img2img).",
                ),
                io.Combo.Input(
                    "noise_mode", options=list(NOISE_MODES), default="official",
                    tooltip="official: the official pipeline's noise (bf16 draw). comfy: ComfyUI's fp32 draw.",
                ),
                io.Sigmas.Input("sigmas", optional=True, tooltip="Custom sigmas; override steps, shift, denoise."),
            ],
            outputs=[io.Latent.Output(tooltip="The denoised latent, ready for VAE decode.")],
        )  # fmt: skip

    @classmethod
    def validate_inputs(cls, steps: int, guidance_scale: float, shift: float, denoise: float) -> bool | str:
        """Refuse impossible settings before the prompt runs (-1 means 'model default')."""
        if steps is not None and steps != DEFAULT and steps < 1:
            return f"steps {steps} is invalid: use at least 1 step, or -1 for the model's official count"
        if guidance_scale is not None and guidance_scale != DEFAULT and guidance_scale < 0:
            return f"guidance_scale {guidance_scale} is invalid: use 0 or more, or -1 for the model's official value"
        if shift is not None and shift != DEFAULT and shift <= 0:
            return f"shift {shift} is invalid: use a value above 0, or -1 for the model's official value"
        if denoise is not None and not 0 < denoise <= 1:
            return f"denoise {denoise} is invalid: it must be in (0, 1]"
        return True

    @classmethod
    def execute(
        cls, model, conditioning: PromptPair, latent: dict, seed: int, steps: int, guidance_scale: float,
        shift: float, guidance_mode: str, denoise: float, noise_mode: str, sigmas=None,
    ) -> io.NodeOutput:  # fmt: skip
        dit = model.model
        variant = dit.cfg.variant
        samples = latent["samples"]
        if variant == "refiner":
            raise ValueError(
                "the loaded DiT is the refiner: it refines a finished image rather than sampling a latent; use it "
                "in the HunyuanImage 2.1 Refiner node, and load the base or distilled DiT for this sampler"
            )
        if samples.ndim != 4 or samples.shape[1] != dit.cfg.out_channels:
            raise ValueError(
                f"the latent has shape {tuple(samples.shape)}, but the {variant} model needs "
                f"[B, {dit.cfg.out_channels}, H/32, W/32]: use the HunyuanImage 2.1 Empty Latent or its VAE Encode"
            )
        steps_arg = _or_default(steps)
        schedule = resolve_schedule(
            variant, None if sigmas is not None else steps_arg, _or_default(shift), sigmas,
            denoise if sigmas is None else 1.0,
        )  # fmt: skip
        batch_offset = min(latent.get("batch_index", [0]))
        noise = make_noise(samples.shape, seed, noise_mode, batch_offset)
        import latent_preview  # imports ComfyUI's text-encoder stack (transformers): keep it out of pack import

        management.load(model)
        preview = latent_preview.prepare_callback(model, schedule.steps)
        out = sample(
            dit, noise, conditioning.positive, conditioning.negative,
            steps=None if sigmas is not None else steps_arg, shift=_or_default(shift),
            guidance_scale=_or_default(guidance_scale, variant_defaults(variant).guidance_scale),
            mode=None if guidance_mode == AUTO else guidance_mode,
            sigmas=sigmas, denoise=denoise if sigmas is None else 1.0,
            latent=to_model_space(samples.float()) if denoise < 1 and sigmas is None else None,
            callback=lambda i, total, x, x0: preview(i, x0, x, total),
        )  # fmt: skip
        result = dict(latent)
        result.pop("noise_mask", None)
        result["samples"] = to_vae_space(out).to(mm.intermediate_device())
        return io.NodeOutput(result)
