"""Name what a checkpoint file appears to be, from its keys and shapes, for error messages.

Every loader in the core refuses files that are not what it expects; this module gives those refusals a useful
second half ("... it appears to be a VAE").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

ShapeOf = Callable[[str], tuple[int, ...]]


def _first(keys: Iterable[str], pattern: str) -> str | None:
    rx = re.compile(pattern)
    return next((k for k in keys if rx.search(k)), None)


def describe_checkpoint(keys: list[str], shape_of: ShapeOf | None = None) -> str:
    """A short description such as 'a VAE' or 'a text encoder (CLIP)'."""
    if not keys:
        return "an empty checkpoint"

    def has(pattern: str) -> bool:
        return _first(keys, pattern) is not None

    def width(pattern: str, dim: int) -> int | None:
        key = _first(keys, pattern)
        if key is None or shape_of is None:
            return None
        shape = shape_of(key)
        return shape[dim] if len(shape) > dim else None

    if has(r"individual_token_refiner\.") and has(r"double_blocks\.\d+\.") and not has(r"(^|\.)vector_in\."):
        return "a HunyuanImage-2.1 diffusion model (DiT)"
    if has(r"context_embedder\.token_refiner\.") and has(r"transformer_blocks\.\d+\."):
        return "a HunyuanImage-2.1 diffusion model (DiT, diffusers layout)"
    if has(r"(^|\.)decoder\.conv_in\.") or has(r"(^|\.)encoder\.down\.\d") or has(r"(^|\.)encoder\.down_blocks\.\d"):
        return "a VAE"
    if has(r"input_blocks\.\d+\.\d+\.") and has(r"output_blocks\."):
        return "a Stable Diffusion / SDXL UNet checkpoint"
    if has(r"(^|\.)text_model\.encoder\.layers\.\d+\.") or has(r"(^|\.)transformer\.resblocks\.\d+\."):
        return "a text encoder (CLIP)"
    if has(r"(^|\.)block\.\d+\.layer\.\d+\.SelfAttention\.") or has(r"(^|\.)shared\.weight$"):
        d_model = width(r"(^|\.)block\.0\.layer\.0\.SelfAttention\.q\.weight$", 1)
        if d_model == 4096:
            return "a text encoder (T5-XXL)"
        return f"a text encoder (T5 / ByT5{f', width {d_model}' if d_model else ''})"
    if has(r"(^|\.)layers\.\d+\.self_attn\.q_proj\.") or has(r"(^|\.)embed_tokens\.weight$"):
        return "a text encoder (a decoder-only language model such as Qwen2.5-VL or Llama)"
    if has(r"double_blocks\.\d+\.") and has(r"(^|\.)vector_in\.") and has(r"individual_token_refiner"):
        return "a HunyuanVideo transformer"
    if has(r"double_blocks\.\d+\.") and (has(r"(^|\.)img_in\.weight$") or has(r"(^|\.)txt_in\.weight$")):
        return "a Flux-style transformer"
    if has(r"(^|\.)transformer_blocks\.\d+\."):
        return "a diffusers transformer of another model"
    return f"an unknown checkpoint ({len(keys)} tensors, e.g. {sorted(keys)[0]!r})"
