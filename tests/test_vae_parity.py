"""Parity of the stage-1 VAE with diffusers 0.39.0's ``AutoencoderKLHunyuanImage`` and with ComfyUI's own VAE.

Tiny random weights (every parameter re-randomised from a seeded generator, nothing left zero-initialised),
fp32. diffusers' weights go through our loader as a diffusers-layout file, so its names, the layout detection
and the config-from-shapes are checked too. Acceptance: max |ours - reference| <= 1e-5 * max |reference|.

Where diffusers and the official code differ we follow the official code and test parity where they agree:
diffusers' ResnetBlock applies its 1x1 ``conv_shortcut`` to the block's output instead of its input, which only
matters (and only runs) for configs whose ResnetBlocks change width; the real VAE has none, because its
resamplers change the width. Those configs are checked against ComfyUI, which follows the official code.
"""

from __future__ import annotations

import logging

import pytest
import torch
from comfy_classes import IMPORT_OR_SKIP, skip_if_absent, tolerated_missing
from helpers import relative_error, save
from vae_files import TINY, TINY_NIN, comfy_org, random_state

from hunyuan_core.vae import decode_image, encode_image, load_vae
from hunyuan_core.vae.checkpoint import DIFFUSERS, inspect_vae

pytestmark = pytest.mark.parity

diffusers = pytest.importorskip("diffusers")
log = logging.getLogger(__name__)

RTOL = 1e-5


def reference_vae(cfg, seed: int = 0):
    model = diffusers.AutoencoderKLHunyuanImage(
        in_channels=cfg.in_channels, out_channels=cfg.out_channels, latent_channels=cfg.latent_channels,
        block_out_channels=cfg.block_out_channels, layers_per_block=cfg.layers_per_block,
        spatial_compression_ratio=cfg.spatial_compression, sample_size=64, scaling_factor=cfg.scaling_factor,
    )  # fmt: skip
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:  # GroupNorm scales around 1, every bias non-zero
                p.copy_(
                    (1.0 if "norm" in name and name.endswith("weight") else 0.0)
                    + 0.3 * torch.randn(p.shape, generator=gen)
                )
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * p[0].numel() ** -0.5)
    return model.eval()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    ref = reference_vae(TINY)
    path = save(
        {k: v.contiguous() for k, v in ref.state_dict().items()}, tmp_path_factory.mktemp("vae") / "d.safetensors"
    )
    info = inspect_vae(path)
    assert info.layout == DIFFUSERS and info.config == TINY
    return ref, load_vae(path)


@pytest.mark.parametrize(("height", "width"), [(64, 64), (96, 64)])
def test_encode_posterior_mean_matches_diffusers(pair, height, width):
    ref, ours = pair
    x = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        expected = ref.encode(x).latent_dist
        got = ours.encode(x)
    assert got.mean.shape == (2, TINY.latent_channels, height // 32, width // 32)
    err = relative_error(got.mean, expected.mean)
    log.info("encode %dx%d: relative max error %.2e", height, width, err)
    assert err <= RTOL
    assert relative_error(got.logvar, expected.logvar) <= RTOL  # clamped to [-30, 20] on both sides


@pytest.mark.parametrize(("height", "width"), [(2, 2), (3, 2)])
def test_decode_matches_diffusers(pair, height, width):
    ref, ours = pair
    z = torch.randn(2, TINY.latent_channels, height, width, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = ref.decode(z).sample
        got = ours.decode(z)
    assert got.shape == (2, 3, height * 32, width * 32)
    err = relative_error(got, expected)
    log.info("decode %dx%d latent: relative max error %.2e", height, width, err)
    assert err <= RTOL


def test_image_api_matches_diffusers_round_trip(pair):
    """IMAGE in 0..1 -> latent (posterior mean) -> IMAGE, against diffusers with the same conversions."""
    ref, ours = pair
    images = torch.rand(1, 64, 96, 3, generator=torch.Generator().manual_seed(5))
    latents = encode_image(ours, images)
    with torch.no_grad():
        expected_latents = ref.encode(images.movedim(-1, 1) * 2 - 1).latent_dist.mean
        expected = (ref.decode(expected_latents).sample / 2 + 0.5).clamp(0, 1).movedim(1, -1)
    assert relative_error(latents, expected_latents) <= RTOL
    decoded = decode_image(ours, latents)
    assert decoded.shape == (1, 64, 96, 3) and decoded.dtype == torch.float32
    assert (decoded - expected).abs().max().item() <= RTOL


COMFY_PROBE = (
    IMPORT_OR_SKIP
    + """
sys.path.insert(1, sys.argv[2])
import torch
import comfy.ops
from hunyuan_core.vae import load_vae

def compare(Encoder, Decoder):
    path = sys.argv[3]
    ours_plain = load_vae(path, dtype=torch.float32)
    ours_comfy = load_vae(path, dtype=torch.float32, operations=comfy.ops.disable_weight_init)
    cfg = ours_plain.config
    dd = dict(in_channels=3, out_channels=3, z_channels=cfg.latent_channels,
              block_out_channels=list(cfg.block_out_channels), num_res_blocks=cfg.layers_per_block,
              ffactor_spatial=cfg.spatial_compression)
    enc, dec = Encoder(**dd), Decoder(**dd)
    state = {k: v.float() for k, v in ours_plain.state_dict().items()}
    out = {"keys": {"encoder": load_part(enc, state, "encoder."), "decoder": load_part(dec, state, "decoder.")}}
    g = torch.Generator().manual_seed(6)
    f = cfg.spatial_compression
    x = torch.rand(1, 3, 4 * f, 6 * f, generator=g) * 2 - 1
    z = torch.randn(1, cfg.latent_channels, 4, 6, generator=g)
    rel = lambda a, b: ((a - b).abs().max() / b.abs().max()).item()
    with torch.no_grad():
        ref_mean = enc(x).chunk(2, dim=1)[0]
        ref_img = dec(z)
        for name, model in (("plain", ours_plain), ("comfy_ops", ours_comfy)):
            convs = {type(m).__module__ for m in model.modules() if isinstance(m, torch.nn.Conv2d)}
            out[name] = {"encode": rel(model.encode(x).mean, ref_mean), "decode": rel(model.decode(z), ref_img),
                         "conv_types": sorted(convs)}
    return out

classes, skipped = import_from_comfy("comfy.ldm.hunyuan_video.vae", "Encoder", "Decoder")
result = {"skipped": skipped} if skipped else compare(*classes)
"""
)


@pytest.mark.parametrize("cfg", [TINY_NIN], ids=["tiny_nin"])
def test_same_names_and_outputs_as_comfyui(tmp_path, cfg):
    """A Comfy-Org-layout file loads into ComfyUI's own Encoder/Decoder (same names: strictly, but for the unused
    keys a newer ComfyUI may add, see comfy_classes.py), and our model, also built from ``comfy.ops`` layers, gives
    ComfyUI's outputs. Runs in a subprocess with the real ComfyUI (``$COMFYUI_PATH`` or the bundled host).

    The config has width-changing ResnetBlocks, so the ``nin_shortcut`` (on the block input, as in the official
    code and ComfyUI) is checked here; diffusers cannot run such a config (see the module docstring)."""
    from hy21_host import run_in_comfyui

    path = save(comfy_org(random_state(cfg, seed=7)), tmp_path / "hunyuan_image_2.1_vae_fp16.safetensors")
    out = run_in_comfyui(COMFY_PROBE, path, timeout=120)
    skip_if_absent(out)
    tolerated = {part: tolerated_missing(**keys) for part, keys in out.pop("keys").items()}
    log.info("vs ComfyUI: %s; keys ComfyUI's classes have beyond the file: %s", out, tolerated)
    for name in ("plain", "comfy_ops"):
        assert out[name]["encode"] <= RTOL and out[name]["decode"] <= RTOL, out
    assert out["comfy_ops"]["conv_types"] == ["comfy.ops"], out
