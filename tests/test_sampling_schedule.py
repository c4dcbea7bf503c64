"""The flow-matching schedule: the official sigma values, img2img tails, custom sigma lists, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from hunyuan_core.sampling import (
    build_schedule,
    custom_schedule,
    resolve_schedule,
    shifted_sigmas,
)
from hunyuan_core.sampling.schedule import denoise_total_steps
from hunyuan_core.variants import VARIANTS

pytestmark = pytest.mark.unit


def rounded(t: torch.Tensor) -> list[float]:
    return [round(float(v), 4) for v in t]


def test_distilled_8_steps_shift_4():
    assert rounded(shifted_sigmas(8, 4)) == [1, 0.9655, 0.9231, 0.8696, 0.8, 0.7059, 0.5714, 0.3636, 0]


def test_refiner_4_steps_shift_4():
    assert rounded(shifted_sigmas(4, 4)) == [1, 0.9231, 0.8, 0.5714, 0]


def test_base_50_steps_shift_5():
    sigmas = shifted_sigmas(50, 5)
    assert sigmas.numel() == 51 and sigmas.dtype == torch.float32
    assert rounded(sigmas[:3]) == [1, 0.9959, 0.9917]
    assert rounded(sigmas[-3:]) == [0.1724, 0.0926, 0]


def test_timesteps_are_sigma_times_1000_in_float32():
    schedule = build_schedule(8, 4)
    assert schedule.steps == 8 and schedule.total_steps == 8 and schedule.offset == 0
    assert schedule.timesteps.dtype == torch.float32
    assert torch.equal(schedule.timesteps, schedule.sigmas[:-1] * 1000)
    assert float(schedule.timesteps[0]) == 1000.0


def test_variant_defaults_resolve_to_the_official_schedules():
    assert VARIANTS["base"].steps == 50 and VARIANTS["base"].shift == 5
    assert VARIANTS["distilled"].steps == 8 and VARIANTS["distilled"].shift == 4
    assert VARIANTS["refiner"].steps == 4 and VARIANTS["refiner"].shift == 4
    assert torch.equal(resolve_schedule("distilled").sigmas, shifted_sigmas(8, 4))
    assert torch.equal(resolve_schedule("refiner").sigmas, shifted_sigmas(4, 4))
    assert torch.equal(resolve_schedule("base", steps=12).sigmas, shifted_sigmas(12, 5))
    assert torch.equal(resolve_schedule("base", steps=12, shift=3).sigmas, shifted_sigmas(12, 3))


def test_denoise_keeps_the_tail_of_a_longer_schedule():
    schedule = build_schedule(10, 5, denoise=0.5)
    full = shifted_sigmas(20, 5)
    assert schedule.total_steps == 20 and schedule.steps == 10 and schedule.offset == 10
    assert torch.equal(schedule.sigmas, full[-11:])
    assert float(schedule.sigmas[0]) < 1 and float(schedule.sigmas[-1]) == 0
    # ComfyUI's rule: floor(steps / denoise) total steps, guarded against float error
    assert denoise_total_steps(7, 0.3) == 23
    assert denoise_total_steps(17, 0.17) == 100  # 17 / 0.17 == 99.99999999999999 in floats
    assert torch.equal(build_schedule(10, 5, denoise=1.0).sigmas, shifted_sigmas(10, 5))


def test_custom_sigmas_are_taken_as_given():
    schedule = custom_schedule([0.9, 0.5, 0.2, 0.0])
    assert schedule.steps == 3 and schedule.offset == 0
    assert torch.allclose(schedule.sigmas, torch.tensor([0.9, 0.5, 0.2, 0.0]))
    assert torch.equal(resolve_schedule("base", sigmas=torch.tensor([1.0, 0.5, 0.0])).sigmas, torch.tensor([1, 0.5, 0]))


@pytest.mark.parametrize(
    ("sigmas", "message"),
    [
        ([1.0, 0.5, 0.6, 0.0], "strictly decreasing"),
        ([1.0, 0.5, 0.5, 0.0], "strictly decreasing"),
        ([1.0, 0.5, 0.1], "end at 0"),
        ([1.2, 0.5, 0.0], "at or below 1"),
        ([0.0], "at least 2"),
        ([1.0, math.nan, 0.0], "finite"),
    ],
)
def test_bad_custom_sigmas(sigmas, message):
    with pytest.raises(ValueError, match=message):
        custom_schedule(sigmas)


@pytest.mark.parametrize("steps", [0, -3, 2.5, True])
def test_bad_steps(steps):
    with pytest.raises(ValueError, match="steps"):
        build_schedule(steps, 5)


@pytest.mark.parametrize("denoise", [0.0, -0.1, 1.5, math.nan])
def test_bad_denoise(denoise):
    with pytest.raises(ValueError, match="denoise"):
        build_schedule(10, 5, denoise=denoise)


def test_bad_shift_and_conflicting_arguments():
    with pytest.raises(ValueError, match="shift"):
        build_schedule(10, 0)
    with pytest.raises(ValueError, match="denoise"):
        resolve_schedule("base", sigmas=[1.0, 0.5, 0.0], denoise=0.5)
    with pytest.raises(ValueError, match="disagrees"):
        resolve_schedule("base", steps=5, sigmas=[1.0, 0.5, 0.0])
    with pytest.raises(ValueError, match="variant"):
        resolve_schedule("turbo")
