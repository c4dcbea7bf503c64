"""How the conditional and unconditional velocities become one: CFG, APG and the official CFG->APG mix.

Modes:

- ``official`` (the base model's default, "MIX_mode_0", model.md §4.3): plain CFG with the user's scale, then
  APG with its own scale 10, eta 0, norm threshold 10 and momentum -0.5. The APG momentum buffer is updated from
  step 0 on, also while CFG is still in charge. At 50 steps APG takes over at step 6 (after step 5) for plain
  prompts and at step 39 (after step 38) for prompts with quoted text. Other step counts keep the share of the
  schedule run under CFG: the first APG step is ``round(N * 6/50)`` or ``round(N * 39/50)`` (halves round up),
  counted in the full schedule so an img2img tail keeps the switch where the full run would have it. With a
  guidance scale <= 1 the official pipeline runs no CFG at all, so neither does this mode (one conditional pass).
- ``cfg``: plain CFG for every step (a scale of exactly 1 is a single conditional pass).
- ``apg``: APG from step 0 with the APG settings; the user's CFG scale is unused.
- ``distilled``: one pass per step, the scale goes into the guidance embedding (distilled model and refiner).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .schedule import Schedule

MODES = ("official", "cfg", "apg", "distilled")
TWO_PASS_MODES = ("official", "cfg", "apg")

# First APG step at 50 steps (model.md §4.3: CFG while i <= 5, or i <= 38 with quoted text).
OFFICIAL_STEPS = 50
OFFICIAL_APG_START = 6
OFFICIAL_APG_START_QUOTED = 39


@dataclass(frozen=True)
class APGSettings:
    """Adaptive projected guidance; the defaults are the official constants (hard-coded there)."""

    scale: float = 10.0
    eta: float = 0.0
    norm_threshold: float = 10.0
    momentum: float = -0.5


class MomentumBuffer:
    """The running average of ``cond - uncond``: ``avg = diff + momentum * avg_prev``, empty at the start."""

    def __init__(self, momentum: float) -> None:
        self.momentum = momentum
        self.average: torch.Tensor | None = None

    def update(self, diff: torch.Tensor) -> torch.Tensor:
        self.average = diff if self.average is None else diff + self.momentum * self.average
        return self.average


def cfg(uncond: torch.Tensor, cond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance ``u + g * (c - u)``."""
    return uncond + scale * (cond - uncond)


def apg(
    uncond: torch.Tensor, cond: torch.Tensor, settings: APGSettings, buffer: MomentumBuffer | None = None
) -> torch.Tensor:
    """The official ``normalized_guidance_apg``: momentum, per-sample L2 clip, projection off ``cond``.

    The difference (after momentum) is clipped to an L2 norm of at most ``norm_threshold`` over all non-batch
    dims, split in fp64 into its parts parallel and orthogonal to ``cond``, and recombined as
    ``orthogonal + eta * parallel`` before scaling.
    """
    diff = cond - uncond
    if buffer is not None:
        diff = buffer.update(diff)
    dims = list(range(1, diff.ndim))
    if settings.norm_threshold > 0:
        norm = diff.norm(p=2, dim=dims, keepdim=True)
        diff = diff * torch.minimum(torch.ones_like(diff), settings.norm_threshold / norm)
    unit = F.normalize(cond.double(), dim=dims)
    wide = diff.double()
    parallel = (wide * unit).sum(dim=dims, keepdim=True) * unit
    orthogonal = wide - parallel
    update = orthogonal.to(diff.dtype) + settings.eta * parallel.to(diff.dtype)
    return uncond + settings.scale * update


def official_apg_start(total_steps: int, has_quoted_text: bool) -> int:
    """First APG step of the official mix for a schedule of ``total_steps`` (exactly 6 / 39 at 50 steps)."""
    start50 = OFFICIAL_APG_START_QUOTED if has_quoted_text else OFFICIAL_APG_START
    # round(total * start50 / 50) with halves rounded up, in integers so no float error can move it
    return (2 * total_steps * start50 + OFFICIAL_STEPS) // (2 * OFFICIAL_STEPS)


class Guider:
    """Per-run guidance state: which passes a step needs and how they combine (module docstring for modes).

    ``apg_start`` (official mode) is the first step, counted in the full schedule, that uses APG.
    """

    def __init__(
        self,
        mode: str,
        scale: float,
        schedule: Schedule,
        has_quoted_text: bool = False,
        apg_settings: APGSettings | None = None,
        apg_start: int | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown guidance mode {mode!r}; expected one of {', '.join(MODES)}")
        if not math.isfinite(scale):
            raise ValueError(f"guidance scale must be a finite number, got {scale!r}")
        if apg_start is not None and (isinstance(apg_start, bool) or not isinstance(apg_start, int) or apg_start < 0):
            raise ValueError(f"apg_start must be a step index >= 0, got {apg_start!r}")
        self.mode = mode
        self.scale = float(scale)
        self.offset = schedule.offset
        self.apg_settings = apg_settings or APGSettings()
        self.buffer = MomentumBuffer(self.apg_settings.momentum)
        if mode == "official":
            default = official_apg_start(schedule.total_steps, has_quoted_text)
            self.apg_start = default if apg_start is None else apg_start
        elif mode == "apg":
            self.apg_start = 0
        else:
            self.apg_start = None

    @property
    def embedded(self) -> bool:
        """One pass with the scale in the guidance embedding (guidance-distilled models)."""
        return self.mode == "distilled"

    @property
    def needs_uncond(self) -> bool:
        if self.mode == "official":
            return self.scale > 1  # the official pipeline's `guidance_scale > 1` gate
        if self.mode == "cfg":
            return self.scale != 1
        return self.mode == "apg"

    def uses_apg(self, step: int) -> bool:
        """Whether run step ``step`` (0-based) combines with APG rather than CFG."""
        return self.apg_start is not None and self.offset + step >= self.apg_start

    def combine(self, step: int, uncond: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """The guided velocity for run step ``step``; updates the momentum buffer in both phases."""
        if self.uses_apg(step):
            return apg(uncond, cond, self.apg_settings, self.buffer)
        if self.apg_start is not None:
            self.buffer.update(cond - uncond)  # the official pipeline calls APG and discards the result
        return cfg(uncond, cond, self.scale)
