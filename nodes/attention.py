"""The DiT's attention through ComfyUI's own choice of kernel.

ComfyUI picks its attention function once, from its command line: SageAttention (``--use-sage-attention``),
FlashAttention (``--use-flash-attention``), xformers, or PyTorch's SDPA; nodes such as KJNodes' attention patch
swap it at run time. The pack's DiT calls whatever ``comfy.ldm.modules.attention.optimized_attention`` is at each
call, so it follows both. ComfyUI's generic fallbacks (split, sub-quadratic and basic attention, chosen where
PyTorch attention is off, as on the CPU) are not faster than PyTorch's SDPA and only round differently, so the DiT
uses SDPA there, as it does outside ComfyUI.

Padded text never reaches a kernel: ``hunyuan_core.dit.attention`` slices each sample to its valid tokens before it
calls the backend, on every backend alike.
"""

from __future__ import annotations

import logging

import comfy.ldm.modules.attention as host_attention
import torch

from ..hunyuan_core.dit.attention import AttentionFn, sdpa

log = logging.getLogger(__name__)

GENERIC_FALLBACKS = ("attention_split", "attention_sub_quad", "attention_basic")


def host_function():
    """ComfyUI's selected attention function right now, or None where it is one of its generic fallbacks."""
    chosen = host_attention.optimized_attention
    fallbacks = [getattr(host_attention, name, None) for name in GENERIC_FALLBACKS]
    return None if any(chosen is fallback for fallback in fallbacks) else chosen


def described() -> str:
    """Which kernel the DiT's attention uses now, for the log."""
    chosen = host_function()
    if chosen is None:
        fallback = getattr(host_attention.optimized_attention, "__name__", "a fallback")
        return f"PyTorch SDPA (ComfyUI selected its generic {fallback})"
    return f"ComfyUI's {getattr(chosen, '__name__', repr(chosen))}"


def through(function) -> AttentionFn:
    """One of ComfyUI's attention functions as the core's backend: ``[B, heads, S, D]`` in and out, a boolean
    mask (True = attend) turned into the additive mask ComfyUI's kernels take (the lowest value, not -inf, so a
    chunked kernel whose chunk holds only masked keys stays finite)."""

    def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, heads, seq, dim = q.shape
        if mask is not None and mask.dtype == torch.bool:  # ComfyUI's kernels add masks: keep 0, drop the lowest
            mask = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill(~mask, torch.finfo(q.dtype).min)
        out = function(q, k, v, heads, mask=mask, skip_reshape=True)  # [B, S, heads * D], as every kernel returns
        return out.view(batch, seq, heads, dim).transpose(1, 2)

    return attend


def host_attention_backend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """The DiT's attention inside ComfyUI: the host's kernel as selected at this call, SDPA for its fallbacks."""
    chosen = host_function()
    if chosen is None:
        return sdpa(q, k, v, mask)
    return through(chosen)(q, k, v, mask)
