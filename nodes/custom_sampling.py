"""The official guidance and schedule as ComfyUI's GUIDER and SIGMAS, for SamplerCustomAdvanced.

With ComfyUI's ``euler`` sampler (KSamplerSelect) and RandomNoise, they reproduce the pack's sampler node; any other
ComfyUI sampler, noise or sigma node can be swapped in.
"""

from __future__ import annotations

from comfy_api.latest import io

from ..hunyuan_core.sampling import guidance_for, plan_sampling
from ..hunyuan_core.variants import BASE, DISTILLED
from . import host, widgets
from .guider import HunyuanGuider
from .model import patched_shift, stage1_variant
from .sampler import OFFICIAL_VALUES


class HunyuanImage21Guider(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return host.build(
            io.Schema,
            node_id="HunyuanImage21Guider",
            display_name="HunyuanImage 2.1 Guider",
            category="HunyuanImage/sampling",
            description=(
                "The official guidance as a GUIDER for SamplerCustomAdvanced: for the base model CFG then APG (the "
                "switch step follows the official rule, later when the prompt quotes text), for the distilled model "
                "its embedded guidance with MeanFlow. Use with the HunyuanImage 2.1 Scheduler and the euler sampler "
                "for the official result."
            ),
            inputs=[
                io.Model.Input("model", tooltip="From the HunyuanImage 2.1 DiT Loader (base or distilled)."),
                io.Conditioning.Input("positive", tooltip="From the HunyuanImage 2.1 Text Encode node."),
                io.Conditioning.Input(
                    "negative", optional=True, tooltip="The negative prompt (base model; the distilled one ignores it)."
                ),
                widgets.guidance_input(
                    f"-1 = official (base {BASE.guidance_scale:g}, distilled {DISTILLED.guidance_scale:g})."
                ),
                widgets.guidance_mode_input(
                    "auto: official for the model. cfg/apg: one method throughout (base only)."
                ),
                widgets.apg_start_input(),
            ],
            outputs=[io.Guider.Output(tooltip="For SamplerCustomAdvanced.")],
            search_aliases=host.aliases("guider", "cfg guider", "apg", "custom sampler"),
        )  # fmt: skip

    @classmethod
    def validate_inputs(cls, apg_start: str | None = None) -> bool | str:
        return widgets.verdict(widgets.apg_start_problem(apg_start))

    @classmethod
    def execute(
        cls, model, positive: list, guidance_scale: float, guidance_mode: str, apg_start: str,
        negative: list | None = None,
    ) -> io.NodeOutput:  # fmt: skip
        widgets.require(
            widgets.settings_problem(None, guidance_scale, None, OFFICIAL_VALUES),
            widgets.choice_problem("guidance_mode", guidance_mode, widgets.GUIDANCE_MODES),
        )
        variant = stage1_variant(model, "the HunyuanImage 2.1 Guider")
        guidance = guidance_for(
            variant, widgets.guidance_mode_of(guidance_mode), widgets.or_official(guidance_scale),
            apg_start=widgets.apg_start_of(apg_start),
        )  # fmt: skip
        guider = HunyuanGuider(model, guidance)
        guider.set_conds(positive, negative)
        return io.NodeOutput(guider)


class HunyuanImage21Scheduler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return host.build(
            io.Schema,
            node_id="HunyuanImage21Scheduler",
            display_name="HunyuanImage 2.1 Scheduler",
            category="HunyuanImage/sampling",
            description=(
                "The official sigmas for the connected model: shifted flow-matching steps from 1 to 0 (base "
                f"{BASE.steps} steps at shift {BASE.shift:g}, distilled {DISTILLED.steps} at {DISTILLED.shift:g})."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The model whose official step count and shift are the defaults."),
                widgets.steps_input(1000, f"-1 = official (base {BASE.steps}, distilled {DISTILLED.steps})."),
                widgets.shift_input(
                    f"-1 = official (base {BASE.shift:g}, distilled {DISTILLED.shift:g}), or the shift of a "
                    "ModelSamplingSD3 / AuraFlow patch on the model."
                ),
            ],
            outputs=[io.Sigmas.Output(tooltip="For SamplerCustomAdvanced (or SplitSigmas for img2img).")],
            search_aliases=host.aliases("scheduler", "sigmas", "basic scheduler", "flow shift"),
        )  # fmt: skip

    @classmethod
    def execute(cls, model, steps: int, shift: float) -> io.NodeOutput:
        widgets.require(widgets.settings_problem(steps, None, shift, OFFICIAL_VALUES))
        variant = stage1_variant(model, "the HunyuanImage 2.1 Scheduler")
        shift = widgets.or_official(shift) or patched_shift(model)
        plan = plan_sampling(variant, steps=widgets.or_official(steps), shift=shift)
        return io.NodeOutput(plan.schedule.sigmas)
