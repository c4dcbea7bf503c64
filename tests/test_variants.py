"""The variant registry holds the official constants once, and what is built from it says the same."""

from __future__ import annotations

import pytest

from hunyuan_core.sampling import APGSettings, EmbeddedGuidance, OfficialMix, guidance_for, resolve_schedule
from hunyuan_core.sampling.latents import REFINER_SCALE, STAGE1_SCALE
from hunyuan_core.variants import BASE, DISTILLED, REFINER, VARIANTS, get_variant
from make_workflows import render

pytestmark = pytest.mark.unit


def test_official_sampling_settings():
    assert (BASE.steps, BASE.guidance_scale, BASE.shift, BASE.meanflow) == (50, 3.5, 5.0, False)
    assert (DISTILLED.steps, DISTILLED.guidance_scale, DISTILLED.shift, DISTILLED.meanflow) == (8, 3.25, 4.0, True)
    assert (REFINER.steps, REFINER.guidance_scale, REFINER.shift, REFINER.meanflow) == (4, 3.5, 4.0, False)
    assert [v.template.crop for v in VARIANTS.values()] == [34, 34, 36]
    assert [v.template.max_tokens for v in VARIANTS.values()] == [1000, 1000, 256]
    assert (STAGE1_SCALE, REFINER_SCALE) == (0.75289, 1.03682)
    assert (BASE.latent.channels, BASE.latent.compression, REFINER.latent.channels, REFINER.latent.compression) == (
        64, 32, 32, 16
    )  # fmt: skip


def test_official_architectures():
    for v in (BASE, DISTILLED):
        c = v.dit
        assert (c.hidden_size, c.num_heads, c.depth_double, c.depth_single, c.in_channels) == (3584, 28, 20, 40, 64)
        assert c.rope_axes == (64, 64) and c.byt5_dim == 1472 and c.variant == v.name
    assert not BASE.dit.guidance_embed and DISTILLED.dit.guidance_embed and DISTILLED.dit.meanflow
    r = REFINER.dit
    assert (r.hidden_size, r.num_heads, r.in_channels, r.out_channels, r.patch_dims) == (3328, 26, 128, 64, 3)
    assert r.rope_axes == (16, 56, 56) and r.byt5_dim is None and r.guidance_embed and r.meanflow


def test_each_variant_gets_its_official_guidance_and_schedule():
    base = guidance_for("base")
    assert isinstance(base, OfficialMix) and base.scale == 3.5 and base.apg == APGSettings() and base.apg_start is None
    assert guidance_for("distilled") == EmbeddedGuidance(3.25, meanflow=True)
    assert guidance_for("refiner") == EmbeddedGuidance(3.5, meanflow=False)  # time_r_in is never fed
    assert guidance_for("refiner", scale=3.25) == EmbeddedGuidance(3.25, meanflow=False)
    for v in VARIANTS.values():
        schedule = resolve_schedule(v.name)
        assert schedule.steps == v.steps and schedule.total_steps == v.steps
    with pytest.raises(ValueError, match="unknown DiT variant 'turbo'; expected one of base, distilled, refiner"):
        get_variant("turbo")


def test_shipped_workflows_are_what_the_generator_writes_from_the_registry():
    files = render()
    assert len(files) == 10  # base, distilled, base + refiner, custom sampling, distilled + enhancer: UI and API each
    for path, text in files.items():
        assert path.read_text() == text, f"{path} is stale: run .venv/bin/python scripts/make_workflows.py"
    base_ui = next(t for p, t in files.items() if p.name == "hunyuanimage21_base.json")
    assert BASE.dit_file.name in base_ui and "50 steps, CFG 3.5 then APG, shift 5" in base_ui
