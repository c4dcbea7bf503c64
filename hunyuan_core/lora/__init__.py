"""LoRA files for the HunyuanImage-2.1 DiT: which weight (and which rows of a fused weight) each module of a LoRA
written by any trainer patches (``keymap``). Never imports ComfyUI; the nodes hand the result to ComfyUI's patcher."""

from .keymap import (
    LoraMatch,
    Placement,
    Target,
    dit_lora_targets,
    foreign_family,
    lora_placements,
    match_lora,
    product_shape,
    shape_problems,
    strip_prefix,
)

__all__ = [
    "LoraMatch",
    "Placement",
    "Target",
    "dit_lora_targets",
    "foreign_family",
    "lora_placements",
    "match_lora",
    "product_shape",
    "shape_problems",
    "strip_prefix",
]
