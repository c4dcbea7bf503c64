"""Weight patches (LoRA) on fp8 and GGUF layers, applied where the weight is expanded for compute.

ComfyUI's patcher merges a patch into a fully loaded weight once (``patch_weight_to_device``): it casts the stored
weight to float32, adds the change and rounds it back to the stored dtype. For the pack's quantized layers that
would be wrong (an fp8 weight with a scale would be rounded without it; GGUF block bytes are not a float weight at
all) or would need a full-precision copy of every patched weight. The pack's patcher therefore hands such a layer
its patches instead (``ExpandedWeightPatch``), with the patch tensors moved to the layer's device once, and the
layer applies them to the weight it expands for each forward (a plain LoRA as one in-place low-rank update, no
weight-sized temporary): the stored bytes never change, so unpatching is only dropping the patch. In ComfyUI's
low-VRAM mode (patches as the layer's ``weight_function``) the layer applies each weight's patches once, whichever
way they came.
"""

from __future__ import annotations

import copy
import functools

import comfy.lora
import comfy.model_management as mm
import torch

from ..hunyuan_core.checkpoints.quantized import QuantizedWeights
from .lora_keys import swap_halves


def _moved(value, device: torch.device):
    """A patch value (ComfyUI's weight adapters, ``("diff", (tensor,))`` tuples, nested lists) with its tensors on
    ``device``; the original is left untouched, since other patchers share it."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=mm.device_supports_non_blocking(device))
    if isinstance(value, (tuple, list)):
        return type(value)(_moved(v, device) for v in value)
    weights = getattr(value, "weights", None)
    if isinstance(weights, (tuple, list)):  # a comfy.weight_adapter adapter: its factors live in ``weights``
        moved = copy.copy(value)
        moved.weights = _moved(weights, device)
        return moved
    return value


def _low_rank(patch: tuple, rows: int, columns: int) -> tuple | None:
    """``(up, down, scale, offset, swap)`` when ``patch`` is a plain LoRA (ComfyUI's ``LoRAAdapter`` with no mid,
    DoRA or reshape, no model strength, rows and columns that fit), else None. Anything else (LoHa, LoKr, DoRA, a
    layout of the adapter this code does not know) goes through ComfyUI's own ``calculate_weight``."""
    strength, value, strength_model, offset, function = patch
    weights = getattr(value, "weights", None)
    if type(value).__name__ != "LoRAAdapter" or not isinstance(weights, (tuple, list)) or len(weights) != 6:
        return None
    up, down, alpha, mid, dora_scale, reshape = weights
    if strength_model != 1.0 or function not in (None, swap_halves) or (mid, dora_scale, reshape) != (None,) * 3:
        return None
    if not (isinstance(up, torch.Tensor) and isinstance(down, torch.Tensor) and up.ndim == down.ndim == 2):
        return None
    want_rows = rows if offset is None else offset[2]
    if offset is not None and offset[0] != 0:
        return None
    if up.shape[1] != down.shape[0] or (up.shape[0], down.shape[1]) != (want_rows, columns):
        return None
    scale = strength * (1.0 if alpha is None else float(alpha) / down.shape[0])
    return up, down, scale, offset, function is swap_halves


class ExpandedWeightPatch:
    """One weight's patches, applied to a freshly expanded weight (this forward's own copy).

    Plain LoRAs, the common case, are added in place, ``W += scale * up @ down`` on the rows they patch
    (``add_product``: no weight-sized temporary, one rounding). Every other patch kind goes through
    ComfyUI's ``calculate_weight`` in float32, as ComfyUI merges, and comes back in the weight's dtype.
    """

    def __init__(self, key: str, patches: list, device: torch.device | None, shape: tuple[int, int]) -> None:
        self.key = key
        self.patches = {key: patches if device is None else [_moved(p, device) for p in patches]}
        plain = [_low_rank(p, *shape) for p in self.patches[key]]
        self.plain = None if any(p is None for p in plain) else plain  # read once: the patches never change

    def __call__(self, weight: torch.Tensor) -> torch.Tensor:
        if self.plain is None:
            merged = comfy.lora.calculate_weight(self.patches[self.key], weight.float(), self.key)
            return merged.to(weight.dtype)
        for up, down, scale, offset, swap in self.plain:
            target = weight if offset is None else weight.narrow(0, offset[1], offset[2])
            if swap:  # diffusers' halves: the product's second half is the weight's first, and the other way round
                half = target.shape[0] // 2
                add_product(target[:half], up[half:], down, scale)
                add_product(target[half:], up[:half], down, scale)
            else:
                add_product(target, up, down, scale)
        return weight


CHUNK_ELEMENTS = 1 << 22  # a float32 slice of the product at a time: 16 MB, whatever the layer's size


def add_product(target: torch.Tensor, up: torch.Tensor, down: torch.Tensor, scale: float) -> None:
    """``target += scale * up @ down`` in place, the product made in float32 (as ComfyUI makes it) a slice of rows
    at a time: no weight-sized temporary, one rounding into ``target``'s dtype, fast float32 matmuls on a CPU."""
    down = down.to(target.device, torch.float32)
    step = max(1, CHUNK_ELEMENTS // max(1, target.shape[1]))
    for start in range(0, target.shape[0], step):
        part = up[start : start + step].to(target.device, torch.float32) @ down
        target[start : start + step].add_(part, alpha=scale)


def layer_patches(layer: torch.nn.Module) -> list:
    """The weight patches a quantized layer applies: ComfyUI's ``weight_function`` list, plus the pack patcher's
    own patch unless a function for the same weight is already in that list (never twice)."""
    functions = list(getattr(layer, "weight_function", ()))
    own = getattr(layer, "expanded_weight_patch", None)
    if own is not None and all(getattr(f, "key", None) != own.key for f in functions):
        functions.append(own)
    return functions


class QuantizedPatching:
    """Mixed into ComfyUI's patcher class: quantized layers get their patches handed over, everything else is
    patched exactly as the host patches it."""

    def _quantized_layer(self, key: str) -> QuantizedWeights | None:
        module_name, _, leaf = key.rpartition(".")
        if leaf != "weight":
            return None
        try:
            layer = self.model.get_submodule(module_name)
        except AttributeError:
            return None
        return layer if isinstance(layer, QuantizedWeights) else None

    def patch_weight_to_device(self, key, device_to=None, inplace_update=False):
        layer = self._quantized_layer(key)
        if layer is None:
            return super().patch_weight_to_device(key, device_to=device_to, inplace_update=inplace_update)
        patches = self.patches.get(key)
        shape = (layer.out_features, layer.in_features)
        layer.expanded_weight_patch = None if not patches else ExpandedWeightPatch(key, patches, device_to, shape)
        return None

    def unpatch_model(self, device_to=None, unpatch_weights=True):
        result = super().unpatch_model(device_to=device_to, unpatch_weights=unpatch_weights)
        if unpatch_weights:
            for module in self.model.modules():
                if isinstance(module, QuantizedWeights):
                    module.expanded_weight_patch = None
        return result


@functools.cache
def with_quantized_patching(patcher_class: type) -> type:
    """``patcher_class`` (the host's ModelPatcher or what it rebinds it to) with ``QuantizedPatching`` mixed in;
    one class per host class, so ComfyUI's ``clone`` (``self.__class__(...)``) keeps it."""
    return type(f"HunyuanImage21{patcher_class.__name__}", (QuantizedPatching, patcher_class), {})
