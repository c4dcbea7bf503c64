"""The pack's VAE Decode / Encode nodes take ComfyUI's own VAE of HunyuanImage-2.1 as well as the pack's.

Inside the hosted ComfyUI: a full-size stage-1 VAE with random weights (ComfyUI's detection needs the real widths)
is loaded both by ComfyUI (``comfy.sd.VAE``, what its Load VAE node does) and by the pack. The pack's nodes on
ComfyUI's VAE give exactly what ComfyUI's VAE gives, the two implementations agree on the same weights, and a VAE
of another family is refused with the file to load.
"""

from __future__ import annotations

import pytest

from hy21_host import IMPORT_PACK, run_in_comfyui

pytestmark = pytest.mark.parity

PROBE = (
    IMPORT_PACK
    + """
import torch
sys.path[1:1] = [root, root + "/tests", root + "/scripts"]

import comfy.sd
from vae_files import comfy_org, random_state
import tempfile
from safetensors.torch import save_file
from hy21_pack.hunyuan_core.vae import STAGE1_VAE, decode_image, encode_image, load_vae
from hy21_pack.nodes.vae import HunyuanImage21VAEDecode, HunyuanImage21VAEEncode

torch.set_num_threads(2)
state = comfy_org(random_state(STAGE1_VAE, seed=3))  # as Comfy-Org's file: ComfyUI names, fp16
native = comfy.sd.VAE(sd=dict(state))
with tempfile.TemporaryDirectory() as folder:
    save_file(state, folder + "/hunyuan_image_2.1_vae_fp16.safetensors")
    ours = load_vae(folder + "/hunyuan_image_2.1_vae_fp16.safetensors", dtype=torch.float32)
g = torch.Generator().manual_seed(0)
z = torch.randn(1, 64, 2, 3, generator=g)
image = torch.rand(1, 64, 96, 3, generator=g)

decoded = HunyuanImage21VAEDecode.execute(native, {"samples": z}, "auto", 0, 0).result[0]
encoded = HunyuanImage21VAEEncode.execute(native, image, "fp32").result[0]["samples"]
with torch.no_grad():
    pack_decoded = decode_image(ours, z, precision="fp32")
    pack_encoded = encode_image(ours, image, precision="fp32")
rel = lambda a, b: float((a.float() - b.float()).abs().max() / b.float().abs().max())
result = {
    "node_decode_is_native": bool(torch.equal(decoded, native.decode(z))),
    "node_encode_is_native": bool(torch.equal(encoded, native.encode(image))),
    "decode_vs_pack": rel(decoded, pack_decoded),
    "encode_vs_pack": rel(encoded, pack_encoded),
    "shapes": [list(decoded.shape), list(encoded.shape)],
}
try:  # a small VAE of another family that ComfyUI builds from its keys: TAESD (4 channels, 8x)
    from comfy.taesd.taesd import TAESD
except ImportError:
    result["foreign"] = None
else:
    try:
        HunyuanImage21VAEDecode.execute(comfy.sd.VAE(sd=TAESD().state_dict()), {"samples": z}, "auto", 0, 0)
        result["foreign"] = "accepted"
    except ValueError as exc:
        result["foreign"] = str(exc)
"""
)


@pytest.fixture(scope="module")
def result() -> dict:
    return run_in_comfyui(PROBE, timeout=600)


def test_pack_vae_nodes_run_comfyuis_own_vae(result):
    assert result["node_decode_is_native"] and result["node_encode_is_native"], result
    assert result["shapes"] == [[1, 64, 96, 3], [1, 64, 2, 3]]


def test_comfyuis_vae_and_the_packs_agree_on_the_same_weights(result):
    assert result["decode_vs_pack"] <= 1e-4 and result["encode_vs_pack"] <= 1e-4, result


def test_a_vae_of_another_family_is_refused_naming_the_file(result):
    if result["foreign"] is None:
        pytest.skip("this ComfyUI has no TAESD module to build a foreign VAE from")
    assert "4 latent channels" in result["foreign"] and "hunyuan_image_2.1_vae" in result["foreign"], result
