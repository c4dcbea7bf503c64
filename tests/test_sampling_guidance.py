"""CFG, APG and the official CFG->APG mix, checked against a direct float64 transcription of the official mix.

The official ``normalized_guidance_apg``: momentum ``avg = diff + (-0.5) * avg_prev``, the difference clipped to an
L2 norm of 10 over C, H, W per sample, its part along ``cond`` dropped (eta 0), ``u + 10 * diff``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import assert_close

from hunyuan_core.sampling import (
    APG_STARTS,
    APGGuidance,
    APGSettings,
    CFGGuidance,
    EmbeddedGuidance,
    OfficialMix,
    apg,
    build_schedule,
    cfg,
    custom_schedule,
    guidance_for,
    parse_apg_start,
    plan_sampling,
    resolve_apg_start,
)

pytestmark = pytest.mark.unit

SHAPE = (2, 64, 3, 4)
REL_TOL = 1e-5  # of the transcription's largest value, compared in float64


class Transcription:
    """The official APG, per sample in numpy float64: momentum, clip the L2 norm to 10, drop the part along cond."""

    def __init__(self, scale=10.0, eta=0.0, threshold=10.0, momentum=-0.5) -> None:
        self.scale, self.eta, self.threshold, self.momentum = scale, eta, threshold, momentum
        self.avg: np.ndarray | None = None

    def update(self, u: np.ndarray, c: np.ndarray) -> np.ndarray:
        diff = c - u
        self.avg = diff if self.avg is None else diff + self.momentum * self.avg
        return self.avg

    def apg(self, u: np.ndarray, c: np.ndarray) -> np.ndarray:
        avg = self.update(u, c)
        out = np.empty_like(u)
        for b in range(u.shape[0]):
            d = avg[b].copy()
            norm = np.sqrt((d * d).sum())
            if norm > self.threshold:
                d = d * (self.threshold / norm)
            unit = c[b] / np.sqrt((c[b] * c[b]).sum())
            parallel = (d * unit).sum() * unit
            out[b] = u[b] + self.scale * ((d - parallel) + self.eta * parallel)
        return out


def pair(seed: int, spread: tuple[float, float] = (0.02, 0.6)) -> tuple[torch.Tensor, torch.Tensor]:
    """Uncond/cond velocities; sample 0's difference stays under the norm threshold, sample 1's exceeds it."""
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(SHAPE, generator=gen)
    step = torch.randn(SHAPE, generator=gen) * torch.tensor(spread).reshape(2, 1, 1, 1)
    return u, u + step


def test_pair_straddles_the_norm_threshold():
    u, c = pair(0)
    norms = (c - u).flatten(1).norm(dim=1)
    assert float(norms[0]) < 10 < float(norms[1])


@pytest.mark.parametrize("eta", [0.0, 0.4])
def test_apg_sequence_matches_transcription(eta):
    settings = APGSettings(scale=10.0, eta=eta, norm_threshold=10.0, momentum=-0.5)
    guider = APGGuidance(settings).start(build_schedule(6, 5))
    ref = Transcription(eta=eta)
    for step in range(6):
        u, c = pair(step)
        want = ref.apg(u.double().numpy(), c.double().numpy())
        assert_close(guider.combine(step, u, c), want, REL_TOL, min_scale=None)


def test_apg_without_momentum_is_the_plain_projection():
    u, c = pair(9)
    ref = Transcription(momentum=0.0)
    assert_close(apg(u, c, APGSettings()), ref.apg(u.double().numpy(), c.double().numpy()), REL_TOL, min_scale=None)


def test_cfg_formula():
    u, c = pair(3)
    assert torch.allclose(cfg(u, c, 3.5), u + 3.5 * (c - u))
    guider = CFGGuidance(3.5).start(build_schedule(4, 5))
    assert guider.apg_start is None
    for step in range(4):
        assert torch.equal(guider.combine(step, u, c), cfg(u, c, 3.5))
    assert guider.buffer.average is None


def test_official_switch_at_50_steps():
    schedule = build_schedule(50, 5)
    plain = OfficialMix(3.5).start(schedule, has_quoted_text=False)
    quoted = OfficialMix(3.5).start(schedule, has_quoted_text=True)
    assert plain.apg_start == 6 and quoted.apg_start == 39
    assert [s for s in range(50) if not plain.uses_apg(s)] == list(range(6))  # CFG for steps 0..5
    assert [s for s in range(50) if not quoted.uses_apg(s)] == list(range(39))  # CFG for steps 0..38


@pytest.mark.parametrize("steps", [1, 4, 5, 6, 7, 8, 20, 38, 39, 40, 50, 100])
def test_official_switch_is_fixed_whatever_the_step_count(steps):
    assert resolve_apg_start("official", steps, False) == 6
    assert resolve_apg_start("official", steps, True) == 39
    plain = OfficialMix(3.5).start(build_schedule(steps, 5), has_quoted_text=False)
    quoted = OfficialMix(3.5).start(build_schedule(steps, 5), has_quoted_text=True)
    assert [s for s in range(steps) if not plain.uses_apg(s)] == list(range(min(steps, 6)))
    assert [s for s in range(steps) if not quoted.uses_apg(s)] == list(range(min(steps, 39)))  # < 40 steps: CFG only


@pytest.mark.parametrize(
    ("steps", "plain", "quoted"),
    [(50, 6, 39), (8, 1, 6), (10, 1, 8), (20, 2, 16), (25, 3, 20), (30, 4, 23), (100, 12, 78), (4, 0, 3)],
)
def test_scaled_switch_keeps_the_share_of_cfg_steps(steps, plain, quoted):
    # round(N * 6/50) and round(N * 39/50) with halves rounded up (25 * 39/50 = 19.5 -> 20)
    assert resolve_apg_start("scaled", steps, False) == plain
    assert resolve_apg_start("scaled", steps, True) == quoted
    guider = OfficialMix(3.5, apg_start="scaled").start(build_schedule(steps, 5), has_quoted_text=True)
    assert guider.apg_start == quoted


def test_official_and_scaled_agree_only_at_50_steps():
    for quoted in (False, True):
        assert resolve_apg_start("official", 50, quoted) == resolve_apg_start("scaled", 50, quoted)
        assert all(resolve_apg_start("official", n, quoted) != resolve_apg_start("scaled", n, quoted) for n in (8, 20))


@pytest.mark.parametrize(("choice", "want"), [(0, 0), (3, 3), ("12", 12), ("0", 0), (np.int64(7), 7), (500, 500)])
def test_a_step_index_is_taken_as_given(choice, want):
    for quoted in (False, True):
        assert resolve_apg_start(choice, 8, quoted) == want
    assert parse_apg_start(choice) == want and type(parse_apg_start(choice)) is int


@pytest.mark.parametrize(
    "choice", [-1, "-1", "1.5", 1.5, 6.0, True, None, "Official", "SCALED", "", " 6", "6 ", "ten", "٣", [6]]
)
def test_bad_apg_start_is_refused_with_the_forms_it_takes(choice):
    message = r"apg_start must be 'official' or 'scaled' or a first APG step index >= 0"
    with pytest.raises(ValueError, match=message):
        resolve_apg_start(choice, 8, False)
    with pytest.raises(ValueError, match=message):
        parse_apg_start(choice)
    if choice is not None:  # None is the kind's unset default, "official"
        with pytest.raises(ValueError, match=message):
            OfficialMix(3.5, apg_start=choice)


def test_the_switch_needs_a_step_count():
    with pytest.raises(ValueError, match="steps"):
        resolve_apg_start("official", 0, False)


def test_apg_start_choices_and_their_canonical_form():
    assert APG_STARTS == ("official", "scaled")
    assert OfficialMix(3.5, apg_start="official") == OfficialMix(3.5) == guidance_for("base")
    assert OfficialMix(3.5, apg_start="7") == OfficialMix(3.5, apg_start=7)
    assert plan_sampling("base").guidance.apg_start is None  # the official fixed switch
    assert plan_sampling("base", apg_start="scaled").guidance == OfficialMix(3.5, apg_start="scaled")
    assert plan_sampling("base", steps=8, apg_start="3").guidance.start(build_schedule(8, 5)).apg_start == 3
    with pytest.raises(ValueError, match="apg_start"):
        plan_sampling("base", apg_start="late")
    with pytest.raises(ValueError, match="apg_start"):
        guidance_for("base", "cfg", 3.5, apg_start="late")  # checked even where the mode does not use it


def test_switch_counts_in_the_full_schedule_for_img2img():
    tail = build_schedule(25, 5, denoise=0.5)  # the last 25 steps of a 50-step schedule
    assert tail.offset == 25
    quoted = OfficialMix(3.5).start(tail, has_quoted_text=True)
    assert [s for s in range(25) if not quoted.uses_apg(s)] == list(range(14))  # full steps 25..38
    plain = OfficialMix(3.5).start(tail, has_quoted_text=False)
    assert all(plain.uses_apg(s) for s in range(25))
    short = build_schedule(10, 5, denoise=0.5)  # steps 10..19 of a 20-step schedule
    assert short.offset == 10
    assert all(OfficialMix(3.5).start(short, has_quoted_text=False).uses_apg(s) for s in range(10))
    assert not any(OfficialMix(3.5).start(short, has_quoted_text=True).uses_apg(s) for s in range(10))
    scaled = OfficialMix(3.5, apg_start="scaled").start(short, has_quoted_text=True)  # 16 of 20
    assert [s for s in range(10) if scaled.uses_apg(s)] == [6, 7, 8, 9]


def test_custom_sigmas_count_from_their_first_sigma():
    custom = custom_schedule(torch.linspace(0.9, 0.0, 9))  # 8 steps, starting below pure noise
    assert custom.offset == 0
    plain = OfficialMix(3.5).start(custom, has_quoted_text=False)
    assert [s for s in range(8) if plain.uses_apg(s)] == [6, 7]


def test_momentum_buffer_updates_during_the_cfg_phase():
    steps = 6
    guider = OfficialMix(3.5, apg_start=3).start(build_schedule(steps, 5))
    fresh = APGGuidance().start(build_schedule(steps, 5))  # an APG that never saw the CFG steps
    ref = Transcription()
    for step in range(steps):
        u, c = pair(10 + step)
        un, cn = u.double().numpy(), c.double().numpy()
        got = guider.combine(step, u, c)
        if step < 3:
            ref.update(un, cn)
            assert torch.equal(got, cfg(u, c, 3.5))
            assert_close(guider.buffer.average, ref.avg, REL_TOL, min_scale=None)
        else:
            assert_close(got, ref.apg(un, cn), REL_TOL, min_scale=None)
            if step == 3:
                assert float((fresh.combine(0, u, c) - got).abs().max()) > 1e-3


def test_which_modes_need_the_unconditional_pass():
    assert OfficialMix(3.5).needs_uncond
    assert not OfficialMix(1.0).needs_uncond  # official: no CFG unless scale > 1
    assert not OfficialMix(0.5).needs_uncond
    assert CFGGuidance(0.5).needs_uncond
    assert not CFGGuidance(1.0).needs_uncond
    assert APGGuidance().needs_uncond
    distilled = EmbeddedGuidance(3.25)
    assert distilled.embedded and not distilled.needs_uncond


def test_bad_guidance_arguments():
    with pytest.raises(ValueError, match="unknown guidance mode"):
        guidance_for("base", "mix", 3.5)
    with pytest.raises(ValueError, match="finite"):
        guidance_for("base", "cfg", float("inf"))
    with pytest.raises(ValueError, match="apg_start"):
        guidance_for("base", "official", 3.5, apg_start=-1)
    with pytest.raises(ValueError, match="apg_start"):
        guidance_for("base", "official", 3.5, apg_start="early")
