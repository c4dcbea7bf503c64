"""The pack's prompt encodings as ComfyUI's CONDITIONING, in the layout of ComfyUI's native HunyuanImage-2.1.

One entry per prompt: the Qwen hidden states as the tensor; in its dict ``attention_mask`` (only when padded),
``conditioning_byt5small`` (the ByT5 glyph states, only when the prompt quotes text), and the pack's own keys for
what native's layout has no place for (the ByT5 mask, the quoted-text flag, the prompt itself). Any node that
handles CONDITIONING (zero-out, combine, timestep ranges) passes these along.
"""

from __future__ import annotations

from typing import Any

import torch

from ..hunyuan_core.sampling import Conditioning
from ..hunyuan_core.variants import DISTILLED
from .model import BYT5_MASK, PROMPT, QUOTED_TEXT


def _padded(mask: torch.Tensor | None) -> bool:
    return mask is not None and bool((mask == 0).any())


def to_comfy(cond: Conditioning, prompt: str) -> list[list[Any]]:
    """A core ``Conditioning`` (batch 1) as a one-entry CONDITIONING list."""
    # ``guidance``: the distilled model's official embedded scale, so ComfyUI's own distilled model (whose default
    # is 6.0) samples with it too under KSampler; FluxGuidance or the pack's Guider override it, base models ignore it
    extra: dict[str, Any] = {QUOTED_TEXT: cond.has_quoted_text, PROMPT: prompt, "guidance": DISTILLED.guidance_scale}
    if _padded(cond.mllm_mask):
        extra["attention_mask"] = cond.mllm_mask
    if cond.has_byt5:
        extra["conditioning_byt5small"] = cond.byt5
        if _padded(cond.byt5_mask):
            extra[BYT5_MASK] = cond.byt5_mask
    return [[cond.mllm, extra]]


def from_comfy(conditioning: list[list[Any]]) -> Conditioning:
    """The first entry of a CONDITIONING as a core ``Conditioning`` (for the refiner's own sampling loop)."""
    if not conditioning:
        raise ValueError("the conditioning is empty: connect a HunyuanImage 2.1 Text Encode output")
    states, extra = conditioning[0]
    ones = torch.ones(states.shape[:2], dtype=torch.int64)
    byt5 = extra.get("conditioning_byt5small")
    return Conditioning(
        mllm=states,
        mllm_mask=extra.get("attention_mask", ones),
        byt5=byt5,
        byt5_mask=None if byt5 is None else extra.get(BYT5_MASK, torch.ones(byt5.shape[:2], dtype=torch.int64)),
        has_quoted_text=bool(extra.get(QUOTED_TEXT, byt5 is not None)),
    )


def prompt_of(conditioning: list[list[Any]]) -> str | None:
    """The prompt text the pack's encoder stored in a CONDITIONING (None for other encoders)."""
    return conditioning[0][1].get(PROMPT) if conditioning else None
