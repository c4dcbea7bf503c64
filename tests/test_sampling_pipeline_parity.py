"""End-to-end sampling against diffusers 0.39.0's ``HunyuanImagePipeline``, tiny random weights, fp32.

Both sides get the same transformer weights, the same prompt embeddings (passed in, so no text encoder runs) and
the same initial latents (``latents=``). diffusers is set to the official behaviour: an
``AdaptiveProjectedMixGuidance`` guider for plain prompts and an ``ocr_guider`` for prompts with quoted text
(guidance 3.5, APG scale 10, momentum -0.5, norm threshold 10, eta 0), a ``FlowMatchEulerDiscreteScheduler``
with shift 5 (4 for the distilled model). Its ``adaptive_projected_guidance_start_step`` is the last CFG step
(APG runs for ``step > start_step``): the official 5 (its own default) and 38 for the OCR guider, at every step
count, while our side runs with its defaults.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from diffusers import (
    AdaptiveProjectedMixGuidance,
    AutoencoderKLHunyuanImage,
    FlowMatchEulerDiscreteScheduler,
    HunyuanImagePipeline,
)
from dit_files import (
    PARITY,
    PARITY_DISTILLED,
    TINY,
    TINY_DISTILLED,
    TINY_REFINER,
    RecordingDiT,
    diffusers_pair,
    recording_dit,
)
from helpers import assert_close

from hunyuan_core.sampling import (
    Conditioning,
    concat_conditionings,
    make_noise,
    plan_sampling,
    resolve_apg_start,
    sample,
    shifted_sigmas,
    to_model_space,
    to_vae_space,
)

pytestmark = [pytest.mark.parity, pytest.mark.usefixtures("one_thread")]

REL_TOL = 1e-4
CHANNELS, TEXT_DIM, BYT5_DIM, TEXT_LEN, BYT5_LEN = 64, 48, 40, 20, 16
H, W = 6, 5
GENERAL_START_STEP, OCR_START_STEP = 5, 38  # diffusers' last CFG steps of the official mix, absolute
OUT_GAIN = 5.0  # on the output projection: larger velocities, so cond - uncond crosses APG's norm threshold


def tiny_vae() -> AutoencoderKLHunyuanImage:
    """Only needed to build the pipeline (it sets the 32x size factor); never run with output_type='latent'."""
    return AutoencoderKLHunyuanImage(
        in_channels=3, out_channels=3, latent_channels=CHANNELS, block_out_channels=(32, 32, 32, 32, 32, 128),
        layers_per_block=1, spatial_compression_ratio=32, sample_size=64, scaling_factor=0.75289,
    )  # fmt: skip


def mix_guider(start_step: int) -> AdaptiveProjectedMixGuidance:
    return AdaptiveProjectedMixGuidance(
        guidance_scale=3.5, guidance_rescale=0.0, adaptive_projected_guidance_scale=10.0,
        adaptive_projected_guidance_momentum=-0.5, adaptive_projected_guidance_rescale=10.0, eta=0.0,
        adaptive_projected_guidance_start_step=start_step,
    )  # fmt: skip


def pipeline(ref, shift: float, general_start: int | None, ocr_start: int | None) -> HunyuanImagePipeline:
    return HunyuanImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=shift),
        vae=tiny_vae(),
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
        transformer=ref,
        guider=None if general_start is None else mix_guider(general_start),
        ocr_guider=None if ocr_start is None else mix_guider(ocr_start),
    )


def prompt(seed: int, valid: int, byt5_valid: int) -> dict[str, torch.Tensor]:
    """Padded embeddings as diffusers takes them (ByT5 all zero with a zero mask when there is no quote)."""
    gen = torch.Generator().manual_seed(seed)
    mask, byt5_mask = torch.zeros(1, TEXT_LEN, dtype=torch.long), torch.zeros(1, BYT5_LEN, dtype=torch.long)
    mask[:, :valid], byt5_mask[:, :byt5_valid] = 1, 1
    byt5 = torch.randn(1, BYT5_LEN, BYT5_DIM, generator=gen) * byt5_mask[..., None]
    embeds = torch.randn(1, TEXT_LEN, TEXT_DIM, generator=gen)
    return {"embeds": embeds, "mask": mask, "byt5": byt5, "byt5_mask": byt5_mask}


def ours_conditioning(p: dict[str, torch.Tensor], quoted: bool) -> Conditioning:
    """The same prompt, unpadded: our sampler pads the batched [negative, positive] pair itself."""
    valid, byt5_valid = int(p["mask"].sum()), int(p["byt5_mask"].sum())
    byt5 = p["byt5"][:, :byt5_valid] if byt5_valid else None
    byt5_mask = p["byt5_mask"][:, :byt5_valid] if byt5_valid else None
    return Conditioning(p["embeds"][:, :valid], p["mask"][:, :valid], byt5, byt5_mask, has_quoted_text=quoted)


def run_diffusers(pipe, noise, pos, neg, steps: int, **kwargs) -> torch.Tensor:
    negatives = {}
    if neg is not None:
        negatives = {
            "negative_prompt_embeds": neg["embeds"], "negative_prompt_embeds_mask": neg["mask"],
            "negative_prompt_embeds_2": neg["byt5"], "negative_prompt_embeds_mask_2": neg["byt5_mask"],
        }  # fmt: skip
    out = pipe(
        height=H * 32, width=W * 32, num_inference_steps=steps, latents=noise.clone(), prompt_embeds=pos["embeds"],
        prompt_embeds_mask=pos["mask"], prompt_embeds_2=pos["byt5"], prompt_embeds_mask_2=pos["byt5_mask"],
        output_type="latent", return_dict=False, **negatives, **kwargs,
    )  # fmt: skip
    return out[0]


@pytest.fixture(scope="module")
def base():
    return diffusers_pair(PARITY, seed=21, out_gain=OUT_GAIN)


def base_run(model, pos, neg, quoted: bool, steps: int, **settings) -> torch.Tensor:
    """Our sampler on the parity prompts with ``plan_sampling``'s defaults for the base model (shift 5, the
    official mix at 3.5 with its official switch) unless ``settings`` say otherwise."""
    plan = plan_sampling("base", steps=steps, **settings)
    return sample(
        model, make_noise((1, CHANNELS, H, W), seed=42), ours_conditioning(pos, quoted), ours_conditioning(neg, False),
        schedule=plan.schedule, guidance=plan.guidance,
    )  # fmt: skip


@pytest.mark.parametrize("steps", [8, 20, 50])
@pytest.mark.parametrize("quoted", [False, True], ids=["plain", "quoted"])
def test_base_official_mix_matches_diffusers(base, quoted, steps):
    ref, ours = base
    pos = prompt(1, valid=14, byt5_valid=6 if quoted else 0)
    neg = prompt(2, valid=9, byt5_valid=0)
    # diffusers picks its guider from the positive ByT5 embeddings: the OCR one only when they are non-zero.
    pipe = pipeline(ref, shift=5.0, general_start=GENERAL_START_STEP, ocr_start=OCR_START_STEP)
    want = run_diffusers(pipe, make_noise((1, CHANNELS, H, W), seed=42), pos, neg, steps)
    got = base_run(ours, pos, neg, quoted, steps)
    assert_close(got, want, REL_TOL)

    # The test must see where the switch is. Moving it one step moves the result by 0.6-5 % of its largest value
    # (least at 50 steps, 60x REL_TOL, while the parity error is ~1e-6), hence the smaller margin for neighbours;
    # the scaled switch (where it differs) moves it 3.5-8 %.
    def distinct(start: str | int, margin: float) -> None:
        other = base_run(ours, pos, neg, quoted, steps, apg_start=start)
        assert float((other - want).abs().max()) > margin * REL_TOL * float(want.abs().max()), start

    official = resolve_apg_start("official", steps, quoted)
    scaled = resolve_apg_start("scaled", steps, quoted)
    neighbours = [s for s in (official - 1, official + 1) if s < steps]  # none when 39 is past the run
    for start in neighbours:
        distinct(start, 10)
    if scaled != official:
        distinct("scaled", 100)
    else:  # 50 steps: the scaled switch is the official one
        assert torch.equal(base_run(ours, pos, neg, quoted, steps, apg_start="scaled"), got)
    assert neighbours or scaled != official
    if steps == 8 and not quoted:  # cond and uncond one after the other: the same result
        assert_close(base_run(ours, pos, neg, quoted, steps, batched_cfg=False), want, REL_TOL)


def test_distilled_meanflow_matches_diffusers():
    ref, ours = diffusers_pair(PARITY_DISTILLED, seed=22, out_gain=OUT_GAIN)
    pos = prompt(3, valid=11, byt5_valid=5)
    noise = make_noise((1, CHANNELS, H, W), seed=7)
    pipe = pipeline(ref, shift=4.0, general_start=None, ocr_start=None)
    want = run_diffusers(pipe, noise, pos, None, 8, distilled_guidance_scale=3.25)
    # steps 8, scale 3.25, shift 4 and the distilled mode are the variant's defaults
    got = sample(ours, noise, ours_conditioning(pos, True))
    assert_close(got, want, REL_TOL)


# --- Sampler behaviour on tiny random DiTs (no diffusers involved) ---------------------------------------------


def text(seed: int, valid: int, quoted: bool = False) -> Conditioning:
    gen = torch.Generator().manual_seed(seed)
    byt5 = torch.randn(1, 4, BYT5_DIM, generator=gen) if quoted else None
    return Conditioning(
        torch.randn(1, valid, TEXT_DIM, generator=gen), torch.ones(1, valid, dtype=torch.long), byt5,
        None if byt5 is None else torch.ones(1, 4, dtype=torch.long), quoted,
    )  # fmt: skip


@pytest.fixture(scope="module")
def tiny_base() -> RecordingDiT:
    return recording_dit(TINY, seed=1)


@pytest.fixture(scope="module")
def tiny_distilled() -> RecordingDiT:
    return recording_dit(TINY_DISTILLED, seed=2)


def planned(model, noise, positive, negative=None, *, latent=None, concat=None, callback=None, **settings):
    """``sample`` with the schedule and guidance that ``plan_sampling`` makes of the user-facing settings."""
    plan = plan_sampling(model.config.variant, **settings)
    return sample(
        model, noise, positive, negative, schedule=plan.schedule, guidance=plan.guidance, latent=latent,
        concat=concat, callback=callback,
    )  # fmt: skip


def test_same_seed_gives_the_same_latents(tiny_base):
    def run(seed: int) -> torch.Tensor:
        noise = make_noise((2, CHANNELS, 4, 4), seed)
        return planned(tiny_base, noise, text(1, 5), text(2, 3), steps=3, guidance_scale=3.5)

    first = run(123)
    assert torch.equal(first, run(123))
    assert not torch.equal(first, run(124))


def test_official_noise_is_the_direct_bf16_cpu_draw():
    shape = (1, CHANNELS, 6, 5)
    want = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(42), dtype=torch.bfloat16)
    got = make_noise(shape, 42)
    assert got.dtype == torch.float32 and torch.equal(got, want.float())
    batch = make_noise((3, *shape[1:]), 42)
    whole = torch.randn((3, *shape[1:]), generator=torch.Generator("cpu").manual_seed(42), dtype=torch.bfloat16)
    assert torch.equal(batch, whole.float())  # the official pipeline's batch draw
    assert torch.equal(batch[:1], got) and torch.equal(batch[1:], make_noise((2, *shape[1:]), 42, batch_offset=1))
    fp32 = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(42))
    assert torch.equal(make_noise(shape, 42, mode="comfy"), fp32)


def test_callback_runs_once_per_step(tiny_base):
    seen = []

    def callback(step, total, x, denoised):
        seen.append((step, total, x.clone(), denoised.shape))

    out = planned(tiny_base, make_noise((1, CHANNELS, 4, 4), 0), text(1, 5), text(2, 3), steps=3, callback=callback)
    assert [(s, n) for s, n, _, _ in seen] == [(0, 3), (1, 3), (2, 3)]
    assert torch.equal(seen[-1][2], out) and seen[0][3] == out.shape


def test_exception_in_callback_stops_sampling(tiny_base):
    def callback(step, total, x, denoised):
        if step == 1:
            raise InterruptedError("stop")

    tiny_base.calls.clear()
    with pytest.raises(InterruptedError):
        planned(tiny_base, make_noise((1, CHANNELS, 4, 4), 0), text(1, 5), text(2, 3), steps=5, callback=callback)
    assert len(tiny_base.calls) == 2


def test_distilled_meanflow_follows_custom_sigmas(tiny_distilled):
    tiny_distilled.calls.clear()
    planned(tiny_distilled, make_noise((1, CHANNELS, 4, 4), 0), text(1, 5, quoted=True), sigmas=[1.0, 0.7, 0.25, 0.0])
    calls = tiny_distilled.calls
    assert [c["x"].shape[0] for c in calls] == [1, 1, 1]  # one pass per step, no negative
    assert torch.allclose(torch.cat([c["t"] for c in calls]), torch.tensor([1000.0, 700.0, 250.0]))
    assert torch.allclose(torch.cat([c["r"] for c in calls]), torch.tensor([700.0, 250.0, 0.0]))
    assert all(torch.equal(c["guidance"], torch.tensor([3250.0])) for c in calls)


def test_img2img_starts_from_the_latent_noised_to_the_first_sigma(tiny_base):
    noise, latent = make_noise((1, CHANNELS, 4, 4), 3), make_noise((1, CHANNELS, 4, 4), 4)
    sigma0 = shifted_sigmas(8, 5)[4]  # 4 steps at denoise 0.5: the tail of 8
    tiny_base.calls.clear()
    planned(tiny_base, noise, text(1, 5), text(2, 3), steps=4, denoise=0.5, latent=latent, mode="cfg")
    first = tiny_base.calls[0]
    assert len(tiny_base.calls) == 4 and first["x"].shape[0] == 2  # [negative, positive] in one forward
    assert torch.allclose(first["x"][1:], (1 - sigma0) * latent + sigma0 * noise)
    assert torch.allclose(first["t"], sigma0 * 1000)
    assert first["text"].shape[1] == 5  # the shorter negative is padded to the positive's length


def test_refiner_gets_its_condition_channels_and_no_second_timestep():
    refiner = recording_dit(TINY_REFINER, seed=3)
    noise = make_noise((1, CHANNELS, 1, 4, 4), 0)
    concat = torch.randn(1, CHANNELS, 1, 4, 4)
    out = sample(refiner, noise, text(1, 5), concat=concat)
    assert out.shape == noise.shape and len(refiner.calls) == 4  # the refiner's 4 default steps
    assert refiner.calls[0]["x"].shape[1] == 2 * CHANNELS and torch.equal(refiner.calls[0]["x"][:, CHANNELS:], concat)
    assert all(c["r"] is None and torch.equal(c["guidance"], torch.tensor([3500.0])) for c in refiner.calls)
    with pytest.raises(ValueError, match="concat"):
        sample(refiner, noise, text(1, 5))
    with pytest.raises(ValueError, match="latents"):
        sample(refiner, noise[:, :, 0], text(1, 5), concat=concat[:, :, 0])


def test_negative_and_positive_share_one_padded_batch():
    pos, neg = text(1, 5, quoted=True), text(2, 3)
    both = concat_conditionings([neg, pos])
    assert both.mllm.shape == (2, 5, TEXT_DIM) and both.mllm_mask.tolist() == [[1, 1, 1, 0, 0], [1] * 5]
    assert torch.equal(both.mllm[0, :3], neg.mllm[0]) and not bool(both.mllm[0, 3:].any())
    assert both.byt5.shape == (2, 4, BYT5_DIM) and both.byt5_mask.tolist() == [[0] * 4, [1] * 4]
    assert concat_conditionings([neg, neg]).byt5 is None
    copy = Conditioning.of(SimpleNamespace(mllm=pos.mllm, mllm_mask=pos.mllm_mask, byt5=pos.byt5,
                                           byt5_mask=pos.byt5_mask, has_quoted_text=True))  # fmt: skip
    assert copy.has_quoted_text and copy.has_byt5 and copy.expand(3).mllm.shape == (3, 5, TEXT_DIM)
    with pytest.raises(ValueError, match="mask"):
        Conditioning(pos.mllm, pos.mllm_mask[:, :2])


def test_latent_space_helpers():
    latent = torch.randn(1, CHANNELS, 2, 2)
    assert torch.equal(to_model_space(latent), latent * 0.75289)
    assert torch.allclose(to_vae_space(to_model_space(latent)), latent)


@pytest.mark.parametrize(
    ("variant", "kwargs", "message"),
    [
        ("base", {"steps": 0}, "steps"),
        ("base", {"denoise": 0.0}, "denoise"),
        ("base", {"denoise": 1.2}, "denoise"),
        ("base", {"sigmas": [1.0, 0.4, 0.6, 0.0]}, "decreasing"),
        ("base", {"sigmas": [1.0, 0.4, 0.1]}, "end at 0"),
        ("base", {"mode": "distilled"}, "no guidance embedding"),
        ("base", {"mode": "official", "negative": None}, "negative"),
        ("base", {"mode": "apg", "negative": None}, "negative"),
        ("base", {"denoise": 0.5}, "needs a latent"),
        ("base", {"mode": "turbo"}, "unknown guidance mode"),
        ("distilled", {"mode": "apg"}, "guidance-distilled"),
        ("distilled", {"mode": "official"}, "guidance-distilled"),
        ("distilled", {"mode": "cfg"}, "guidance-distilled"),
    ],
)
def test_bad_input_is_refused(tiny_base, tiny_distilled, variant, kwargs, message):
    model = tiny_base if variant == "base" else tiny_distilled
    kwargs = {"negative": text(2, 3), "steps": 2, **kwargs}
    negative = kwargs.pop("negative")
    with pytest.raises(ValueError, match=message):
        planned(model, make_noise((1, CHANNELS, 4, 4), 0), text(1, 5), negative, **kwargs)
