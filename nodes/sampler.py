"""The sampler node: the official sampling in one node, run as the pack's guider + official sigmas + ComfyUI's euler.

There is one sampling path: this node builds what the Guider and Scheduler nodes build and hands them to
ComfyUI's own sampler, so model patches, previews, interrupts and inpainting masks behave as with KSampler.
"""

from __future__ import annotations

import comfy.model_management as mm
import torch
from comfy_api.latest import io

from ..hunyuan_core.memory import largest_square, step_activation_bytes
from ..hunyuan_core.resolution import SPATIAL_COMPRESSION
from ..hunyuan_core.sampling import NOISE_MODES, make_noise, plan_sampling
from ..hunyuan_core.variants import BASE, DISTILLED, STAGE1_LATENT
from . import host, management, widgets
from .finite_checks import check_latent
from .guider import HunyuanGuider, sample_with_guider
from .model import pack_dit, patched_shift, stage1_variant

OFFICIAL_VALUES = "the model's official value"


def fits_on_device(model, samples: torch.Tensor, positive: list) -> str | None:
    """Refuse a size whose DiT step cannot fit the device even with every weight streamed, naming the largest square
    that fits; for a large one that fits, the estimate to show on the node."""
    dit = pack_dit(model)
    if dit is None:  # ComfyUI's own model: ComfyUI's own estimate applies
        return None
    rows, columns = samples.shape[-2:]
    text = max((c[0].shape[1] for c in positive), default=0)
    dtype_bytes = dit.compute_dtype.itemsize
    need = step_activation_bytes(dit.config, rows * columns, text, 1, dtype_bytes)
    device = model.load_device
    side = largest_square(dit.config, mm.get_total_memory(device), text, 1, dtype_bytes)
    subject = f"a DiT step at {columns * SPATIAL_COMPRESSION}x{rows * SPATIAL_COMPRESSION} (its activations)"
    fix = f"use a smaller size (the largest square that fits is {side}x{side}; the official sizes are 2K)"
    return management.memory_note(need, device, subject, fix)


def check_stage1_latent(variant: str, samples) -> None:
    """Refuse latents of the wrong shape, naming the node that makes the right one."""
    channels = STAGE1_LATENT.channels
    if samples.ndim != 4 or samples.shape[1] != channels:
        raise ValueError(
            f"the latent has shape {tuple(samples.shape)}, but the {variant} model needs "
            f"[B, {channels}, H/32, W/32]: use the HunyuanImage 2.1 Empty Latent or its VAE Encode"
        )


class HunyuanImage21Sampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return host.build(
            io.Schema,
            node_id="HunyuanImage21Sampler",
            display_name="HunyuanImage 2.1 Sampler",
            category="HunyuanImage/sampling",
            description=(
                "Samples exactly as the official pipeline. Leave steps, guidance and shift at -1 for the loaded "
                f"model's official values (base {BASE.describe_defaults()} with the CFG->APG mix; distilled "
                f"{DISTILLED.describe_defaults()} with guidance embedding and MeanFlow), so one workflow serves both."
            ),
            inputs=[
                io.Model.Input("model", tooltip="From the HunyuanImage 2.1 DiT Loader; its variant sets the defaults."),
                io.Conditioning.Input("positive", tooltip="From the HunyuanImage 2.1 Text Encode node."),
                io.Conditioning.Input(
                    "negative", optional=True,
                    tooltip="The negative prompt (the base model's second pass; the distilled model ignores it).",
                ),
                io.Latent.Input("latent", tooltip="An empty latent, or an encoded image with denoise < 1."),
                io.Int.Input(
                    "seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                    tooltip="Same seed, same image; with noise_mode 'official' the official pipeline's seed.",
                ),
                widgets.steps_input(
                    1000, f"-1 = the model's official count (base {BASE.steps}, distilled {DISTILLED.steps}). "
                    "Fewer is faster but rougher.",
                ),
                widgets.guidance_input(
                    f"-1 = official (base {BASE.guidance_scale:g}, distilled {DISTILLED.guidance_scale:g}). "
                    "Higher follows the prompt harder.",
                ),
                widgets.shift_input(
                    f"-1 = official (base {BASE.shift:g}, distilled {DISTILLED.shift:g}), or the shift of a "
                    "ModelSamplingSD3 / AuraFlow patch on the model. Higher spends more steps on coarse structure.",
                ),
                widgets.guidance_mode_input(
                    "auto: official for base (CFG, then APG from step 6, or 39 with quoted text), embedded for "
                    "distilled. cfg/apg: one method throughout (base only)."
                ),
                widgets.apg_start_input(),
                io.Float.Input(
                    "denoise", default=1.0, min=0.01, max=1.0, step=0.01,
                    tooltip="1 for text-to-image. Below 1 keeps that much of the input latent's structure (img2img).",
                ),
                widgets.combo_input(
                    "noise_mode", NOISE_MODES, default="official", advanced=True,
                    tooltip="official: the official pipeline's noise (bf16 draw). comfy: ComfyUI's fp32 draw.",
                ),
                io.Sigmas.Input("sigmas", optional=True, tooltip="Custom sigmas; override steps, shift, denoise."),
            ],
            outputs=[io.Latent.Output(tooltip="The denoised latent, ready for VAE decode.")],
            search_aliases=host.aliases("ksampler", "sampler", "apg", "meanflow", "text to image"),
            hidden=[io.Hidden.unique_id],  # to show a large size's memory estimate on the node
        )  # fmt: skip

    @classmethod
    def validate_inputs(cls, apg_start: str | None = None) -> bool | str:
        """apg_start is free text: parsed before the run. ComfyUI checks the numbers' ranges itself."""
        return widgets.verdict(widgets.apg_start_problem(apg_start))

    @classmethod
    def execute(
        cls, model, positive: list, latent: dict, seed: int, steps: int, guidance_scale: float, shift: float,
        guidance_mode: str, apg_start: str, denoise: float, noise_mode: str, negative: list | None = None, sigmas=None,
    ) -> io.NodeOutput:  # fmt: skip
        widgets.require(
            widgets.settings_problem(steps, guidance_scale, shift, OFFICIAL_VALUES),
            widgets.choice_problem("guidance_mode", guidance_mode, widgets.GUIDANCE_MODES),
            widgets.choice_problem("noise_mode", noise_mode, NOISE_MODES),
        )
        variant = stage1_variant(model, "the HunyuanImage 2.1 Sampler")
        samples = latent["samples"]
        check_stage1_latent(variant, samples)
        check_latent(samples, "HunyuanImage 2.1 Sampler")
        note = fits_on_device(model, samples, positive)
        if note:
            host.show_text(cls.hidden.unique_id, note)
        custom = sigmas is not None
        plan = plan_sampling(
            variant, steps=None if custom else widgets.or_official(steps),
            shift=widgets.or_official(shift) or patched_shift(model), sigmas=sigmas, denoise=1.0 if custom else denoise,
            mode=widgets.guidance_mode_of(guidance_mode), guidance_scale=widgets.or_official(guidance_scale),
            apg_start=widgets.apg_start_of(apg_start),
        )  # fmt: skip
        guider = HunyuanGuider(model, plan.guidance, offset=plan.schedule.offset)
        guider.set_conds(positive, negative)
        noise = make_noise(samples.shape, seed, noise_mode, min(latent.get("batch_index", [0])))
        import latent_preview  # imports ComfyUI's text-encoder stack (transformers): keep it out of pack import

        preview = latent_preview.prepare_callback(model, plan.schedule.steps)
        out = sample_with_guider(guider, noise, latent, plan.schedule.sigmas, seed, preview)
        result = dict(latent)
        result.pop("noise_mask", None)
        result["samples"] = out.to(mm.intermediate_device())
        return io.NodeOutput(result)
