"""The pack's own wire types, for what ComfyUI has no type for: the text-encoder pair, the pack's two VAEs and the
prompt enhancer.

The DiT travels as ComfyUI's MODEL (``nodes/model.py``), prompts as CONDITIONING (``nodes/conditioning.py``) and
the guidance as GUIDER (``nodes/guider.py``), so any ComfyUI node can sit between the pack's nodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from comfy_api.latest import io

TextEncoders = io.Custom("HY21_TEXT_ENCODERS")
VAE = io.Custom("HY21_VAE")
RefinerVAE = io.Custom("HY21_REFINER_VAE")
PromptEnhancer = io.Custom("HY21_PROMPT_ENHANCER")  # a ModelPatcher of hunyuan_core.text.enhancer.PromptEnhancer


@dataclass
class TextEncoderBundle:
    """The Qwen prompt encoder and the (optional) ByT5 glyph encoder, each under ComfyUI's model management."""

    qwen: Any  # ModelPatcher of hunyuan_core.text.qwen.QwenPromptEncoder
    glyph: Any | None  # ModelPatcher of hunyuan_core.text.byt5.GlyphEncoder
