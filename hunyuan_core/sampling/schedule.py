"""The flow-matching sigma schedule of HunyuanImage-2.1, custom sigma lists and img2img tails.

``sigmas = linspace(1, 0, N+1)`` shifted by ``s*σ / (1 + (s-1)*σ)``, in float32 exactly as the official code
computes it; the DiT's timestep is ``σ * 1000``.

img2img (``denoise < 1``) uses ComfyUI's definition so a given steps/denoise pair means what it means in a
KSampler: build the schedule for ``floor(N / denoise)`` steps and keep its last ``N + 1`` sigmas. The run then
starts at that schedule's sigma, and its steps keep their positions in the full schedule (``offset``), which is
what the CFG->APG switch counts in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..variants import TIMESTEP_MULTIPLIER

# Tolerance for a custom list's first sigma above 1 (float rounding in other schedulers).
_SIGMA_MAX_SLACK = 1e-6


@dataclass(frozen=True)
class Schedule:
    """Sigmas ``[N+1]`` (float32, ending at 0), the tail of a full schedule of ``total_steps`` steps."""

    sigmas: torch.Tensor
    total_steps: int

    @property
    def steps(self) -> int:
        return self.sigmas.numel() - 1

    @property
    def offset(self) -> int:
        """Index, in the full schedule, of this schedule's first step (0 unless it is an img2img tail)."""
        return self.total_steps - self.steps

    @property
    def timesteps(self) -> torch.Tensor:
        """The DiT's timesteps ``σ * 1000`` for each step, float32."""
        return self.sigmas[:-1] * TIMESTEP_MULTIPLIER


def check_steps(steps: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a whole number of at least 1, got {steps!r}")
    return steps


def check_shift(shift: float) -> float:
    if not math.isfinite(shift) or shift <= 0:
        raise ValueError(f"shift must be a positive number, got {shift!r}")
    return float(shift)


def check_denoise(denoise: float) -> float:
    if not math.isfinite(denoise) or not 0 < denoise <= 1:
        raise ValueError(f"denoise must be in (0, 1], got {denoise!r}")
    return float(denoise)


def shifted_sigmas(steps: int, shift: float) -> torch.Tensor:
    """The official ``get_timesteps_sigmas``: float32 linspace from 1 to 0, then the time shift."""
    sigmas = torch.linspace(1, 0, check_steps(steps) + 1)
    shift = check_shift(shift)
    return ((shift * sigmas) / (1 + (shift - 1) * sigmas)).to(torch.float32)


def denoise_total_steps(steps: int, denoise: float) -> int:
    """Length of the full schedule whose tail an img2img run of ``steps`` steps samples (ComfyUI's rule)."""
    check_steps(steps)
    if check_denoise(denoise) == 1.0:
        return steps
    # The small guard keeps float error (17 / 0.17 = 99.99999999999999) from losing a step.
    return max(steps, math.floor(steps / denoise + 1e-6))


def build_schedule(steps: int, shift: float, denoise: float = 1.0) -> Schedule:
    """The schedule for ``steps`` steps; with ``denoise < 1``, the tail of a longer one (module docstring)."""
    total = denoise_total_steps(steps, denoise)
    return Schedule(shifted_sigmas(total, shift)[-(steps + 1) :].clone(), total)


def check_sigmas(sigmas: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """A custom sigma list as float32, refusing what Euler sampling from it cannot mean."""
    values = torch.as_tensor(sigmas, dtype=torch.float32).detach().cpu()
    if values.ndim != 1 or values.numel() < 2:
        raise ValueError(f"custom sigmas must be a 1-D list of at least 2 values, got shape {tuple(values.shape)}")
    if not bool(torch.isfinite(values).all()):
        raise ValueError("custom sigmas must all be finite")
    if float(values[-1]) != 0.0:
        raise ValueError(f"custom sigmas must end at 0, the last is {float(values[-1])}")
    if float(values[0]) > 1 + _SIGMA_MAX_SLACK:
        raise ValueError(f"custom sigmas must start at or below 1 (pure noise), the first is {float(values[0])}")
    if not bool((values[1:] < values[:-1]).all()):
        raise ValueError("custom sigmas must be strictly decreasing")
    return values


def custom_schedule(sigmas: torch.Tensor | Sequence[float]) -> Schedule:
    """A schedule from a given sigma list; it counts as a full schedule (its step 0 is the switch's step 0)."""
    values = check_sigmas(sigmas)
    return Schedule(values.clone(), values.numel() - 1)
