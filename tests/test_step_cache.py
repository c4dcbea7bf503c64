"""The step cache in the core: what a skipped forward returns, when forwards are skipped, and that a cache that skips
nothing leaves the DiT's output exactly as it is (tiny fp32 DiT, random weights)."""

from __future__ import annotations

import itertools

import pytest
import torch
from dit_files import TINY, TINY_DISTILLED
from helpers import randomize

from hunyuan_core.dit import HunyuanImageDiT
from hunyuan_core.dit.step_cache import CALIBRATED, StepCache, StepCacheSettings, relative_l1

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def dit() -> HunyuanImageDiT:
    return randomize(HunyuanImageDiT(TINY, dtype=torch.float32), 0, 0.1)


def inputs(seed: int, batch: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "x": torch.randn(batch, 64, 4, 6, generator=g),
        "text": torch.randn(batch, 7, TINY.text_dim, generator=g),
        "text_mask": torch.ones(batch, 7, dtype=torch.int64),
    }


def forward(dit: HunyuanImageDiT, kw: dict, sigma: float, cache=None) -> torch.Tensor:
    t = torch.full((kw["x"].shape[0],), sigma * 1000)
    with torch.no_grad():
        return dit(kw["x"], t, kw["text"], kw["text_mask"], cache=cache)


def test_a_cache_that_never_skips_leaves_every_forward_unchanged(dit):
    cache = StepCache(StepCacheSettings(threshold=0.0))
    for step, sigma in enumerate((1.0, 0.9, 0.8)):
        kw = inputs(step)
        want = forward(dit, kw, sigma)
        got = forward(dit, kw, sigma, cache.at(sigma, step, 3, ["cond"]))
        assert torch.equal(got, want)
    assert (cache.stats.computed, cache.stats.skipped) == (3, 0)


def test_a_skipped_forward_adds_the_stored_residual_to_the_new_image_tokens(dit):
    """At an unchanged probe the skipped forward equals the full one (up to the residual's rounding); at a moved
    latent it is the final layer over the new image tokens plus the old residual, not the old output."""
    cache = StepCache(StepCacheSettings(threshold=10.0))
    kw = inputs(0)
    full = forward(dit, kw, 0.9, cache.at(0.9, 0, 4, ["cond"]))
    again = forward(dit, kw, 0.8, cache.at(0.8, 1, 4, ["cond"]))
    assert cache.stats.skipped == 1 and cache.stats.skipped_steps == [1]
    assert not torch.equal(again, full)  # a new timestep: the final layer's modulation moved
    moved = {**kw, "x": kw["x"] + 0.1}
    skipped = forward(dit, moved, 0.8, cache.at(0.75, 2, 4, ["cond"]))
    with torch.no_grad():
        t = torch.full((1,), 800.0)
        vec = dit.conditioning(t, None, None, torch.float32)
        img = dit.img_in(moved["x"])
        residual = cache._residuals["cond"]
        want = dit.unpatchify(dit.final_layer(img + residual, vec), 1, (4, 6), torch.float32)
    assert torch.equal(skipped, want)
    same_time = forward(dit, kw, 0.9, cache.at(0.7, 3, 4, ["cond"]))
    torch.testing.assert_close(same_time, full, rtol=1e-5, atol=1e-6)


def test_the_change_accumulates_until_the_threshold_then_a_forward_runs(dit):
    kw = inputs(0)
    sigmas = [1.0 - 0.02 * i for i in range(8)]
    with torch.no_grad():
        img = dit.img_in(kw["x"])
        probes = [dit.cache_probe(img, dit.conditioning(torch.full((1,), s * 1000), None, None, torch.float32))
                  for s in sigmas]  # fmt: skip
    changes = [relative_l1(now, before) for before, now in itertools.pairwise(probes)]
    threshold = sum(changes[:3]) * 1.0001  # three changes fit, the fourth does not
    cache = StepCache(StepCacheSettings(threshold=threshold))
    for step, sigma in enumerate(sigmas):
        forward(dit, kw, sigma, cache.at(sigma, step, 8, ["cond"]))
    # step 0 runs (nothing stored), 1-3 skipped (the sum stays under), 4 runs and starts the sum again, ...
    assert cache.stats.skipped_steps[:3] == [1, 2, 3]
    assert 4 not in cache.stats.skipped_steps


def test_a_step_is_skipped_whole_and_each_prompt_keeps_its_own_residual(dit):
    """Negative and positive prompt in one batched forward, or in two forwards at the same sigma: the step's first
    forward decides for both, and each prompt's skipped output comes from its own residual."""
    settings = StepCacheSettings(threshold=10.0)
    neg, pos = inputs(1), inputs(2)
    both = {k: torch.cat([neg[k], pos[k]]) for k in neg}
    batched, split = StepCache(settings), StepCache(settings)
    for step, sigma in enumerate((0.9, 0.8)):
        out_batched = forward(dit, both, sigma, batched.at(sigma, step, 2, ["neg", "pos"]))
        out_neg = forward(dit, neg, sigma, split.at(sigma, step, 2, ["neg"]))
        out_pos = forward(dit, pos, sigma, split.at(sigma, step, 2, ["pos"]))
        torch.testing.assert_close(out_batched, torch.cat([out_neg, out_pos]), rtol=1e-5, atol=1e-6)
    assert batched.stats.skipped_steps == split.stats.skipped_steps == [1]
    assert (batched.stats.skipped, split.stats.skipped) == (1, 2)
    assert not torch.allclose(out_batched[0], out_batched[1])


def test_forwards_run_outside_the_window_for_new_prompts_and_new_shapes(dit):
    cache = StepCache(StepCacheSettings(threshold=10.0, start=0.25, end=0.75))
    kw = inputs(0)
    for step in range(8):
        sigma = 1.0 - step / 8
        forward(dit, kw, sigma, cache.at(sigma, step, 8, ["cond"]))
    assert cache.stats.skipped_steps == [2, 3, 4, 5]  # 0.25 * 8 <= step < 0.75 * 8
    forward(dit, inputs(0, batch=2), 0.1, cache.at(0.1, 4, 8, ["a", "b"]))  # prompts never seen
    wide = {**kw, "x": torch.randn(1, 64, 4, 8)}
    forward(dit, wide, 0.05, cache.at(0.05, 5, 8, ["cond"]))  # another image size
    assert cache.stats.skipped_steps == [2, 3, 4, 5]
    assert cache.stats.computed == 6


def test_guidance_and_meanflow_inputs_reach_the_probe():
    """The distilled model's guidance embedding and MeanFlow's second timestep change the probe, so a change of
    either is seen by the cache (the text, fixed for a run, does not enter it)."""
    model = randomize(HunyuanImageDiT(TINY_DISTILLED, dtype=torch.float32), 3, 0.1)
    img = model.img_in(torch.randn(1, 64, 4, 6, generator=torch.Generator().manual_seed(0)))
    t = torch.full((1,), 900.0)
    with torch.no_grad():
        probes = [
            model.cache_probe(img, model.conditioning(t, g, r, torch.float32))
            for g, r in ((torch.full((1,), 3250.0), torch.full((1,), 800.0)),
                         (torch.full((1,), 5000.0), torch.full((1,), 800.0)),
                         (torch.full((1,), 3250.0), torch.full((1,), 700.0)))
        ]  # fmt: skip
    assert relative_l1(probes[1], probes[0]) > 1e-4
    assert relative_l1(probes[2], probes[0]) > 1e-4


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"threshold": -0.1}, "threshold must be a number >= 0"),
        ({"threshold": float("nan")}, "threshold must be a number >= 0"),
        ({"threshold": 0.1, "start": 0.8, "end": 0.5}, "0 <= start <= end <= 1"),
        ({"threshold": 0.1, "end": 1.5}, "0 <= start <= end <= 1"),
    ],
)
def test_settings_out_of_range_are_refused_by_name(kw, message):
    with pytest.raises(ValueError, match=message):
        StepCacheSettings(**kw)


def test_a_batch_that_does_not_split_into_its_prompts_is_refused(dit):
    cache = StepCache(StepCacheSettings(threshold=1.0))
    with pytest.raises(ValueError, match="a batch of 1 does not split into 2 prompts"):
        forward(dit, inputs(0), 0.9, cache.at(0.9, 0, 2, ["neg", "pos"]))


def test_calibrated_defaults_exist_for_the_two_sampled_variants():
    assert set(CALIBRATED) == {"base", "distilled"}
    for settings in CALIBRATED.values():
        assert settings.threshold > 0 and 0 < settings.start < settings.end <= 1
