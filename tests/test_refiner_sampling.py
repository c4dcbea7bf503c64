"""The refiner procedure: frame packing, condition augmentation, the sampling loop, and parity of the final
latents with diffusers 0.39.0's ``HunyuanImageRefinerPipeline`` on tiny random weights, fp32."""

from __future__ import annotations

import pytest
import torch
from diffusers import (
    AutoencoderKLHunyuanImageRefiner,
    FlowMatchEulerDiscreteScheduler,
    HunyuanImageRefinerPipeline,
)
from dit_files import TINY, TINY_REFINER, diffusers_pair, recording_dit
from einops import rearrange
from helpers import assert_close

from hunyuan_core.sampling import REFINER_SCALE, Conditioning, guidance_for, make_noise, shifted_sigmas
from hunyuan_core.sampling.refiner import condition_latents, pack_frames, refine, unpack_frames

pytestmark = [pytest.mark.parity, pytest.mark.usefixtures("one_thread")]

REL_TOL = 1e-4
TEXT_DIM, TEXT_LEN = 48, 20
H, W = 6, 5


# --- packing, as the official pipeline's einops rearranges spell it ------------------------------------------------


def official_pack(latent: torch.Tensor) -> torch.Tensor:
    frames = torch.cat((latent[:, :, :1], latent), dim=2)
    frames = rearrange(frames, "b c f h w -> b f c h w")
    frames = rearrange(frames, "b (f n) c h w -> b f (n c) h w", n=2)
    return rearrange(frames, "b f c h w -> b c f h w")


def official_unpack(latent: torch.Tensor) -> torch.Tensor:
    latent = rearrange(latent, "b c f h w -> b f c h w")
    latent = rearrange(latent, "b f (n c) h w -> b (f n) c h w", n=2)
    return rearrange(latent, "b f c h w -> b c f h w")[:, :, 1:]


@pytest.mark.parametrize("frames", [1, 3, 5])
def test_pack_and_unpack_follow_the_official_rearranges(frames):
    latent = torch.randn(2, 32, frames, 3, 4)
    packed = pack_frames(latent)
    assert torch.equal(packed, official_pack(latent))
    assert torch.equal(unpack_frames(packed), official_unpack(packed))
    assert torch.equal(unpack_frames(packed), latent)


def test_an_image_latent_packs_to_its_frame_twice_on_channels():
    latent = torch.randn(1, 32, 1, 3, 4)
    assert torch.equal(pack_frames(latent), torch.cat([latent, latent], dim=1))
    assert torch.equal(pack_frames(latent[:, :, 0]), pack_frames(latent))  # 4-D accepted as one frame
    with pytest.raises(ValueError, match="odd number of frames"):
        pack_frames(torch.randn(1, 32, 2, 3, 4))


def test_condition_is_scaled_packed_latent_mixed_with_noise():
    latent, noise = torch.randn(1, 32, 1, 3, 4), torch.randn(1, 64, 1, 3, 4)
    want = 0.25 * noise + 0.75 * (official_pack(latent) * 1.03682)
    assert torch.allclose(condition_latents(latent, noise), want, rtol=0, atol=1e-6)
    assert torch.equal(condition_latents(latent, noise, 0.0), official_pack(latent) * REFINER_SCALE)
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        condition_latents(latent, noise, 1.5)


# --- the loop ------------------------------------------------------------------------------------------------------


def prompt(seed: int, valid: int) -> Conditioning:
    gen = torch.Generator().manual_seed(seed)
    return Conditioning(torch.randn(1, valid, TEXT_DIM, generator=gen), torch.ones(1, valid, dtype=torch.long))


def test_refiner_loop_runs_the_official_schedule_with_the_condition_appended():
    model = recording_dit(TINY_REFINER, seed=4)
    latent = torch.randn(2, 32, 1, H, W)
    noise, aug = make_noise((2, 64, 1, H, W), 1), make_noise((2, 64, 1, H, W), 2, "comfy")
    out = refine(model, latent, prompt(1, 7), noise=noise, condition_noise=aug)
    assert out.shape == latent.shape
    calls = model.calls
    assert len(calls) == 4  # official 4 steps, one pass each (no CFG)
    want_t = shifted_sigmas(4, 4.0)[:-1] * 1000  # shift 4
    assert torch.allclose(torch.cat([c["t"][:1] for c in calls]), want_t)
    assert all(torch.equal(c["guidance"], torch.tensor([3500.0, 3500.0])) for c in calls)  # 3.5 x 1000
    assert all(c["r"] is None and c["byt5"] is None for c in calls)  # time_r_in unused, no glyph branch
    cond = condition_latents(latent, aug)
    assert torch.equal(calls[0]["x"][:, :64], noise)  # pure noise start at sigma 1
    assert all(torch.equal(c["x"][:, 64:], cond) for c in calls)


def test_refiner_refuses_a_stage1_model():
    with pytest.raises(ValueError, match=r"base model .* not the refiner"):
        refine(recording_dit(TINY, seed=5), torch.randn(1, 32, 1, 2, 2), prompt(1, 3),
               noise=torch.randn(1, 64, 1, 2, 2), condition_noise=torch.randn(1, 64, 1, 2, 2))  # fmt: skip


# --- parity with diffusers' refiner pipeline -----------------------------------------------------------------------


def tiny_reference_vae() -> AutoencoderKLHunyuanImageRefiner:
    return AutoencoderKLHunyuanImageRefiner(
        latent_channels=32, block_out_channels=(16, 32, 64, 64, 64), layers_per_block=1,
    ).eval()  # fmt: skip


def reference_pipeline(ref) -> HunyuanImageRefinerPipeline:
    return HunyuanImageRefinerPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=4.0), vae=tiny_reference_vae(), text_encoder=None,
        tokenizer=None, transformer=ref,
    )  # fmt: skip


def padded_prompt(seed: int, valid: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    mask = torch.zeros(1, TEXT_LEN, dtype=torch.long)
    mask[:, :valid] = 1
    return torch.randn(1, TEXT_LEN, TEXT_DIM, generator=gen), mask


@pytest.mark.parametrize("scale", [3.25, 3.5])
def test_refiner_latents_match_diffusers(scale):
    """Same transformer, prompt states, stage-1 latent, starting noise and augmentation noise: same final latents.

    diffusers takes the packed, scaled condition as ``image`` and draws the augmentation noise as the first draw of
    ``generator`` (the starting ``latents`` being given).
    """
    ref, ours = diffusers_pair(TINY_REFINER, seed=31, out_gain=5.0)  # velocities of unit scale: the steps show
    embeds, mask = padded_prompt(3, valid=13)
    latent = torch.randn(1, 32, 1, H, W, generator=torch.Generator().manual_seed(8))
    noise = make_noise((1, 64, 1, H, W), seed=42)
    aug = torch.randn((1, 64, 1, H, W), generator=torch.Generator().manual_seed(9))
    packed = official_pack(latent) * 1.03682
    want = reference_pipeline(ref)(
        image=packed, height=H * 16, width=W * 16, num_inference_steps=4, distilled_guidance_scale=scale,
        latents=noise.clone(), prompt_embeds=embeds, prompt_embeds_mask=mask, output_type="latent",
        generator=torch.Generator().manual_seed(9), return_dict=False,
    )[0]  # fmt: skip
    got = refine(
        ours, latent, Conditioning(embeds[:, :13], mask[:, :13]), noise=noise, condition_noise=aug,
        guidance=guidance_for("refiner", scale=scale),
    )  # fmt: skip
    assert_close(got, official_unpack(want / 1.03682), REL_TOL)
