"""Step caching: skip a DiT forward whose output would barely change, reusing the block stack's last residual.

Opt-in and not official: a skipped forward returns an approximation. The DiT asks its cache at every forward, after
the cheap parts (embeddings, the first block's modulation) and before the expensive ones (the token refiner and
every block):

- the **probe** is the first block's modulated image input, ``modulate(norm(img), shift, scale)``; it moves with
  the latent, the timestep, MeanFlow's second timestep and the guidance embedding, so it tracks everything that
  changes between two forwards of one run except the text, which is fixed for a run;
- its relative L1 change since the previous forward (``mean|p - p_prev| / mean|p_prev|``) is summed over the
  forwards since the last computed one; while the sum stays under ``threshold`` the forward is skipped: the image
  tokens get the residual the blocks added last time (``blocks(img) - img``) and go through the final layer;
- once the sum reaches ``threshold`` the forward runs in full, the residual is stored and the sum starts again.

A sampling step may make several forwards (the negative and the positive prompt, batched or not): they are decided
once per step (per sigma), so a step is skipped whole and the two predictions that guidance combines always come
from the same forward. Each prompt (``key``) keeps its own probe and residual. Steps outside ``[start, end)`` (as
fractions of the run's steps) always run; so does the first forward of a run, and any forward whose prompts or
shapes the cache has not seen.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class StepCacheSettings:
    """When forwards may be skipped: ``threshold`` on the accumulated relative change of the probe (0 skips
    nothing), only at steps ``i`` of ``n`` with ``start <= i / n < end``."""

    threshold: float
    start: float = 0.0
    end: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.threshold) and self.threshold >= 0):
            raise ValueError(f"the step cache's threshold must be a number >= 0, got {self.threshold}")
        if not 0.0 <= self.start <= self.end <= 1.0:
            raise ValueError(f"the step cache needs 0 <= start <= end <= 1, got start {self.start}, end {self.end}")

    def allows(self, step: int, steps: int) -> bool:
        """Whether step ``step`` (0-based) of a run of ``steps`` may be skipped."""
        return steps > 0 and self.start * steps <= step < self.end * steps

    def describe(self) -> str:
        return f"threshold {self.threshold:g}, steps from {self.start:.0%} to {self.end:.0%} of the run"


# The shipped defaults: on random weights (tiny and full-width reduced-depth DiTs, bench/bench_step_cache.py) they keep
# the final latent within 2 % (relative L2) of the uncached run: base skips 13-15 of its 50 forwards (0.9-1.2 %),
# distilled 2 of its 8 (1.5 %); README, "Step caching".
CALIBRATED = {
    "base": StepCacheSettings(threshold=0.25, start=0.2, end=1.0),
    "distilled": StepCacheSettings(threshold=0.25, start=0.2, end=0.75),
}
ERROR_BOUND = 0.02  # what the calibrated defaults keep on the calibration models (relative L2 of the final latent)


@dataclass
class CacheStats:
    """What one run's cache did: forwards run and skipped, and the steps skipped (0-based indices)."""

    computed: int = 0
    skipped: int = 0
    skipped_steps: list[int] = field(default_factory=list)

    def describe(self) -> str:
        steps = ", ".join(map(str, self.skipped_steps)) or "none"
        return f"{self.skipped} of {self.computed + self.skipped} forwards skipped (steps {steps})"


def relative_l1(now: torch.Tensor, before: torch.Tensor) -> float:
    """``mean|now - before| / mean|before|``, in float32 (the probe may be bf16 or fp16)."""
    now, before = now.float(), before.float()
    return float((now - before).abs().mean() / before.abs().mean().clamp_min(1e-12))


class StepCache:
    """One sampling run's cache: make a fresh one per run (the state is that run's latents)."""

    def __init__(self, settings: StepCacheSettings) -> None:
        self.settings = settings
        self.stats = CacheStats()
        self._probes: dict[Hashable, torch.Tensor] = {}
        self._residuals: dict[Hashable, torch.Tensor] = {}
        self._accumulated = 0.0
        self._decided: tuple[float, bool] | None = None  # (sigma, skip) of the step being run

    def at(self, sigma: float, step: int, steps: int, keys: Sequence[Hashable]) -> ForwardCache:
        """The cache as one forward sees it: at ``sigma`` (step ``step`` of ``steps``), its batch made of one equal
        chunk per key in ``keys`` (e.g. ComfyUI's cond uuids), in batch order."""
        return ForwardCache(self, float(sigma), step, steps, tuple(keys))

    def _decide(self, call: ForwardCache, probes: list[torch.Tensor]) -> bool:
        """Skip or run: decided by the step's first forward, followed by the others at the same sigma."""
        if self._decided is not None and self._decided[0] == call.sigma:
            return self._decided[1] and call.has_residuals(probes)
        skip = False
        if self.settings.allows(call.step, call.steps) and call.has_residuals(probes):
            change = max(relative_l1(p, self._probes[k]) for k, p in zip(call.keys, probes, strict=True))
            self._accumulated += change
            skip = self._accumulated < self.settings.threshold
        if not skip:
            self._accumulated = 0.0
        else:
            self.stats.skipped_steps.append(call.step)
        self._decided = (call.sigma, skip)
        return skip


class ForwardCache:
    """What the DiT calls during one forward: ``reuse`` with its probe, then ``remember`` when it ran in full."""

    def __init__(self, cache: StepCache, sigma: float, step: int, steps: int, keys: tuple[Hashable, ...]) -> None:
        self.cache, self.sigma, self.step, self.steps, self.keys = cache, sigma, step, steps, keys

    def _chunks(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        if tensor.shape[0] % len(self.keys):
            raise ValueError(f"a batch of {tensor.shape[0]} does not split into {len(self.keys)} prompts")
        return list(tensor.chunk(len(self.keys)))

    def has_residuals(self, probes: list[torch.Tensor]) -> bool:
        """Whether every prompt of this forward has a probe and a residual of this shape from an earlier forward."""
        seen, stored = self.cache._probes, self.cache._residuals
        return all(
            k in seen and k in stored and seen[k].shape == p.shape for k, p in zip(self.keys, probes, strict=True)
        )

    def reuse(self, probe: torch.Tensor) -> torch.Tensor | None:
        """The residual to add to the image tokens instead of running the blocks, or None to run them."""
        cache = self.cache
        probes = self._chunks(probe)
        skip = cache._decide(self, probes)
        for key, chunk in zip(self.keys, probes, strict=True):
            cache._probes[key] = chunk  # a view of this forward's fresh probe: nothing writes to it
        if not skip:
            return None
        cache.stats.skipped += 1
        return torch.cat([cache._residuals[k] for k in self.keys])

    def remember(self, residual: torch.Tensor) -> None:
        """Store what the blocks added to the image tokens in this forward, per prompt."""
        self.cache.stats.computed += 1
        for key, chunk in zip(self.keys, self._chunks(residual), strict=True):
            self.cache._residuals[key] = chunk  # a view of the fresh residual
