"""The text conditioning the sampler feeds to the DiT, and how two prompts share one batched forward."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch


@dataclass
class Conditioning:
    """One prompt's text states: MLLM (Qwen) states + mask, optional ByT5 glyph states + mask.

    Tensors are ``[B, L, D]`` and masks ``[B, L]`` (1 = valid token); B is 1 or the latent batch. ByT5 may be
    ``None`` or zero-length when the prompt has no quoted text. ``has_quoted_text`` selects the later CFG->APG
    switch of the official guidance; it is the positive prompt's flag that counts.
    """

    mllm: torch.Tensor
    mllm_mask: torch.Tensor
    byt5: torch.Tensor | None = None
    byt5_mask: torch.Tensor | None = None
    has_quoted_text: bool = False

    def __post_init__(self) -> None:
        _check_pair("mllm", self.mllm, self.mllm_mask)
        if (self.byt5 is None) != (self.byt5_mask is None):
            raise ValueError("byt5 and byt5_mask must be given together")
        if self.byt5 is not None:
            _check_pair("byt5", self.byt5, self.byt5_mask)
            if self.byt5.shape[0] != self.mllm.shape[0]:
                raise ValueError(f"byt5 batch {self.byt5.shape[0]} differs from mllm batch {self.mllm.shape[0]}")

    @classmethod
    def of(cls, source: object) -> Conditioning:
        """Copy any object carrying the same five attributes (e.g. the text encoder's prompt embedding)."""
        return cls(
            mllm=source.mllm,
            mllm_mask=source.mllm_mask,
            byt5=getattr(source, "byt5", None),
            byt5_mask=getattr(source, "byt5_mask", None),
            has_quoted_text=bool(getattr(source, "has_quoted_text", False)),
        )

    @property
    def batch(self) -> int:
        return self.mllm.shape[0]

    @property
    def has_byt5(self) -> bool:
        """True when at least one ByT5 token is valid (the DiT ignores an all-masked ByT5 input)."""
        return self.byt5 is not None and self.byt5.shape[1] > 0 and bool(self.byt5_mask.bool().any())

    def expand(self, batch: int) -> Conditioning:
        """The same conditioning for ``batch`` latents (a batch-1 conditioning is shared by every sample)."""
        if self.batch == batch:
            return self
        if self.batch != 1:
            raise ValueError(f"conditioning batch {self.batch} matches neither 1 nor the latent batch {batch}")

        def grow(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.expand(batch, *t.shape[1:])

        return replace(
            self,
            mllm=grow(self.mllm),
            mllm_mask=grow(self.mllm_mask),
            byt5=grow(self.byt5),
            byt5_mask=grow(self.byt5_mask),
        )

    def to(self, device: torch.device | str) -> Conditioning:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return replace(
            self,
            mllm=move(self.mllm),
            mllm_mask=move(self.mllm_mask),
            byt5=move(self.byt5),
            byt5_mask=move(self.byt5_mask),
        )


def _check_pair(name: str, states: torch.Tensor, mask: torch.Tensor) -> None:
    if states.ndim != 3:
        raise ValueError(f"{name} states must be [B, L, D], got shape {tuple(states.shape)}")
    if mask.shape != states.shape[:2]:
        raise ValueError(f"{name} mask must be [B, L] = {tuple(states.shape[:2])}, got {tuple(mask.shape)}")


def _pad(states: torch.Tensor, mask: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero states and mask 0 up to ``length`` tokens: padding that the DiT keeps out of attention."""
    extra = length - states.shape[1]
    if extra:
        states = torch.cat([states, states.new_zeros(states.shape[0], extra, states.shape[2])], dim=1)
        mask = torch.cat([mask, mask.new_zeros(mask.shape[0], extra)], dim=1)
    return states, mask.to(torch.int64)


def concat_conditionings(items: Sequence[Conditioning]) -> Conditioning:
    """Stack conditionings along the batch, padding each to a common length, so one forward serves them all.

    Used for the official ``[negative, positive]`` batch. A member without ByT5 gets zero states with an
    all-zero mask; when no member has ByT5 tokens the result has none either.
    """
    if not items:
        raise ValueError("nothing to concatenate")
    length = max(c.mllm.shape[1] for c in items)
    mllm, mllm_mask = zip(*(_pad(c.mllm, c.mllm_mask, length) for c in items), strict=True)
    with_byt5 = [c for c in items if c.byt5 is not None and c.byt5.shape[1] > 0]
    byt5 = byt5_mask = None
    if with_byt5:
        b_len = max(c.byt5.shape[1] for c in with_byt5)
        width, dtype = with_byt5[0].byt5.shape[2], with_byt5[0].byt5.dtype
        parts = []
        for c in items:
            if c.byt5 is not None and c.byt5.shape[1] > 0:
                parts.append(_pad(c.byt5.to(dtype), c.byt5_mask, b_len))
            else:
                zeros = c.mllm.new_zeros(c.batch, b_len, width, dtype=dtype)
                parts.append((zeros, torch.zeros(c.batch, b_len, dtype=torch.int64, device=c.mllm.device)))
        byt5, byt5_mask = (torch.cat(p, dim=0) for p in zip(*parts, strict=True))
    return Conditioning(
        mllm=torch.cat([m.to(items[0].mllm.dtype) for m in mllm], dim=0),
        mllm_mask=torch.cat(mllm_mask, dim=0),
        byt5=byt5,
        byt5_mask=byt5_mask,
        has_quoted_text=any(c.has_quoted_text for c in items),
    )
