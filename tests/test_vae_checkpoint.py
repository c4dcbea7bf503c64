"""Stage-1 VAE files in every layout, refusals of look-alikes, and the image API (sizes, slices, precision, tiles)."""

from __future__ import annotations

import itertools
import logging

import pytest
import torch
from dit_files import TINY as TINY_DIT
from dit_files import random_state as random_dit_state
from helpers import save, truncate
from vae_files import (
    LAYOUTS,
    TINY,
    TINY_NIN,
    comfy_org,
    official_ckpt,
    random_state,
    sd_vae_diffusers,
    sd_vae_ldm,
)

from hunyuan_core.vae import (
    HunyuanImageVAE,
    Tiling,
    VAECheckpointError,
    VAEConfig,
    decode_image,
    encode_image,
    inspect_vae,
)
from hunyuan_core.vae.checkpoint import ORIGINAL, load_vae
from hunyuan_core.vae.images import tile_starts, tiled_decode
from hunyuan_core.vae_common import DiagonalGaussian

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_thread")]

log = logging.getLogger(__name__)

# A cheap 4x VAE for the API tests: the code paths do not depend on the factor, the run time does.
SMALL = VAEConfig(latent_channels=16, block_out_channels=(32, 32, 64), layers_per_block=1, spatial_compression=4)


def small_vae(seed: int = 0) -> HunyuanImageVAE:
    model = HunyuanImageVAE(SMALL).eval()
    model.load_state_dict(random_state(SMALL, seed=seed))
    return model


@pytest.mark.parametrize("cfg", [TINY, TINY_NIN], ids=["tiny32x", "tiny_nin"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_loads_identical_parameters(tmp_path, cfg, layout):
    state = random_state(cfg)
    path, expected_layout, prefix, dtype = LAYOUTS[layout].write(tmp_path, state, cfg)
    info = inspect_vae(path)
    assert (info.layout, info.prefix, info.weight_dtype) == (expected_layout, prefix, dtype)
    assert info.config == cfg
    got = dict(load_vae(path).named_parameters())
    assert set(got) == set(state)
    for name, tensor in state.items():
        assert got[name].dtype == dtype, name
        assert torch.equal(got[name], tensor.to(dtype)), name


def test_full_size_config_is_detected_from_shapes_alone(tmp_path):
    """The real 405.6 M-parameter layout, written as a header-only file of the right shapes (no data read)."""
    from hunyuan_core.vae import STAGE1_VAE
    from hunyuan_core.vae.checkpoint import expected_shapes

    shapes = expected_shapes(STAGE1_VAE)
    assert sum(torch.Size(s).numel() for s in shapes.values()) == 405_575_491
    meta = {name: torch.empty(s, dtype=torch.float16, device="meta") for name, s in shapes.items()}
    header = {k: {"dtype": "F16", "shape": list(v.shape), "data_offsets": [0, 0]} for k, v in meta.items()}
    offset = 0
    for entry in header.values():
        size = torch.Size(entry["shape"]).numel() * 2
        entry["data_offsets"] = [offset, offset + size]
        offset += size
    import json
    import struct

    raw = json.dumps(header).encode()
    path = tmp_path / "hunyuan_image_2.1_vae_fp16.safetensors"
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + offset)  # sparse: the size is right, nothing is written
    info = inspect_vae(path)
    assert info.config == STAGE1_VAE and info.layout == ORIGINAL


def test_dtype_override_casts_on_load(tmp_path):
    state = random_state(TINY_NIN)
    path = save(comfy_org(state), tmp_path / "vae_fp16.safetensors")
    model = load_vae(path, dtype=torch.float32)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert torch.equal(model.decoder.conv_out.weight, state["decoder.conv_out.weight"].half().float())


# --- refusals ------------------------------------------------------------------------------------------------------


def refiner_vae_lookalike() -> dict[str, torch.Tensor]:
    return {
        "decoder.conv_in.conv.weight": torch.zeros(64, 32, 3, 3, 3),
        "encoder.conv_in.conv.weight": torch.zeros(32, 3, 3, 3, 3),
    }


BAD_FILES = [
    ("sd_vae.safetensors", lambda: sd_vae_ldm(4), "a Stable Diffusion 1.x/2.x or SDXL VAE (4 latent channels, 8x)"),
    ("sdxl_vae_diffusers.safetensors", lambda: sd_vae_diffusers(4), "SDXL VAE (4 latent channels, 8x, diffusers"),
    ("flux_ae.safetensors", lambda: sd_vae_ldm(16), "a 16-channel VAE such as SD3's or Flux's"),
    ("refiner_vae.safetensors", refiner_vae_lookalike, "the HunyuanImage-2.1 refiner VAE"),
    ("dit.safetensors", lambda: random_dit_state(TINY_DIT), "a HunyuanImage-2.1 diffusion model (DiT)"),
    ("sd_xl_base_1.0.safetensors", lambda: full_sdxl_checkpoint(), "a full SDXL checkpoint (diffusion model, text "
     "encoder and VAE in one file; it belongs in models/checkpoints, for a checkpoint loader)"),
    ("vae_decoder_only.safetensors", lambda: decoder_only(comfy_org(random_state(TINY))),
     "a VAE decoder alone (no encoder weights"),
    ("some_lora.safetensors", lambda: {"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": torch.zeros(4, 8),
                                       "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight": torch.zeros(24, 4)},
     "a LoRA (changes to a model, not a model): put it in models/loras and apply it with a LoRA loader"),
]  # fmt: skip


def full_sdxl_checkpoint() -> dict[str, torch.Tensor]:
    """An SDXL all-in-one checkpoint's key layout: UNet, two text encoders, and the VAE (a real SD VAE part)."""
    unet = {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(8, 4, 3, 3),
            "model.diffusion_model.output_blocks.0.0.in_layers.0.weight": torch.zeros(8)}  # fmt: skip
    text = {"conditioner.embedders.0.transformer.text_model.encoder.layers.0.mlp.fc1.weight": torch.zeros(8, 8),
            "conditioner.embedders.1.model.transformer.resblocks.0.mlp.c_fc.weight": torch.zeros(8, 8)}  # fmt: skip
    return unet | text | {f"first_stage_model.{k}": v for k, v in sd_vae_ldm(4).items()}


def decoder_only(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.startswith(("encoder.", "quant_conv."))}


@pytest.mark.parametrize(("filename", "make", "appears"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_wrong_file_names_what_it_appears_to_be(tmp_path, filename, make, appears):
    path = save(make(), tmp_path / filename)
    with pytest.raises(VAECheckpointError, match=r"is not a HunyuanImage-2\.1 stage-1 VAE: it appears to be") as exc:
        inspect_vae(path)
    assert appears in str(exc.value)
    with pytest.raises(VAECheckpointError):
        load_vae(path)


@pytest.mark.parametrize("name", ["hunyuan_image_2.1_vae_fp16.safetensors", "pytorch_model.ckpt"])
def test_truncated_file_says_so(tmp_path, name):
    state = random_state(TINY_NIN)
    data = official_ckpt(state) if name.endswith(".ckpt") else comfy_org(state)
    path = truncate(save(data, tmp_path / name))
    with pytest.raises(VAECheckpointError, match="truncated") as exc:
        load_vae(path)
    assert name in str(exc.value)


def test_incomplete_file_lists_what_is_missing(tmp_path):
    state = comfy_org(random_state(TINY_NIN))
    del state["decoder.mid.attn_1.q.weight"]
    with pytest.raises(VAECheckpointError, match=r"incomplete.*1 tensors missing.*decoder\.mid\.attn_1\.q\.weight"):
        inspect_vae(save(state, tmp_path / "vae.safetensors"))


def test_missing_file_and_empty_folder(tmp_path):
    with pytest.raises(VAECheckpointError, match="does not exist"):
        inspect_vae(tmp_path / "nope.safetensors")
    (tmp_path / "vae").mkdir()
    with pytest.raises(VAECheckpointError, match="no VAE weights in folder"):
        inspect_vae(tmp_path / "vae")


# --- image API -----------------------------------------------------------------------------------------------------


def test_encode_rejects_sides_not_multiple_of_32_naming_nearest_sizes():
    model = HunyuanImageVAE(TINY_NIN.with_(spatial_compression=4)).eval()  # the check uses the model's factor
    images = torch.rand(1, 70, 100, 3)
    with pytest.raises(ValueError, match=r"100x70 .*multiples of 4.*crop to 100x68 or pad or resize to 100x72"):
        encode_image(model, images)
    full = HunyuanImageVAE(VAEConfig(block_out_channels=(32,) * 6, latent_channels=16), device="meta")
    with pytest.raises(ValueError, match=r"1000x700 .*multiples of 32.*crop to 992x672 or pad or resize to 1024x704"):
        full.encode(torch.empty(1, 3, 700, 1000, device="meta"))
    with pytest.raises(ValueError, match=r"pad or resize to 32x32"):
        encode_image(full, torch.empty(1, 20, 20, 3, device="meta"))


def test_decode_rejects_a_4_channel_latent():
    with pytest.raises(ValueError, match="4-channel SD/SDXL latent"):
        decode_image(small_vae(), torch.zeros(1, 4, 8, 8))


def test_image_api_shapes_and_range():
    model = small_vae()
    images = torch.rand(2, 24, 16, 4)  # an alpha channel is dropped, as ComfyUI's VAEEncode does
    latents = encode_image(model, images)
    assert latents.shape == (2, 16, 6, 4) and latents.dtype == torch.float32
    out = decode_image(model, latents)
    assert out.shape == (2, 24, 16, 3) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1


def test_batch_slicing_equals_unsliced():
    model = small_vae()
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(3, 16, 6, 5, generator=gen)
    images = torch.rand(3, 24, 20, 3, generator=gen)
    whole = decode_image(model, z)
    # Not bit-identical: the CPU's convolution kernels may sum in another order for another batch size.
    torch.testing.assert_close(decode_image(model, z, batch_size=1), whole, rtol=0, atol=1e-5)
    torch.testing.assert_close(decode_image(model, z, batch_size=2), whole, rtol=0, atol=1e-5)
    torch.testing.assert_close(
        encode_image(model, images, batch_size=2), encode_image(model, images), rtol=0, atol=1e-5
    )


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precision_over_fp32_weights_runs_under_autocast(precision):
    """The official way: fp32 weights, half-precision autocast; close to fp32 (loose: random weights)."""
    model = small_vae()
    z = torch.randn(1, 16, 4, 4, generator=torch.Generator().manual_seed(2))
    ref = decode_image(model, z)
    half = decode_image(model, z, precision=precision)
    assert half.dtype == torch.float32 and next(model.parameters()).dtype == torch.float32
    err = (half - ref).abs().max().item()
    log.info("%s autocast decode vs fp32: max abs error %.2e (0..1 scale)", precision, err)
    assert err < 0.05


def test_fp32_precision_over_half_weights_is_refused():
    model = small_vae().half()
    with pytest.raises(ValueError, match=r"load it with dtype torch\.float32"):
        decode_image(model, torch.zeros(1, 16, 2, 2), precision="fp32")
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        decode_image(model, torch.zeros(1, 16, 2, 2), precision="fp8")


def test_posterior_clamps_logvar():
    moments = torch.tensor([0.5, -100.0, 100.0, 3.0]).reshape(1, 4, 1, 1).repeat(1, 1, 1, 1)
    post = DiagonalGaussian.from_moments(torch.cat([moments, moments], dim=1))
    assert post.logvar.flatten().tolist() == [0.5, -30.0, 20.0, 3.0]
    assert torch.equal(post.mode(), post.mean)


# --- tiled decode --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "tile", "overlap"), [(64, 32, 8), (64, 40, 8), (12, 6, 2), (13, 5, 0), (5, 8, 2)])
def test_tiles_cover_with_at_least_the_overlap(size, tile, overlap):
    starts = tile_starts(size, tile, overlap)
    assert starts[0] == 0 and min(starts[-1] + tile, size) == size
    for a, b in itertools.pairwise(starts):
        assert a + tile - b >= overlap


class LocalDecoder:
    """A stand-in VAE whose decode is purely local (each latent cell becomes its own 4x4 block)."""

    config = SMALL

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z[:, :3].repeat_interleave(4, 2).repeat_interleave(4, 3)


def test_tiled_blending_is_exact_for_a_local_decoder():
    """The cross-fade weights add up to one everywhere: a decoder without global context tiles without error."""
    z = torch.randn(2, 16, 13, 11)
    full = LocalDecoder().decode(z)
    for tiling in (Tiling(5, 2), Tiling(4, 0), Tiling(6, 3)):
        torch.testing.assert_close(tiled_decode(LocalDecoder(), z, tiling), full, rtol=1e-6, atol=1e-6)


def test_tiled_decode_error_is_measured_and_bounded():
    """Against the full decode on tiny random weights. GroupNorm statistics and mid attention are per tile, so the
    error is real; more overlap must reduce it. Bounds are these measurements with margin (0..1 IMAGE scale)."""
    model = small_vae()
    z = torch.randn(1, 16, 12, 12, generator=torch.Generator().manual_seed(0))
    full = decode_image(model, z)
    assert torch.equal(decode_image(model, z, tiling=Tiling(12, 4)), full)  # one tile: the full decode, exactly
    errors = {}
    for tiling in (Tiling(6, 0), Tiling(8, 2), Tiling(10, 4)):
        diff = (decode_image(model, z, tiling=tiling) - full).abs()
        errors[tiling] = (diff.max().item(), diff.mean().item())
        log.info("tiled decode %s: max abs error %.3f, mean %.4f", tiling, *errors[tiling])
    maxima = [e[0] for e in errors.values()]
    assert maxima == sorted(maxima, reverse=True)
    assert errors[Tiling(10, 4)][0] < 0.2 and errors[Tiling(10, 4)][1] < 0.03
