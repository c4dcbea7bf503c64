"""The step-cache node: an opt-in model patch that skips DiT forwards whose output would barely change.

The node puts the settings in the MODEL's ``transformer_options`` and an OUTER_SAMPLE wrapper on it; the wrapper
gives every sampling run (the pack's Sampler, ComfyUI's KSampler or SamplerCustom with any guider) a fresh
``StepCache``, and the pack's diffusion model hands it to the DiT with the step and the prompts (ComfyUI's cond
uuids) of each forward. The decision itself is ``hunyuan_core.dit.step_cache``'s.
"""

from __future__ import annotations

import logging
from typing import Any

import comfy.model_patcher
import comfy.patcher_extension
from comfy_api.latest import io

from ..hunyuan_core.dit.step_cache import CALIBRATED, StepCache, StepCacheSettings
from . import host
from .model import STEP_CACHE as OPTIONS_KEY
from .model import pack_dit, stage1_variant

log = logging.getLogger(__name__)

NODE = "HunyuanImage 2.1 Step Cache"
CALIBRATED_VALUE = -1.0


def run_with_cache(executor: Any, *args: Any, **kwargs: Any) -> Any:
    """OUTER_SAMPLE wrapper: a fresh cache for this run in a copy of the guider's options, its outcome logged."""
    guider = executor.class_obj
    original = guider.model_options
    options = comfy.model_patcher.create_model_options_clone(original)
    transformer_options = options.setdefault("transformer_options", {})
    settings = transformer_options.get(OPTIONS_KEY)
    if not isinstance(settings, StepCacheSettings):
        return executor(*args, **kwargs)
    cache = StepCache(settings)
    transformer_options[OPTIONS_KEY] = cache
    guider.model_options = options
    try:
        return executor(*args, **kwargs)
    finally:
        guider.model_options = original
        log.info("HunyuanImage-2.1 step cache (%s): %s", settings.describe(), cache.stats.describe())


def resolved_settings(variant: str, threshold: float, start: float, end: float) -> StepCacheSettings:
    """The node's widgets as settings: -1 takes the value calibrated for ``variant``."""
    calibrated = CALIBRATED[variant]

    def pick(value: float, default: float) -> float:
        return default if value == CALIBRATED_VALUE else value

    return StepCacheSettings(
        pick(threshold, calibrated.threshold), pick(start, calibrated.start), pick(end, calibrated.end)
    )


def fraction_input(name: str, tooltip: str) -> io.Float.Input:
    return io.Float.Input(name, default=CALIBRATED_VALUE, min=CALIBRATED_VALUE, max=1.0, step=0.01, tooltip=tooltip)


class HunyuanImage21StepCache(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        base, distilled = CALIBRATED["base"], CALIBRATED["distilled"]
        return host.build(
            io.Schema,
            node_id="HunyuanImage21StepCache",
            display_name=NODE,
            category="HunyuanImage/model patches",
            description=(
                "Opt-in speed-up, not the official sampling: skips a DiT forward when the first block's input has "
                "changed little since the last computed one, reusing what the blocks added then. The negative and "
                "positive prompt of a step are skipped together. Leave the values at -1 for the ones calibrated "
                f"for the loaded model (base: {base.describe()}; distilled: {distilled.describe()}). The log says "
                "how many steps each run skipped."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The base or distilled MODEL from the HunyuanImage 2.1 DiT Loader."),
                io.Float.Input(
                    "threshold",
                    default=CALIBRATED_VALUE,
                    min=CALIBRATED_VALUE,
                    max=10.0,
                    step=0.01,
                    tooltip="-1 = calibrated for the model. How much the input may change, summed over skipped "
                    "steps, before a forward runs again: higher skips more and strays further; 0 skips nothing.",
                ),
                fraction_input("start", "-1 = calibrated. The share of the steps that always runs first."),
                fraction_input("end", "-1 = calibrated. Steps from this share of the run on always run."),
            ],
            outputs=[io.Model.Output(display_name="model", tooltip="The MODEL with step caching on.")],
            search_aliases=host.aliases("teacache", "easycache", "magcache", "cache", "speed up"),
        )

    @classmethod
    def execute(cls, model: Any, threshold: float, start: float, end: float) -> io.NodeOutput:
        variant = stage1_variant(model, NODE)
        if pack_dit(model) is None:
            raise ValueError(
                f"{NODE} works on the DiT from the HunyuanImage 2.1 DiT Loader; for ComfyUI's own HunyuanImage-2.1 "
                "model use ComfyUI's EasyCache node"
            )
        settings = resolved_settings(variant, threshold, start, end)
        patched = model.clone()
        patched.model_options.setdefault("transformer_options", {})[OPTIONS_KEY] = settings
        patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, OPTIONS_KEY, run_with_cache)
        log.info("HunyuanImage-2.1 step cache on the %s model: %s", variant, settings.describe())
        return io.NodeOutput(patched)
