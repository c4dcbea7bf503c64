"""The DiT's attention through ComfyUI's own choice of kernel.

ComfyUI picks its attention function once, from its command line: SageAttention (``--use-sage-attention``),
FlashAttention (``--use-flash-attention``), xformers, or PyTorch's SDPA; nodes such as KJNodes' attention patch
swap it at run time. The pack's DiT calls whatever ``comfy.ldm.modules.attention.optimized_attention`` is at each
call, so it follows both. ComfyUI's generic fallbacks (split, sub-quadratic and basic attention, chosen where
PyTorch attention is off, as on the CPU) are not faster than PyTorch's SDPA and only round differently, so the DiT
uses SDPA there, as it does outside ComfyUI.

A model patch that sets ComfyUI's ``optimized_attention_override`` in ``transformer_options`` gets every attention
call of the DiT with ComfyUI's selection, as ComfyUI's own models hand it over.

Padded text never reaches a kernel: ``hunyuan_core.dit.attention`` slices each sample to its valid tokens before it
calls the backend, on every backend alike.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import comfy.ldm.modules.attention as host_attention
import torch

from ..hunyuan_core.dit.attention import AttentionFn, sdpa

GENERIC_FALLBACKS = ("attention_split", "attention_sub_quad", "attention_basic")
# The fallback functions themselves, looked up once: ComfyUI swaps which function is selected, never these.
_FALLBACKS = tuple(getattr(host_attention, name) for name in GENERIC_FALLBACKS if hasattr(host_attention, name))
OVERRIDE = "optimized_attention_override"  # ComfyUI's per-run attention hook in transformer_options

# The transformer_options of the DiT forward in progress, when they carry an attention override (ComfyUI runs one
# forward at a time); the core's attention signature stays free of ComfyUI's options.
_forward_options: dict[str, Any] = {}


@contextmanager
def forward_options(options: dict) -> Iterator[None]:
    """Hand a forward's ``transformer_options`` to its attention calls while it runs, so a model patch that sets
    ComfyUI's ``optimized_attention_override`` (e.g. to route attention through another kernel) reaches the DiT."""
    if OVERRIDE not in options:
        yield
        return
    _forward_options["options"] = options
    try:
        yield
    finally:
        _forward_options.pop("options", None)


def host_function():
    """ComfyUI's selected attention function right now, or None where it is one of its generic fallbacks."""
    chosen = host_attention.optimized_attention
    return None if any(chosen is fallback for fallback in _FALLBACKS) else chosen


def described() -> str:
    """Which kernel the DiT's attention uses now, for the log."""
    chosen = host_function()
    if chosen is None:
        fallback = getattr(host_attention.optimized_attention, "__name__", "a fallback")
        return f"PyTorch SDPA (ComfyUI selected its generic {fallback})"
    return f"ComfyUI's {getattr(chosen, '__name__', repr(chosen))}"


def call_host(
    function, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
    transformer_options: dict | None = None,
) -> torch.Tensor:  # fmt: skip
    """One of ComfyUI's attention functions on the core's ``[B, heads, S, D]`` tensors, returning the same layout;
    a boolean mask (True = attend) becomes the additive mask ComfyUI's kernels take (the lowest value, not -inf,
    so a chunked kernel whose chunk holds only masked keys stays finite)."""
    batch, heads, seq, dim = q.shape
    if mask is not None and mask.dtype == torch.bool:
        mask = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill(~mask, torch.finfo(q.dtype).min)
    extra = {} if transformer_options is None else {"transformer_options": transformer_options}
    out = function(q, k, v, heads, mask=mask, skip_reshape=True, **extra)  # [B, S, heads * D] from every kernel
    return out.view(batch, seq, heads, dim).transpose(1, 2)


def through(function) -> AttentionFn:
    """One of ComfyUI's attention functions as a core attention backend (``call_host`` bound to it)."""
    return functools.partial(call_host, function)


def host_attention_backend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """The DiT's attention inside ComfyUI: the host's kernel as selected at this call, SDPA for its fallbacks; with
    an attention override in the forward's options, the host's selection handed to that override (its choice)."""
    options = _forward_options.get("options")
    if options is not None:
        return call_host(host_attention.optimized_attention, q, k, v, mask, transformer_options=options)
    chosen = host_function()
    if chosen is None:
        return sdpa(q, k, v, mask)
    return call_host(chosen, q, k, v, mask)
