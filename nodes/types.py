"""The pack's own wire types: these objects only travel between the pack's nodes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from comfy_api.latest import io

DiTModel = io.Custom("HY21_DIT")
TextEncoders = io.Custom("HY21_TEXT_ENCODERS")
Conditioning = io.Custom("HY21_CONDITIONING")
VAE = io.Custom("HY21_VAE")
RefinerVAE = io.Custom("HY21_REFINER_VAE")


@dataclass
class TextEncoderBundle:
    """The Qwen prompt encoder and the (optional) ByT5 glyph encoder, each under ComfyUI's model management."""

    qwen: Any  # ModelPatcher of hunyuan_core.text.qwen.QwenPromptEncoder
    glyph: Any | None  # ModelPatcher of hunyuan_core.text.byt5.GlyphEncoder


@dataclass
class PromptPair:
    """What the text-encode node outputs: the positive and negative conditioning (hunyuan_core Conditioning).

    ``prompt`` is the positive prompt as encoded (dynamic prompts resolved): the refiner re-encodes it with its own
    template, so one prompt box serves both stages.
    """

    positive: Any
    negative: Any
    prompt: str = ""
