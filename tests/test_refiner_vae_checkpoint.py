"""Refiner VAE files in every layout, refusals of look-alikes, the model's input checks, the image API, and the
routing between the direct and module paths of the convolutions (ComfyUI-style casting layers)."""

from __future__ import annotations

import json
import logging
import re
import struct
from types import SimpleNamespace
from typing import ClassVar

import pytest
import torch
import vae_files
from dit_files import TINY as TINY_DIT
from dit_files import random_state as random_dit_state
from helpers import save, truncate
from refiner_vae_files import (
    LAYOUTS,
    TINY,
    TINY_NIN,
    comfy_org,
    hunyuan_video_vae,
    official_pt,
    random_state,
)
from torch import nn

from hunyuan_core.refiner_vae import (
    REFINER_VAE,
    RefinerVAE,
    RefinerVAECheckpointError,
    RefinerVAEConfig,
    decode_image,
    encode_image,
    inspect_refiner_vae,
    load_refiner_vae,
)
from hunyuan_core.refiner_vae.checkpoint import ORIGINAL, expected_shapes
from hunyuan_core.vae import VAECheckpointError, VAEConfig, inspect_vae

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_thread")]

log = logging.getLogger(__name__)

# A cheap 4x config for the API tests (one spatial, one temporal resampler): the code paths do not depend on the
# factor, the run time does.
SMALL = RefinerVAEConfig(
    latent_channels=4, block_out_channels=(16, 32, 32), layers_per_block=1, spatial_compression=4,
    temporal_compression=2,
)  # fmt: skip


def small_vae(seed: int = 0, operations=nn) -> RefinerVAE:
    model = RefinerVAE(SMALL, operations=operations).eval()
    model.load_state_dict(random_state(SMALL, seed=seed))
    return model.requires_grad_(False)


# --- layouts -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", [TINY, TINY_NIN], ids=["tiny16x", "tiny_nin"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_loads_identical_parameters(tmp_path, cfg, layout):
    state = random_state(cfg)
    path, expected_layout, prefix, dtype = LAYOUTS[layout].write(tmp_path, state)
    info = inspect_refiner_vae(path)
    assert (info.layout, info.prefix, info.weight_dtype) == (expected_layout, prefix, dtype)
    assert info.config == cfg
    assert info.wrapped_shortcuts == (layout == "comfy_wrapped_shortcuts" and cfg is TINY_NIN)
    assert "refiner VAE" in info.describe() and f"{cfg.latent_channels} latent channels" in info.describe()
    got = dict(load_refiner_vae(path).named_parameters())
    assert set(got) == set(state)
    for name, tensor in state.items():
        assert got[name].dtype == dtype and not got[name].requires_grad, name
        assert torch.equal(got[name], tensor.to(dtype)), name


def test_full_size_config_is_detected_from_shapes_alone(tmp_path):
    """The released 1.26 B-parameter layout as a header-only fp16 file of the right shapes (sparse, no data read)."""
    shapes = expected_shapes(REFINER_VAE)
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = torch.Size(shape).numel() * 2
        header[name] = {"dtype": "F16", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    path = tmp_path / "hunyuan_image_refiner_vae_fp16.safetensors"
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + offset)
    info = inspect_refiner_vae(path)
    assert info.config == REFINER_VAE and info.layout == ORIGINAL
    assert info.config.encoder_out_group == 16 and info.config.decoder_in_repeat == 32
    assert [t for *_, t in REFINER_VAE.downsamplers] == [False, False, True, True]
    assert [t for *_, t in REFINER_VAE.upsamplers] == [True, True, False, False]


def test_dtype_override_casts_on_load(tmp_path):
    state = random_state(TINY_NIN)
    path = save(comfy_org(state), tmp_path / "refiner_vae_fp16.safetensors")
    model = load_refiner_vae(path, dtype=torch.float32)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert torch.equal(model.decoder.conv_out.conv.weight, state["decoder.conv_out.conv.weight"].half().float())


def test_invalid_configs_are_refused():
    with pytest.raises(ValueError, match="spatial_compression 12 is not a power of two"):
        RefinerVAEConfig(spatial_compression=12)
    with pytest.raises(ValueError, match="temporal_compression 32"):
        RefinerVAEConfig(temporal_compression=32)
    with pytest.raises(ValueError, match="must divide by 2 x latent_channels"):
        RefinerVAEConfig(latent_channels=48)
    with pytest.raises(ValueError, match=r"downsampling 128 -> 260 channels \(spatial\) is invalid"):
        RefinerVAEConfig(block_out_channels=(128, 260, 512, 1024, 1024))


# --- refusals ------------------------------------------------------------------------------------------------------


def stage1_vae_comfy():
    """The tiny stage-1 VAE in Comfy-Org's layout (16 latent channels: any stage-1-shaped file is named)."""
    return vae_files.comfy_org(vae_files.random_state(vae_files.TINY_NIN))


def stage1_vae_official():
    """Full-size latent width (64 channels), official pickled layout with prefix ``vae.``."""
    cfg = VAEConfig(block_out_channels=(32, 32, 64, 128), layers_per_block=1, spatial_compression=8)
    return vae_files.official_ckpt(vae_files.random_state(cfg))


def text_encoder():
    """A decoder-only language model's names, as in Qwen2.5-VL's text part."""
    return {
        "model.embed_tokens.weight": torch.zeros(16, 8),
        "model.layers.0.self_attn.q_proj.weight": torch.zeros(8, 8),
    }


STAGE1 = ("stage-1", "load it with the HunyuanImage 2.1 VAE Loader")
BAD_FILES = [
    ("hunyuan_image_2.1_vae_fp16.safetensors", stage1_vae_comfy, (*STAGE1, "16 latent channels, 4x")),
    ("pytorch_model.ckpt", stage1_vae_official, (*STAGE1, "64 latent channels, 8x")),
    ("sdxl_vae.safetensors", lambda: vae_files.sd_vae_ldm(4), ("a Stable Diffusion 1.x/2.x or SDXL VAE",)),
    ("hunyuan_video_vae.safetensors", hunyuan_video_vae, ("GroupNorm", "HunyuanVideo's (16 latent channels)")),
    ("dit.safetensors", lambda: random_dit_state(TINY_DIT), ("a HunyuanImage-2.1 diffusion model (DiT)",)),
    ("qwen.safetensors", text_encoder, ("a text encoder",)),
    ("other.safetensors", lambda: {"foo.weight": torch.zeros(2)}, ("an unknown checkpoint", "'foo.weight'")),
    ("no_tensors.pt", lambda: {"epoch": 3, "note": "no tensors"}, ("an empty checkpoint",)),
]


@pytest.mark.parametrize(("filename", "make", "fragments"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_wrong_file_names_what_it_appears_to_be(tmp_path, filename, make, fragments):
    path = save(make(), tmp_path / filename)
    with pytest.raises(RefinerVAECheckpointError, match=r"is not a HunyuanImage-2\.1 refiner VAE: it appears") as exc:
        inspect_refiner_vae(path)
    message = str(exc.value)
    assert filename in message and "Expected the HunyuanImage-2.1 refiner VAE" in message
    for fragment in fragments:
        assert fragment in message, message
    with pytest.raises(RefinerVAECheckpointError):
        load_refiner_vae(path)


def test_stage1_loader_points_a_refiner_vae_to_the_refiner_loader(tmp_path):
    cfg = RefinerVAEConfig(block_out_channels=(16, 32, 64, 64, 64), layers_per_block=1)  # 32 latent channels
    path = save(comfy_org(random_state(cfg)), tmp_path / "hunyuan_image_refiner_vae_fp16.safetensors")
    assert inspect_refiner_vae(path).config == cfg
    with pytest.raises(
        VAECheckpointError, match=r"load it as the refiner VAE with the HunyuanImage 2\.1 Refiner VAE Loader"
    ):
        inspect_vae(path)


@pytest.mark.parametrize("name", ["hunyuan_image_refiner_vae_fp16.safetensors", "pytorch_model.pt"])
def test_truncated_file_says_so(tmp_path, name):
    state = random_state(TINY_NIN)
    data = official_pt(state, prefix="vae.") if name.endswith(".pt") else comfy_org(state)
    path = truncate(save(data, tmp_path / name))
    with pytest.raises(RefinerVAECheckpointError, match="truncated") as exc:
        load_refiner_vae(path)
    assert name in str(exc.value)


@pytest.mark.parametrize(
    ("filename", "content", "fragment"),
    [
        ("junk.safetensors", b"\xff" * 64, "is not a safetensors file"),
        ("list.pt", None, "holds a list, not a dict of tensors"),
    ],
)
def test_unreadable_files_are_named(tmp_path, filename, content, fragment):
    path = tmp_path / filename
    if content is None:
        torch.save([torch.zeros(2)], path)
    else:
        path.write_bytes(content)
    with pytest.raises(RefinerVAECheckpointError, match=f"cannot read {filename} as a HunyuanImage-2.1 refiner VAE"):
        inspect_refiner_vae(path)
    with pytest.raises(RefinerVAECheckpointError, match=fragment):
        inspect_refiner_vae(path)


def test_incomplete_file_says_how_many_and_gives_an_example(tmp_path):
    state = comfy_org(random_state(TINY))
    del state["decoder.mid.attn_1.q.weight"]
    del state["encoder.down.1.block.0.norm2.gamma"]
    state["decoder.up.4.block.2.conv2.conv.bias"] = torch.zeros(7, dtype=torch.float16)
    with pytest.raises(RefinerVAECheckpointError, match="incomplete") as exc:
        inspect_refiner_vae(save(state, tmp_path / "refiner_vae.safetensors"))
    message = str(exc.value)
    assert "2 tensors missing (e.g. " in message and "decoder.mid.attn_1.q.weight" in message
    assert "1 with unexpected shapes (e.g. decoder.up.4.block.2.conv2.conv.bias: file (7,), expected (16,))" in message


def test_inconsistent_structure_is_called_damaged(tmp_path):
    state = comfy_org(random_state(TINY))
    state["encoder.down.4.downsample.conv.conv.weight"] = torch.zeros(16, 128, 3, 3, 3, dtype=torch.float16)
    with pytest.raises(
        RefinerVAECheckpointError, match=r"looks like a HunyuanImage-2\.1 refiner VAE .* incomplete or damaged"
    ):
        inspect_refiner_vae(save(state, tmp_path / "refiner_vae.safetensors"))


def test_missing_file_and_empty_folder(tmp_path):
    with pytest.raises(RefinerVAECheckpointError, match="does not exist"):
        inspect_refiner_vae(tmp_path / "nope.safetensors")
    (tmp_path / "vae").mkdir()
    with pytest.raises(RefinerVAECheckpointError, match="no VAE weights in folder"):
        inspect_refiner_vae(tmp_path / "vae")


# --- model inputs --------------------------------------------------------------------------------------------------


def test_encode_rejects_sides_not_multiple_of_16_naming_nearest_sizes():
    full = RefinerVAE(device="meta")
    with pytest.raises(ValueError, match=r"1000x700 .*multiples of 16.*crop to 992x688 or pad or resize to 1008x704"):
        full.encode(torch.empty(1, 3, 700, 1000, device="meta"))
    with pytest.raises(ValueError, match=r"250x256 .*multiples of 16"):
        encode_image(full, torch.empty(1, 256, 250, 3, device="meta"))


def test_more_than_one_frame_is_refused():
    model = small_vae()
    with pytest.raises(ValueError, match=r"3 frames: this refiner VAE handles single images only \(T = 1\)"):
        model.encode(torch.zeros(1, 3, 3, 8, 8))
    with pytest.raises(ValueError, match=r"2 frames"):
        model.decode(torch.zeros(1, 4, 2, 2, 2))


@pytest.mark.parametrize(
    ("shape", "fragment"),
    [
        ((1, 64, 1, 2, 2), "a stage-1 HunyuanImage-2.1 latent, which the stage-1 VAE decodes, or a packed refiner"),
        ((1, 64, 2, 2), "a stage-1 HunyuanImage-2.1 latent"),
        ((1, 4, 2, 2, 2, 2), r"got \(1, 4, 2, 2, 2, 2\)"),
    ],
)
def test_decode_names_wrong_latents(shape, fragment):
    model = RefinerVAE(device="meta")
    with pytest.raises(ValueError, match=r"the refiner VAE decodes \[B, 32, 1, h, w\]") as exc:
        model.decode(torch.empty(shape, device="meta"))
    assert re.search(fragment, str(exc.value)), str(exc.value)


def test_encode_rejects_wrong_channels():
    with pytest.raises(ValueError, match=r"encode expects \[B, 3, H, W\] or \[B, 3, 1, H, W\], got \(1, 4, 16, 16\)"):
        RefinerVAE(device="meta").encode(torch.empty(1, 4, 16, 16, device="meta"))


# --- image API -----------------------------------------------------------------------------------------------------


def test_image_api_shapes_and_range():
    model = small_vae()
    images = torch.rand(2, 12, 8, 4)  # an alpha channel is dropped, as ComfyUI's VAEEncode does
    latents = encode_image(model, images)
    assert latents.shape == (2, 4, 1, 3, 2) and latents.dtype == torch.float32
    out = decode_image(model, latents)
    assert out.shape == (2, 12, 8, 3) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(decode_image(model, latents[:, :, 0]), out)  # 4-D latents are accepted too


def test_batch_slicing_equals_unsliced():
    model = small_vae()
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(3, 4, 1, 5, 4, generator=gen)
    images = torch.rand(3, 20, 16, 3, generator=gen)
    whole = decode_image(model, z)
    # Not bit-identical: the CPU's convolution kernels may sum in another order for another batch size.
    torch.testing.assert_close(decode_image(model, z, batch_size=2), whole, rtol=0, atol=1e-5)
    whole = encode_image(model, images)
    torch.testing.assert_close(encode_image(model, images, batch_size=2), whole, rtol=0, atol=1e-5)


def test_posterior_sample_is_seeded_and_independent_of_slicing():
    model = small_vae()
    images = torch.rand(3, 8, 8, 3, generator=torch.Generator().manual_seed(2))
    mean = encode_image(model, images)

    def sample(seed: int, batch_size: int | None = None) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return encode_image(model, images, batch_size=batch_size, sample=True, generator=gen)

    a = sample(5)
    torch.testing.assert_close(sample(5, batch_size=1), a, rtol=1e-5, atol=1e-5)
    assert not torch.equal(a, sample(6)) and not torch.equal(a, mean)
    with torch.no_grad():
        logvar = model.encode(images.movedim(-1, 1) * 2 - 1).logvar
    noise = torch.randn(a.shape, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, mean + torch.exp(0.5 * logvar) * noise, rtol=1e-5, atol=1e-5)


def test_half_precision_over_fp32_weights_runs_under_autocast():
    """The official way: fp32 weights, half-precision autocast (bf16 here: the CPU's); close to fp32."""
    model = small_vae()
    z = torch.randn(1, 4, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    ref = decode_image(model, z)
    half = decode_image(model, z, precision="bf16")
    assert half.dtype == torch.float32 and next(model.parameters()).dtype == torch.float32
    err = (half - ref).abs().max().item()
    log.info("bf16 autocast decode vs fp32: max abs error %.2e (0..1 scale)", err)
    assert err < 0.05
    latents = encode_image(model, torch.rand(1, 8, 8, 3), precision="bf16")
    assert latents.dtype == torch.float32 and torch.isfinite(latents).all()


def test_fp32_precision_over_half_weights_is_refused():
    model = small_vae().half()
    with pytest.raises(ValueError, match=r"load it with dtype torch\.float32"):
        decode_image(model, torch.zeros(1, 4, 1, 2, 2), precision="fp32")


# --- direct vs module paths (ComfyUI-style layers) -----------------------------------------------------------------


class CastingConv3d(nn.Conv3d):
    """Like ComfyUI's cast-capable Conv3d: weights (and patches) applied in forward, in the input's dtype."""

    comfy_cast_weights = True
    weight_function: ClassVar[list] = []
    bias_function: ClassVar[list] = []
    calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        CastingConv3d.calls += 1
        weight, bias = self.weight.to(x.dtype), self.bias.to(x.dtype)
        for f in self.weight_function:
            weight = f(weight)
        return self._conv_forward(x, weight, bias)


class OpaqueConv3d(nn.Conv3d):
    """A subclass with its own forward and none of ComfyUI's attributes: nothing may be assumed about it."""

    calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        OpaqueConv3d.calls += 1
        return super().forward(x)


def decode_small(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model.decode(torch.randn(1, 4, 1, 3, 3, generator=torch.Generator().manual_seed(4)))


def test_casting_layers_with_usable_weights_take_the_direct_path():
    CastingConv3d.calls = 0
    model = small_vae(operations=SimpleNamespace(Conv3d=CastingConv3d))
    torch.testing.assert_close(decode_small(model), decode_small(small_vae()), rtol=0, atol=0)
    assert CastingConv3d.calls == 0


def test_casting_layers_with_other_dtype_weights_are_called():
    """fp16 convolutions, fp32 input, no autocast: the layers must cast, so every convolution goes through them."""
    model = small_vae(operations=SimpleNamespace(Conv3d=CastingConv3d))
    reference = small_vae()
    for casting, plain in zip(model.modules(), reference.modules(), strict=True):
        if isinstance(casting, nn.Conv3d):
            casting.half()
            plain.half().float()  # the same rounded values, used directly in fp32
    CastingConv3d.calls = 0
    got = decode_small(model)
    assert CastingConv3d.calls == sum(isinstance(m, nn.Conv3d) for m in model.decoder.modules())
    err = ((got - decode_small(reference)).abs().max() / got.abs().max()).item()
    log.info("decode through casting layers (padded 3-D path) vs direct path: relative max error %.2e", err)
    assert err <= 1e-5


def test_patched_weights_route_through_the_layer():
    """A LoRA-style ``weight_function`` on one layer: that layer is called (and its patch applied), others not."""
    model = small_vae(operations=SimpleNamespace(Conv3d=CastingConv3d))
    before = decode_small(model)
    conv = model.decoder.conv_out.conv
    conv.weight_function = [lambda w: w * 2]
    CastingConv3d.calls = 0
    after = decode_small(model)
    assert CastingConv3d.calls == 1
    with torch.no_grad():
        conv.weight.mul_(2)
        conv.weight_function = []
        assert torch.allclose(decode_small(model), after, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(before, after)


def test_unknown_conv_subclasses_are_always_called():
    OpaqueConv3d.calls = 0
    model = small_vae(operations=SimpleNamespace(Conv3d=OpaqueConv3d))
    got = decode_small(model)
    assert OpaqueConv3d.calls == sum(isinstance(m, nn.Conv3d) for m in model.decoder.modules())
    err = ((got - decode_small(small_vae())).abs().max() / got.abs().max()).item()
    assert err <= 1e-5, err


def test_weights_on_another_device_route_through_the_layer():
    """Offloaded weights (here: on the meta device while the input is on the CPU) are left to the layer."""
    from hunyuan_core.refiner_vae.model import weights_usable

    conv = nn.Conv3d(4, 4, 3, device="meta")
    assert not weights_usable(conv, torch.zeros(1, 4, 2, 2))
    assert weights_usable(nn.Conv3d(4, 4, 3), torch.zeros(1, 4, 2, 2))
    assert not weights_usable(nn.Conv3d(4, 4, 3), torch.zeros(1, 4, 2, 2, dtype=torch.float16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert weights_usable(nn.Conv3d(4, 4, 3), torch.zeros(1, 4, 2, 2, dtype=torch.bfloat16))
