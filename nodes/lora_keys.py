"""LoRA key names for the pack's DiT in ComfyUI's own LoRA loaders (``LoraLoader``, ``LoraLoaderModelOnly``, hook
LoRAs).

ComfyUI decides where each module of a LoRA file goes with ``comfy.lora.model_lora_keys_unet``, which knows one
family per ``isinstance`` branch and has no entry point for a model it does not ship. For the pack's model it
covers only two spellings (``lora_unet_<official name>`` and ``diffusion_model.<official name>``). The pack adds
the others (sd-scripts' split q/k/v and ComfyUI-converted names, PEFT with ComfyUI's internal names, diffusers'
names with their parts of fused weights, wrapper prefixes) by wrapping that function once: the host's result is
kept as it is, and entries are added only for the pack's model and only where the host has none. Parts of a fused
weight use ComfyUI's own ``(key, (dim, offset, length))`` patch keys; diffusers' swapped final modulation uses
ComfyUI's patch ``function`` slot.
"""

from __future__ import annotations

import functools
import logging

import comfy.lora
import torch

from ..hunyuan_core.dit.config import DiTConfig
from ..hunyuan_core.lora import Placement, lora_placements

log = logging.getLogger(__name__)

PREFIX = "diffusion_model."  # where ComfyUI's BaseModel keeps the diffusion model's weights


def swap_halves(diff: torch.Tensor) -> torch.Tensor:
    """A weight change for diffusers' final modulation (shift, scale) in the official order (scale, shift)."""
    half = diff.shape[0] // 2
    return torch.cat((diff[half:], diff[:half]))


def patch_key(placement: Placement) -> str | tuple:
    """ComfyUI's patch key for one placement: the weight's name, with the rows (dim 0, offset, length) for a part
    of a fused weight, or ``swap_halves`` as the patch's function."""
    key = PREFIX + placement.param
    if placement.swap_halves:
        return (key, None, swap_halves)
    if placement.rows is not None:
        return (key, (0, *placement.rows))
    return key


@functools.cache
def pack_key_map(cfg: DiTConfig) -> dict[str, str | tuple]:
    """Every LoRA module name (as files spell it) -> ComfyUI's patch key, for a DiT of this config."""
    return {name: patch_key(placement) for name, placement in lora_placements(cfg).items()}


def extend_host_key_map() -> None:
    """Teach ``comfy.lora.model_lora_keys_unet`` the pack model's LoRA names (once per process; other models and
    every name the host already maps are left exactly as the host has them)."""
    original = comfy.lora.model_lora_keys_unet
    if getattr(original, "hy21_extended", False):
        return

    @functools.wraps(original)
    def model_lora_keys_unet(model, *args, **kwargs):
        from .model import dit_in  # model.py imports this module (wrap_dit), so not at import time

        key_map = original(model, *args, **kwargs)
        dit = dit_in(model)
        if dit is not None:
            for name, key in pack_key_map(dit.config).items():
                key_map.setdefault(name, key)
        return key_map

    model_lora_keys_unet.hy21_extended = True
    comfy.lora.model_lora_keys_unet = model_lora_keys_unet
    log.debug("HunyuanImage-2.1: LoRA key names added to comfy.lora.model_lora_keys_unet for the pack's DiT")
