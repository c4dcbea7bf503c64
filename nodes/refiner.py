"""The refiner node: stage-1 IMAGE in, refined IMAGE out, the official refiner procedure end to end."""

from __future__ import annotations

import comfy.model_management as mm
import torch
from comfy_api.latest import io

from ..hunyuan_core.pipelines import RefinerSettings, refine_image
from ..hunyuan_core.pipelines.refiner import SEED_SPACE
from ..hunyuan_core.sampling import NOISE_MODES
from ..hunyuan_core.variants import BASE, DISTILLED, REFINER, REFINER_CONDITION_STRENGTH
from . import host, management, widgets
from .conditioning import prompt_of
from .finite_checks import check_image, check_step
from .model import require_pack_dit
from .types import RefinerVAE, TextEncoderBundle, TextEncoders
from .vae import AUTO, DECODE_PRECISIONS, device_precision

NODE = "HunyuanImage 2.1 Refiner"

OFFICIAL_VALUES = "the official value"


class HunyuanImage21Refiner(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return host.build(
            io.Schema,
            node_id="HunyuanImage21Refiner",
            display_name=NODE,
            category="HunyuanImage/sampling",
            description=(
                "The official second stage: re-draws the stage-1 image at the same size with the refiner DiT for "
                "sharper faces and textures. The prompt is re-encoded with the refiner's own template automatically. "
                f"Defaults are the official ones: {REFINER.steps} steps, shift {REFINER.shift:g}, guidance "
                f"{REFINER.guidance_scale:g}, condition augmentation {REFINER_CONDITION_STRENGTH:g}."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The refiner DiT, from the HunyuanImage 2.1 DiT Loader."),
                RefinerVAE.Input("refiner_vae", tooltip="From the HunyuanImage 2.1 Refiner VAE Loader (16x VAE)."),
                TextEncoders.Input("text_encoders", tooltip="The same text encoders as stage 1 (only Qwen is used)."),
                io.Conditioning.Input(
                    "positive",
                    tooltip="The stage-1 Text Encode's positive output: its prompt is re-encoded with the refiner "
                    "template.",
                ),
                io.Image.Input("image", tooltip="The stage-1 image (sides multiples of 16), e.g. from VAE Decode."),
                io.Int.Input(
                    "seed", default=0, min=0, max=SEED_SPACE - 1, control_after_generate=True,
                    tooltip="The official pipeline reuses the stage-1 seed.",
                ),
                widgets.steps_input(100, f"-1 = official ({REFINER.steps})."),
                widgets.guidance_input(
                    f"-1 = {REFINER.guidance_scale:g}. The official pipeline passes the stage-1 scale: "
                    f"{BASE.guidance_scale:g} after base, {DISTILLED.guidance_scale:g} after distilled. Embedded "
                    "guidance, no CFG.",
                ),
                widgets.shift_input(f"-1 = official ({REFINER.shift:g})."),
                host.build(
                    io.Float.Input, "condition_strength", default=REFINER_CONDITION_STRENGTH, min=0.0, max=1.0,
                    step=0.01, advanced=True,
                    tooltip=f"Noise mixed into the stage-1 latent (official {REFINER_CONDITION_STRENGTH:g}): "
                    "s*noise + (1-s)*latent. Higher lets the refiner change more.",
                ),
                widgets.combo_input(
                    "noise_mode", NOISE_MODES, default="official", advanced=True,
                    tooltip="official: the official pipeline's starting noise for the seed (bf16 draw). comfy: fp32.",
                ),
                widgets.combo_input(
                    "vae_precision", DECODE_PRECISIONS, default=AUTO, advanced=True,
                    tooltip="auto: fp16 on a GPU (as official), fp32 on the CPU.",
                ),
            ],
            outputs=[io.Image.Output(tooltip="The refined image, same size as the input.")],
            search_aliases=host.aliases("refiner", "refine", "second stage", "detailer", "hires fix"),
        )  # fmt: skip

    @classmethod
    def execute(
        cls, model, refiner_vae, text_encoders: TextEncoderBundle, positive: list, image: torch.Tensor,
        seed: int, steps: int, guidance_scale: float, shift: float, condition_strength: float, noise_mode: str,
        vae_precision: str,
    ) -> io.NodeOutput:  # fmt: skip
        widgets.require(  # ComfyUI checks the numbers' ranges (condition_strength in [0, 1]) before the run
            widgets.settings_problem(steps, guidance_scale, shift, OFFICIAL_VALUES),
            widgets.choice_problem("noise_mode", noise_mode, NOISE_MODES),
            widgets.choice_problem("vae_precision", vae_precision, DECODE_PRECISIONS),
        )
        settings = RefinerSettings(
            steps=widgets.or_official(steps), shift=widgets.or_official(shift),
            guidance_scale=widgets.or_official(guidance_scale), condition_strength=condition_strength,
            noise_mode=noise_mode, vae_precision=device_precision(vae_precision, refiner_vae),
        )  # fmt: skip
        dit = require_pack_dit(model, "the HunyuanImage 2.1 Refiner")
        prompt = prompt_of(positive)
        if prompt is None:
            raise ValueError(
                "the refiner re-encodes the stage-1 prompt with its own template: connect the positive output of the "
                "HunyuanImage 2.1 Text Encode node (this conditioning carries no prompt text)"
            )
        patchers = {
            id(dit): model,
            id(refiner_vae.model): refiner_vae,
            id(text_encoders.qwen.model): text_encoders.qwen,
        }
        import latent_preview  # pulls in transformers via ComfyUI: keep it out of the pack's import

        progress = latent_preview.prepare_callback(model, settings.schedule().steps)
        images = refine_image(
            dit, refiner_vae.model, text_encoders.qwen.model, image, prompt, seed, settings,
            prepare=lambda module: management.load(patchers[id(module)]),
            callback=lambda i, total, x, x0: (
                check_step(x, i, total, NODE, settings.vae_precision), progress(i, x0, x, total)
            ),
            output_device=mm.intermediate_device(),
        )  # fmt: skip
        check_image(images, NODE, settings.vae_precision, field="vae_precision", auto=vae_precision == AUTO)
        return io.NodeOutput(images)
