"""Guidance: how a step's velocity is formed from the DiT's predictions. Each kind is a settings object.

- ``OfficialMix`` (the base model's default, the official ``cfg_mode="MIX_mode_0"``): plain CFG with the user's
  scale, then APG with its own scale 10, eta 0, norm threshold 10 and momentum -0.5. The APG momentum buffer is
  updated from step 0 on, also while CFG is still in charge. Where APG takes over is the ``apg_start`` choice
  (``resolve_apg_start``): ``"official"`` (the default) is the official pipeline's fixed switch, the first APG
  step is index 6 (CFG while i <= 5) for plain prompts and 39 (CFG while i <= 38) with quoted text, at any step
  count, so with fewer steps than that APG never runs; diffusers' guiders spell it
  ``adaptive_projected_guidance_start_step`` 5 / 38 (APG while ``step > start_step``). ``"scaled"`` is not the
  official algorithm: it keeps the 50-step share of CFG steps, ``round(N * 6/50)`` / ``round(N * 39/50)``. A step
  index sets the first APG step directly. With a guidance scale <= 1 the official pipeline runs no CFG at all, so
  neither does this kind (one conditional pass).
- ``CFGGuidance``: plain CFG for every step (a scale of exactly 1 is a single conditional pass).
- ``APGGuidance``: APG from step 0 with the APG settings.
- ``EmbeddedGuidance``: one pass per step, the scale x1000 goes into the guidance embedding; with ``meanflow`` the
  next step's timestep is passed as MeanFlow's second timestep (distilled model), without it not (refiner).

The switch index counts in the full schedule (``Schedule.total_steps``). The official pipeline has no img2img: its
loop index runs over the whole schedule from sigma 1, so "the steps actually run" and "the full schedule" are the
same there. An img2img run here (``denoise < 1``) is the tail of a longer schedule, and its steps keep their indices
in it (``Schedule.offset``), so under the fixed switch every step gets the guidance the full official run gives it
at that noise level (only the momentum buffer starts empty at the tail). Counting from the tail's first step (as
diffusers' modular img2img pipelines count their guiders' steps) would put CFG on noise levels where the official
run uses APG. A custom sigma list is a full schedule: its first sigma is step 0.

A kind is immutable; ``start`` makes the per-run state (``GuidanceRun``: momentum buffer, switch step), whose
``velocity`` calls a predictor once or twice per step. ``guidance_for`` builds the official kind of a variant.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..dit.config import DiTConfig
from ..variants import EMBEDDED, GUIDANCE_EMBED_MULTIPLIER, OFFICIAL_MIX, TIMESTEP_MULTIPLIER, get_variant
from .conditioning import Conditioning, concat_conditionings
from .schedule import Schedule, check_steps

MODES = (OFFICIAL_MIX, "cfg", "apg", EMBEDDED)

# The official mix's first APG step, a 0-based index at any step count (CFG while i <= 5, or i <= 38 with quoted
# text); diffusers' guiders write the last CFG step instead: adaptive_projected_guidance_start_step 5 / 38.
OFFICIAL_APG_START = 6
OFFICIAL_APG_START_QUOTED = 39
OFFICIAL_STEPS = 50  # the official step count, whose share of CFG steps the scaled switch keeps

APG_OFFICIAL = "official"
APG_SCALED = "scaled"
APG_STARTS = (APG_OFFICIAL, APG_SCALED)
"""The named ``apg_start`` choices of the official mix; a step index (an int or a string of digits) is the third."""


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


def parse_apg_start(choice: str | int) -> str | int:
    """``choice`` as one of ``APG_STARTS`` or an int index; refuses anything else with the forms it takes."""
    if isinstance(choice, str):
        if choice in APG_STARTS:
            return choice
        if choice.isascii() and choice.isdigit():
            return int(choice)
    elif isinstance(choice, numbers.Integral) and not isinstance(choice, bool) and choice >= 0:
        return int(choice)
    raise ValueError(
        f"apg_start must be {' or '.join(map(repr, APG_STARTS))} or a first APG step index >= 0 (an int or a string "
        f"of digits), got {choice!r}"
    )


def resolve_apg_start(choice: str | int, steps: int, has_quoted_text: bool) -> int:
    """The first APG step (0-based, in the full schedule of ``steps`` steps) that ``choice`` means for a prompt.

    ``"official"``: 6, or 39 with quoted text, whatever ``steps`` is (the official pipeline's fixed switch).
    ``"scaled"``: ``round(steps * 6/50)`` / ``round(steps * 39/50)``, halves up (equal to official at 50 steps).
    An index (int or string of digits): that step; one at or past ``steps`` means CFG throughout.
    """
    parsed = parse_apg_start(choice)
    check_steps(steps)
    official = OFFICIAL_APG_START_QUOTED if has_quoted_text else OFFICIAL_APG_START
    if parsed == APG_OFFICIAL:
        return official
    if parsed == APG_SCALED:
        # in integers, so no float error can move it
        return (2 * steps * official + OFFICIAL_STEPS) // (2 * OFFICIAL_STEPS)
    return parsed


Predict = Callable[[Conditioning, "torch.Tensor | None", "torch.Tensor | None"], torch.Tensor]
"""``predict(text, guidance, timestep_r)``: the DiT's velocity for the current latents and step under ``text``
(whose batch is the latents' batch or a multiple of it: the latents are repeated to match), with the guidance
embedding value and MeanFlow's second timestep when given (float32 tensors, one value)."""


def _check_scale(scale: float) -> float:
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise ValueError(f"guidance scale must be a finite number, got {scale!r}")
    return float(scale)


class GuidanceRun(ABC):
    """The state of one sampling run under a guidance kind."""

    positive: Conditioning | None = None
    negative: Conditioning | None = None

    def bind(self, positive: Conditioning, negative: Conditioning | None) -> None:
        """The run's conditionings, already expanded to the batch and on the model's device."""
        self.positive, self.negative = positive, negative

    @abstractmethod
    def velocity(self, step: int, predict: Predict) -> torch.Tensor:
        """The guided velocity of run step ``step`` (0-based), from one or two ``predict`` calls."""


class Guidance(ABC):
    """A guidance kind: immutable settings; ``start`` makes the state of one run."""

    mode: str = ""

    @property
    @abstractmethod
    def needs_uncond(self) -> bool:
        """Whether each step also predicts under the negative conditioning."""

    @property
    def embedded(self) -> bool:
        """One pass with the scale in the guidance embedding (guidance-distilled models)."""
        return False

    def check_model(self, config: DiTConfig) -> None:
        """Refuse a model this kind cannot drive: CFG/APG need a plain model (embedded kinds override this)."""
        if config.guidance_embed:
            raise ValueError(
                f"the {config.variant} model is guidance-distilled (it takes the scale as an embedding); "
                f"guidance mode {self.mode!r} needs the base model, use 'distilled'"
            )

    @abstractmethod
    def start(self, schedule: Schedule, has_quoted_text: bool = False) -> GuidanceRun:
        """The state for one run over ``schedule`` (``has_quoted_text``: the positive prompt quotes text)."""


class SinglePassRun(GuidanceRun):
    """One conditional prediction per step: a two-pass kind at a scale where guidance does nothing."""

    def velocity(self, step: int, predict: Predict) -> torch.Tensor:
        return predict(self.positive, None, None)


class TwoPassRun(GuidanceRun):
    """Predict under the negative and the positive conditioning, then combine (CFG, then APG from ``apg_start``).

    ``batched`` runs ``[negative, positive]`` in one forward, as the official pipeline does; otherwise one after
    the other (less memory, the same result). ``apg_start`` counts in the full schedule (``offset`` is the run's
    first step there); None means CFG throughout.
    """

    def __init__(
        self, scale: float, settings: APGSettings, apg_start: int | None, offset: int = 0, batched: bool = True
    ) -> None:
        self.scale = scale
        self.apg_settings = settings
        self.apg_start = apg_start
        self.offset = offset
        self.batched = batched
        self.buffer = MomentumBuffer(settings.momentum)
        self._both: Conditioning | None = None

    def bind(self, positive: Conditioning, negative: Conditioning | None) -> None:
        if negative is None:
            raise ValueError("two-pass guidance needs a negative conditioning")
        super().bind(positive, negative)
        self._both = concat_conditionings([negative, positive]) if self.batched else None

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

    def velocity(self, step: int, predict: Predict) -> torch.Tensor:
        if self._both is not None:
            uncond, cond = predict(self._both, None, None).chunk(2)
        else:
            uncond = predict(self.negative, None, None)
            cond = predict(self.positive, None, None)
        return self.combine(step, uncond, cond)


@dataclass(frozen=True)
class OfficialMix(Guidance):
    """The base model's official guidance: CFG at ``scale``, then APG from the ``apg_start`` choice (see
    ``resolve_apg_start``), stored canonically as None (``"official"``, the default), ``"scaled"`` or an int index
    so that equal choices make equal kinds. ``batched``: see ``TwoPassRun``."""

    scale: float = 3.5
    apg: APGSettings = field(default_factory=APGSettings)
    apg_start: str | int | None = None
    batched: bool = True
    mode = OFFICIAL_MIX

    def __post_init__(self) -> None:
        _check_scale(self.scale)
        if self.apg_start is not None:
            parsed = parse_apg_start(self.apg_start)
            object.__setattr__(self, "apg_start", None if parsed == APG_OFFICIAL else parsed)

    @property
    def needs_uncond(self) -> bool:
        return self.scale > 1  # the official pipeline's `guidance_scale > 1` gate

    def start(self, schedule: Schedule, has_quoted_text: bool = False) -> GuidanceRun:
        if not self.needs_uncond:
            return SinglePassRun()
        choice = APG_OFFICIAL if self.apg_start is None else self.apg_start
        start = resolve_apg_start(choice, schedule.total_steps, has_quoted_text)
        return TwoPassRun(self.scale, self.apg, start, schedule.offset, self.batched)


@dataclass(frozen=True)
class CFGGuidance(Guidance):
    """Plain classifier-free guidance at every step (a scale of exactly 1 is one conditional pass)."""

    scale: float = 3.5
    batched: bool = True
    mode = "cfg"

    def __post_init__(self) -> None:
        _check_scale(self.scale)

    @property
    def needs_uncond(self) -> bool:
        return self.scale != 1

    def start(self, schedule: Schedule, has_quoted_text: bool = False) -> GuidanceRun:
        if not self.needs_uncond:
            return SinglePassRun()
        return TwoPassRun(self.scale, APGSettings(), None, schedule.offset, self.batched)


@dataclass(frozen=True)
class APGGuidance(Guidance):
    """Adaptive projected guidance from step 0; APG has its own scale (``apg.scale``), no CFG scale."""

    apg: APGSettings = field(default_factory=APGSettings)
    batched: bool = True
    mode = "apg"

    @property
    def needs_uncond(self) -> bool:
        return True

    def start(self, schedule: Schedule, has_quoted_text: bool = False) -> GuidanceRun:
        return TwoPassRun(1.0, self.apg, 0, schedule.offset, self.batched)


class EmbeddedRun(GuidanceRun):
    """One prediction per step with the guidance embedding (and MeanFlow's next timestep when asked)."""

    def __init__(self, guidance: EmbeddedGuidance, schedule: Schedule) -> None:
        self.guidance = guidance
        self.sigmas = schedule.sigmas
        self.value: torch.Tensor | None = None

    def bind(self, positive: Conditioning, negative: Conditioning | None) -> None:
        super().bind(positive, None)  # guidance-distilled: the negative prompt is not used
        device = positive.mllm.device
        self.value = torch.tensor(self.guidance.scale, dtype=torch.float32, device=device) * GUIDANCE_EMBED_MULTIPLIER
        self.sigmas = self.sigmas.to(device)

    def velocity(self, step: int, predict: Predict) -> torch.Tensor:
        # MeanFlow: the next timestep, 0 at the last step
        r = self.sigmas[step + 1] * TIMESTEP_MULTIPLIER if self.guidance.meanflow else None
        return predict(self.positive, self.value, r)


@dataclass(frozen=True)
class EmbeddedGuidance(Guidance):
    """The distilled model's and the refiner's guidance: no negative pass, ``scale * 1000`` into the guidance
    embedding; ``meanflow`` passes the next timestep as MeanFlow's second one (distilled: yes, refiner: no)."""

    scale: float = 3.25
    meanflow: bool = True
    mode = EMBEDDED

    def __post_init__(self) -> None:
        _check_scale(self.scale)

    @property
    def needs_uncond(self) -> bool:
        return False

    @property
    def embedded(self) -> bool:
        return True

    def check_model(self, config: DiTConfig) -> None:
        if not config.guidance_embed:
            raise ValueError(
                f"the {config.variant} model has no guidance embedding; 'distilled' mode needs the distilled model or "
                "the refiner, use 'official', 'cfg' or 'apg'"
            )
        if self.meanflow and not config.meanflow:
            raise ValueError(f"the {config.variant} model has no MeanFlow embedder (time_r_in); use meanflow=False")

    def start(self, schedule: Schedule, has_quoted_text: bool = False) -> GuidanceRun:
        return EmbeddedRun(self, schedule)


def guidance_for(
    variant: str,
    mode: str | None = None,
    scale: float | None = None,
    *,
    apg_settings: APGSettings | None = None,
    apg_start: str | int | None = None,
    batched: bool = True,
) -> Guidance:
    """The guidance a run of ``variant`` uses: its official kind and scale for what is left unset.

    ``apg_start`` (official mix only, None is ``"official"``): one of ``APG_STARTS`` or a step index, see
    ``resolve_apg_start``; it is checked here even when the mode does not use it, so a bad value never passes."""
    entry = get_variant(variant)
    mode = entry.guidance if mode is None else mode
    if mode not in MODES:
        raise ValueError(f"unknown guidance mode {mode!r}; expected one of {', '.join(MODES)}")
    scale = entry.guidance_scale if scale is None else scale
    settings = apg_settings or APGSettings()
    if apg_start is not None:
        parse_apg_start(apg_start)
    if mode == OFFICIAL_MIX:
        return OfficialMix(scale, settings, apg_start, batched)
    if mode == "cfg":
        return CFGGuidance(scale, batched)
    if mode == "apg":
        return APGGuidance(settings, batched)
    return EmbeddedGuidance(scale, meanflow=entry.meanflow)
