"""Attention over sequences whose valid tokens form a prefix, without ever computing on the padding.

The official model removes padded text tokens before attention (flash-attn varlen); they neither attend nor are
attended to, and their outputs are zero. Here each sample attends over its own valid prefix: one SDPA call for
the whole batch when every sample is fully valid, one call per sample otherwise (exact, and no mask means
PyTorch can use its fastest kernels).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

# q, k, v: [B, heads, S, D] -> [B, heads, S, D]; optional boolean mask broadcastable to [B, heads, S, S].
AttentionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


BACKENDS: dict[str, AttentionFn] = {"sdpa": sdpa}


def get_backend(name: str) -> AttentionFn:
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown attention backend {name!r}; available: {sorted(BACKENDS)}") from None


def prefix_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    valid: list[int] | None,
    backend: AttentionFn = sdpa,
) -> torch.Tensor:
    """Attention for ``q, k, v [B, S, heads, D]`` where sample b uses only its first ``valid[b]`` tokens.

    Returns ``[B, S, heads * D]``; positions past a sample's valid prefix are zero. ``valid=None`` means all.
    """
    batch, seq = q.shape[:2]
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    if valid is None or all(n == seq for n in valid):
        out = backend(q, k, v, None)
    else:
        out = q.new_zeros(q.shape)
        for b, n in enumerate(valid):
            if n:
                out[b : b + 1, :, :n] = backend(q[b : b + 1, :, :n], k[b : b + 1, :, :n], v[b : b + 1, :, :n], None)
    return out.transpose(1, 2).reshape(batch, seq, -1)


def key_attention_mask(key_mask: torch.Tensor | None) -> torch.Tensor | None:
    """The boolean ``[B, 1, 1, S]`` attention mask for a ``[B, S]`` key mask, key 0 always let through (as the
    official token refiner does, so no row is empty); None when every key is valid, so the fastest unmasked kernels
    run. Decided once per forward, outside the blocks: a block then holds no data-dependent branch and compiles
    as one graph."""
    if key_mask is None or bool(key_mask.all()):
        return None
    mask = key_mask.bool().clone()
    mask[:, 0] = True
    return mask[:, None, None, :]


def key_masked_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, backend: AttentionFn = sdpa
) -> torch.Tensor:
    """Attention for ``[B, S, heads, D]`` inputs where every query sees only the keys ``mask`` lets through (a
    ``key_attention_mask``, or None for all keys). Used by the token refiner."""
    batch, seq = q.shape[:2]
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    return backend(q, k, v, mask).transpose(1, 2).reshape(batch, seq, -1)
