"""Parity of the refiner VAE with diffusers 0.39.0's ``AutoencoderKLHunyuanImageRefiner``, with ComfyUI's own
refiner VAE, and of its two convolution paths.

Tiny random weights (every parameter random, RMS ``gamma``s around 1), one frame. The reference holds the same
tensors, loaded strictly under diffusers' names (which checks every name), and our model reads them back from a
diffusers-layout file through the loader (which checks detection and config-from-shapes too). Acceptance in
fp32: max |ours - reference| <= 1e-5 * max |reference|; in float64 the two agree to 1e-12 (rounding aside,
the computations are the same), and in fp32 ours is as close to float64 as diffusers' own fp32 result.

diffusers applies the ResnetBlock's 1x1 ``conv_shortcut`` to the block's input, as the official code (and
ComfyUI) does, so the width-changing config ``TINY_NIN`` is checked against diffusers directly.

Our causal convolutions run as 2-D convolutions with the kernel summed over time when they can (``forward``);
the literal padded 3-D convolution (``forward_padded``) is the fallback for casting layers. Both are checked:
against each other per layer, and end to end against diffusers and ComfyUI (with ``comfy.ops`` layers).
"""

from __future__ import annotations

import copy
import logging

import pytest
import torch
import torch.nn.functional as F
from comfy_classes import IMPORT_OR_SKIP, skip_if_absent, tolerated_missing
from helpers import relative_error, save
from refiner_vae_files import TINY, TINY_NIN, comfy_org, diffusers_layout, random_state, to_diffusers_model
from torch import nn

from hunyuan_core.refiner_vae import REFINER_VAE, decode_image, encode_image, inspect_refiner_vae, load_refiner_vae
from hunyuan_core.refiner_vae.checkpoint import DIFFUSERS, diffusers_name, expected_shapes
from hunyuan_core.refiner_vae.model import CausalConv3d, RMSNorm
from hy21_host import run_in_comfyui

pytestmark = pytest.mark.parity

diffusers = pytest.importorskip("diffusers")
log = logging.getLogger(__name__)

RTOL = 1e-5
CONFIGS = {"tiny16x": TINY, "tiny_nin": TINY_NIN}


class PaddedConv3d(nn.Conv3d):
    """A Conv3d subclass with a forward of its own (as casting layers have): our model must call it, always."""

    calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        PaddedConv3d.calls += 1
        return super().forward(x)


@pytest.fixture(scope="module", params=list(CONFIGS), ids=list(CONFIGS))
def pair(request, tmp_path_factory):
    """(config, diffusers reference, ours through the loader, ours forced onto the padded 3-D path)."""
    cfg = CONFIGS[request.param]
    state = random_state(cfg, seed=11)
    ref = to_diffusers_model(state, cfg)
    folder = tmp_path_factory.mktemp("refiner") / "vae"
    save(diffusers_layout(state), folder / "diffusion_pytorch_model.safetensors")
    info = inspect_refiner_vae(folder)
    assert info.layout == DIFFUSERS and info.config == cfg
    padded = load_refiner_vae(folder, operations=type("Ops", (), {"Conv3d": PaddedConv3d}))
    return cfg, ref, load_refiner_vae(folder), padded


def test_every_name_and_shape_matches_diffusers_at_full_size():
    """The released config, built on the meta device by both sides: same tensors under the mapped names."""
    with torch.device("meta"):
        ref = diffusers.AutoencoderKLHunyuanImageRefiner()
    expected = {diffusers_name(name): shape for name, shape in expected_shapes(REFINER_VAE).items()}
    assert expected == {name: tuple(t.shape) for name, t in ref.state_dict().items()}
    assert ref.config.scaling_factor == REFINER_VAE.scaling_factor
    assert sum(torch.Size(s).numel() for s in expected.values()) == 1_260_634_115  # 5.04 GB in fp32


@pytest.mark.parametrize(("height", "width"), [(32, 32), (48, 32)])
def test_encode_matches_diffusers(pair, height, width):
    cfg, ref, ours, padded = pair
    f = cfg.spatial_compression
    x = torch.rand(2, 3, 1, height * f // 16, width * f // 16, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        expected = ref.encode(x).latent_dist
        got = ours.encode(x)
        got_4d = ours.encode(x[:, :, 0])
        slow = padded.encode(x)
    assert got.mean.shape == expected.mean.shape == (2, cfg.latent_channels, 1, *(s // f for s in x.shape[3:]))
    errors = {
        "mean": relative_error(got.mean, expected.mean),
        "logvar": relative_error(got.logvar, expected.logvar),  # clamped to [-30, 20] on both sides
        "mean (padded 3-D path)": relative_error(slow.mean, expected.mean),
    }
    log.info("%s encode %s: relative max errors %s", cfg.block_out_channels, tuple(x.shape), errors)
    assert max(errors.values()) <= RTOL, errors
    assert torch.equal(got_4d.mean, got.mean)


@pytest.mark.parametrize(("height", "width"), [(2, 2), (3, 2)])
def test_decode_matches_diffusers(pair, height, width):
    cfg, ref, ours, padded = pair
    z = torch.randn(2, cfg.latent_channels, 1, height, width, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = ref.decode(z).sample
        got = ours.decode(z)
        slow = padded.decode(z)
    f = cfg.spatial_compression
    assert got.shape == expected.shape == (2, 3, 1, height * f, width * f)
    errors = {"decode": relative_error(got, expected), "decode (padded 3-D path)": relative_error(slow, expected)}
    log.info("%s decode %s: relative max errors %s", cfg.block_out_channels, tuple(z.shape), errors)
    assert max(errors.values()) <= RTOL, errors


def test_float64_equals_diffusers_float64(pair):
    """Both models in float64: rounding noise gone, what is left is any difference in the computation itself.

    Also measures where fp32 rounding leaves each fp32 model: the direct path (summed kernels) is as close to
    float64 as diffusers' own fp32 result, so the fp32 differences above are rounding, not approximation.
    """
    cfg, ref, ours, padded = pair
    ref64, ours64 = copy.deepcopy(ref).double(), copy.deepcopy(ours).double()
    gen = torch.Generator().manual_seed(9)
    f = cfg.spatial_compression
    x = torch.rand(2, 3, 1, 3 * f, 2 * f, generator=gen, dtype=torch.float64) * 2 - 1
    z = torch.randn(2, cfg.latent_channels, 1, 3, 2, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        mean64, image64 = ref64.encode(x).latent_dist.mean, ref64.decode(z).sample
        exact = relative_error(ours64.encode(x).mean, mean64), relative_error(ours64.decode(z), image64)
        log.info("%s float64 (encode, decode) relative max errors: %.1e, %.1e", cfg.block_out_channels, *exact)
        assert max(exact) <= 1e-12, exact
        x, z = x.float(), z.float()
        errors = {
            name: (relative_error(model_encode(x), mean64), relative_error(model_decode(z), image64))
            for name, model_encode, model_decode in (
                ("diffusers", lambda v: ref.encode(v).latent_dist.mean, lambda v: ref.decode(v).sample),
                ("ours", lambda v: ours.encode(v).mean, ours.decode),
                ("ours padded", lambda v: padded.encode(v).mean, padded.decode),
            )
        }
    log.info("%s fp32 (encode, decode) relative max errors vs float64: %s", cfg.block_out_channels, errors)
    for name in ("ours", "ours padded"):
        for ours_err, ref_err in zip(errors[name], errors["diffusers"], strict=True):
            assert ours_err <= max(2 * ref_err, 1e-6), errors


def test_padded_path_is_the_one_taken_with_a_conv_subclass(pair):
    """Sanity of the fixture: the subclass model really went through every Conv3d module call."""
    cfg, _, _, padded = pair
    PaddedConv3d.calls = 0
    with torch.no_grad():
        padded.decode(torch.zeros(1, cfg.latent_channels, 1, 1, 1))
    convs = sum(isinstance(m, PaddedConv3d) for m in padded.decoder.modules())
    assert PaddedConv3d.calls == convs


def test_image_api_matches_diffusers(pair):
    """IMAGE in 0..1 -> latent (posterior mean, then a sample) -> IMAGE, against diffusers with the same steps."""
    cfg, ref, ours, _ = pair
    f = cfg.spatial_compression
    images = torch.rand(2, 3 * f, 2 * f, 3, generator=torch.Generator().manual_seed(5))
    pixels = (images.movedim(-1, 1) * 2 - 1).unsqueeze(2)
    with torch.no_grad():
        posterior = ref.encode(pixels).latent_dist
        noise = torch.randn(posterior.mean.shape, generator=torch.Generator().manual_seed(6))
        expected_sample = posterior.mean + posterior.std * noise
        expected = (ref.decode(posterior.mean).sample[:, :, 0] / 2 + 0.5).clamp(0, 1).movedim(1, -1)
    latents = encode_image(ours, images)
    assert latents.shape == (2, cfg.latent_channels, 1, 3, 2) and latents.dtype == torch.float32
    assert relative_error(latents, posterior.mean) <= RTOL
    sampled = encode_image(ours, images, sample=True, generator=torch.Generator().manual_seed(6))
    assert relative_error(sampled, expected_sample) <= RTOL
    decoded = decode_image(ours, latents)
    assert decoded.shape == images.shape and decoded.dtype == torch.float32
    assert (decoded - expected).abs().max().item() <= RTOL


# --- the direct (2-D, summed kernel) and padded (3-D) paths ---------------------------------------------------------


@pytest.mark.parametrize("halve_groups", [0, 4])
def test_summed_kernel_equals_padded_causal_conv(halve_groups):
    conv = CausalConv3d(24, 32)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        conv.conv.weight.copy_(torch.randn(conv.conv.weight.shape, generator=gen) * 0.1)
        conv.conv.bias.copy_(torch.randn(32, generator=gen))
        x = torch.randn(2, 24, 9, 13, generator=gen)
        fast, slow = conv(x, halve_groups), conv.forward_padded(x, halve_groups)
        full = F.conv3d(F.pad(x.unsqueeze(2), (1, 1, 1, 1, 2, 0), mode="replicate"), conv.conv.weight, conv.conv.bias)
    assert fast.shape == slow.shape == (2, 16 if halve_groups else 32, 9, 13)
    err = relative_error(fast, slow)
    log.info("causal conv, summed kernel vs padded 3-D: relative max error %.2e", err)
    assert err <= 1e-6
    if halve_groups:  # the kept channels are the first half of each of the 4 runs: (dy, dx) x (frame 0 of 2, c)
        full = full.squeeze(2).unflatten(1, (4, 2, 4))[:, :, 0].flatten(1, 2)
    assert torch.equal(slow, full.squeeze(2) if not halve_groups else full)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_rms_norm_half_precision_is_normalised_in_fp32(dtype):
    norm = RMSNorm(40)
    with torch.no_grad():
        norm.gamma.copy_(1 + 0.3 * torch.randn(40, 1, 1, 1, generator=torch.Generator().manual_seed(8)))
    x = (torch.randn(2, 40, 5, 6) * 50).to(dtype)
    expected = F.normalize(x.float(), dim=1).to(dtype) * 40**0.5 * norm.gamma.view(-1, 1, 1)  # fp32 gamma: fp32 out
    got = norm(x)
    assert got.dtype == torch.float32
    assert torch.equal(got, expected)
    half_norm = RMSNorm(40, dtype=dtype)
    half_norm.load_state_dict(norm.state_dict())
    assert half_norm(x).dtype == dtype


# --- ComfyUI ---------------------------------------------------------------------------------------------------------

COMFY_PROBE = (
    IMPORT_OR_SKIP
    + """
sys.path.insert(1, sys.argv[2])
import torch
import comfy.ops
from safetensors.torch import load_file
from hunyuan_core.refiner_vae import load_refiner_vae

def compare(Encoder, Decoder):
    calls = {"module": 0}
    def count(module, args):
        calls["module"] += 1
    rel = lambda a, b: ((a - b).abs().max() / b.abs().max()).item()
    out = {"keys": {}}
    for path in sys.argv[3:]:
        file = path.rsplit("/", 1)[-1]
        plain = load_refiner_vae(path, dtype=torch.float32)
        cfg = plain.config
        dd = dict(in_channels=3, out_channels=3, z_channels=cfg.latent_channels,
                  block_out_channels=list(cfg.block_out_channels), num_res_blocks=cfg.layers_per_block,
                  ffactor_spatial=cfg.spatial_compression, ffactor_temporal=cfg.temporal_compression)
        enc, dec = Encoder(**dd), Decoder(**dd)
        state = {k: v.float() for k, v in load_file(path).items()}
        for part, module in (("encoder", enc), ("decoder", dec)):
            out["keys"][f"{file}:{part}"] = load_part(module, state, part + ".")
        g = torch.Generator().manual_seed(6)
        f = cfg.spatial_compression
        x = torch.rand(1, 3, 1, 2 * f, 3 * f, generator=g) * 2 - 1
        z = torch.randn(1, cfg.latent_channels, 1, 2, 3, generator=g)
        with torch.no_grad():
            ref_mean, ref_img = enc(x), dec(z)
            for name, kw in (("plain", None), ("manual_cast_fp32", {}), ("manual_cast_fp16", {"dtype": torch.float16})):
                model = plain if kw is None else load_refiner_vae(
                    path, **{"dtype": torch.float32, "operations": comfy.ops.manual_cast, **kw})
                hooks = [m.register_forward_pre_hook(count) for m in model.modules() if isinstance(m, torch.nn.Conv3d)]
                calls["module"] = 0
                errors = {"encode": rel(model.encode(x).mean, ref_mean), "decode": rel(model.decode(z), ref_img)}
                out[f"{file}:{name}"] = {**errors, "conv_module_calls": calls["module"]}
                for hook in hooks:
                    hook.remove()
    return out

classes, skipped = import_from_comfy("comfy.ldm.hunyuan_video.vae_refiner", "Encoder", "Decoder")
result = {"skipped": skipped} if skipped else compare(*classes)
"""
)


def test_same_names_and_outputs_as_comfyui(tmp_path):
    """Comfy-Org-layout files (the shortcuts spelt as ComfyUI's modules do) load into ComfyUI's own refiner VAE
    Encoder/Decoder (strictly, but for the unused ``temb_proj`` keys a newer ComfyUI adds, see comfy_classes.py),
    and our model gives ComfyUI's outputs: with plain layers, and with ``comfy.ops.manual_cast`` layers, whose
    modules the direct path bypasses when their weights match the input (fp32) and calls, so that they cast, when
    they must (fp16 weights, fp32 input). Runs in a subprocess with the real ComfyUI (``$COMFYUI_PATH`` or the
    bundled host)."""
    paths = [
        save(comfy_org(random_state(cfg, seed=7), wrapped_shortcuts=True), tmp_path / f"{name}.safetensors")
        for name, cfg in CONFIGS.items()
    ]
    out = run_in_comfyui(COMFY_PROBE, *paths, timeout=120)
    skip_if_absent(out)
    tolerated = {part: tolerated_missing(**keys) for part, keys in out.pop("keys").items()}
    log.info("vs ComfyUI: %s; keys ComfyUI's classes have beyond the files: %s", out, tolerated)
    assert len(tolerated) == 2 * len(CONFIGS), tolerated
    for name, errors in out.items():
        assert errors["encode"] <= RTOL and errors["decode"] <= RTOL, (name, errors)
        assert (errors["conv_module_calls"] > 0) == name.endswith("manual_cast_fp16"), (name, errors)
