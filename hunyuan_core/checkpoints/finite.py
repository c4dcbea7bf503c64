"""Is a tensor free of NaN and infinity: checked once per loaded tensor, in one pass over its memory.

A checkpoint with NaN in one layer (a bad conversion, a damaged download) otherwise loads without a word and turns
every image black. ``torch.aminmax`` carries NaN and infinity into its result and needs no temporary, so the check
reads each weight once (about as fast as copying it). fp8 has no min/max kernel; its NaN (and, for e5m2, infinity)
codes are the largest byte values read as signed and as unsigned integers, so two integer maxima find them.
"""

from __future__ import annotations

import torch

# Per fp8 dtype: the smallest signed and unsigned byte value that encodes NaN or infinity.
FP8_SPECIAL = {torch.float8_e4m3fn: (0x7F, 0xFF), torch.float8_e5m2: (0x7C, 0xFC)}


def is_finite(tensor: torch.Tensor) -> bool:
    """True when ``tensor`` (any float dtype, fp8 included; non-float tensors always) holds no NaN or infinity."""
    if not tensor.is_floating_point() or tensor.numel() == 0:
        return True
    if tensor.dtype in FP8_SPECIAL:
        signed, unsigned = FP8_SPECIAL[tensor.dtype]
        flat = tensor.reshape(-1)
        return bool(flat.view(torch.int8).max() < signed) and bool(flat.view(torch.uint8).max() < unsigned)
    if tensor.element_size() == 1:  # another 8-bit float (e4m3fnuz ...): no kernel to count on, convert
        tensor = tensor.float()
    low, high = torch.aminmax(tensor)
    return bool(torch.isfinite(low) & torch.isfinite(high))


def non_finite_problem(name: str, stored: torch.Tensor, loaded: torch.Tensor) -> str | None:
    """Why tensor ``name`` cannot be used (None when it can): NaN / infinity in the file itself, or values the
    chosen dtype cannot hold (``stored`` as read, ``loaded`` as cast for the model)."""
    if is_finite(loaded):
        return None
    if loaded is not stored and is_finite(stored):
        return (
            f"tensor {name} has values beyond what {str(loaded.dtype).removeprefix('torch.')} can hold; "
            "load it in bf16 or fp32 instead"
        )
    return (
        f"tensor {name} holds NaN or infinite values: the file is damaged (a broken conversion or merge, or a "
        "corrupted copy); download it again"
    )
