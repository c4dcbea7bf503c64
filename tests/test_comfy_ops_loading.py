"""Every loader, given the pack's ``comfy.ops`` (ComfyUI's ``manual_cast`` plus streaming quantized layers and
norms), gives the same model as with ``torch.nn``.

Run inside the hosted ComfyUI (any release ``COMFYUI_PATH`` points at): the files are written here in the real
layouts, loaded there twice (plain ``torch.nn`` and ComfyUI's cast layers) and run on the same inputs. Outputs
must be bit-identical, every weight-bearing layer must be ComfyUI's, and every module that owns a parameter must be
one ComfyUI can stream (a cast op).
"""

from __future__ import annotations

import json

import pytest
import torch
from dit_files import TINY_DISTILLED
from dit_files import random_state as dit_state
from helpers import save
from refiner_vae_files import TINY as REFINER_TINY
from refiner_vae_files import comfy_org as refiner_comfy_org
from refiner_vae_files import random_state as refiner_state
from text_files import qwen_single_file_state, save_glyph_comfy, tiny_glyph_t5, tiny_qwen_vl
from vae_files import TINY as VAE_TINY
from vae_files import comfy_org as vae_comfy_org
from vae_files import random_state as vae_state

from hy21_host import IMPORT_PACK, run_in_comfyui

pytestmark = pytest.mark.parity

PROBE = (
    IMPORT_PACK
    + """
import os
import torch
import comfy.ops
from torch import nn
from hy21_pack.hunyuan_core.dit.checkpoint import load_dit
from hy21_pack.hunyuan_core.refiner_vae import load_refiner_vae
from hy21_pack.hunyuan_core.text.byt5 import load_glyph_encoder
from hy21_pack.hunyuan_core.text.qwen import load_qwen_encoder
from hy21_pack.hunyuan_core.vae import load_vae
from hy21_pack.nodes import management

paths = json.loads(sys.argv[3])
tokenizers = os.path.join(sys.argv[1], "comfy", "text_encoders")
layers = (nn.Linear, nn.Embedding, nn.Conv2d, nn.Conv3d, nn.GroupNorm, nn.LayerNorm)
g = torch.Generator().manual_seed(0)
dit_inputs = dict(
    x=torch.randn(1, 64, 2, 3, generator=g), t=torch.tensor([700.0]), text=torch.randn(1, 5, 48, generator=g),
    text_mask=torch.tensor([[1, 1, 1, 1, 0]]), byt5=torch.randn(1, 4, 40, generator=g),
    byt5_mask=torch.tensor([[1, 1, 0, 0]]), guidance=torch.tensor([3250.0]), timestep_r=torch.tensor([500.0]),
)
image = torch.rand(1, 3, 64, 64, generator=g) * 2 - 1
prompt = 'A cat holding a sign that says "hello"'
cases = {
    "dit": (lambda ops: load_dit(paths["dit"], operations=ops), lambda m: m(**dit_inputs)),
    "vae": (lambda ops: load_vae(paths["vae"], dtype=torch.float32, operations=ops),
            lambda m: m.decode(m.encode(image).mode())),
    "refiner_vae": (lambda ops: load_refiner_vae(paths["refiner_vae"], dtype=torch.float32, operations=ops),
                    lambda m: m.decode(m.encode(image[:, :, None, :32, :32]).mode())),
    "qwen": (lambda ops: load_qwen_encoder(paths["qwen"], operations=ops,
                                           tokenizer_dirs=[os.path.join(tokenizers, "qwen25_tokenizer")]),
             lambda m: m.encode(prompt).states),
    "byt5": (lambda ops: load_glyph_encoder(paths["byt5"], expected_width=None, operations=ops,
                                            tokenizer_dirs=[os.path.join(tokenizers, "byt5_tokenizer")]),
             lambda m: m.encode(prompt).states),
}
result = {}
for name, (load, run) in cases.items():
    eager, cast = load(nn), load(management.operations())
    with torch.no_grad():
        want, got = run(eager), run(cast)
    modules = sorted({type(m).__module__ for m in cast.modules() if isinstance(m, layers) and m.weight is not None})
    loose = [n for n, m in cast.named_modules()
             if any(p is not None for p in m._parameters.values()) and not hasattr(m, "comfy_cast_weights")]
    result[name] = {"equal": bool(torch.equal(got, want)), "finite": bool(got.isfinite().all()), "modules": modules,
                    "not_streamable": loose}
"""
)


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("comfy_ops")
    files = {
        "dit": save({k: v.to(torch.bfloat16) for k, v in dit_state(TINY_DISTILLED).items()}, root / "dit.safetensors"),
        "vae": save(vae_comfy_org(vae_state(VAE_TINY)), root / "vae.safetensors"),
        "refiner_vae": save(refiner_comfy_org(refiner_state(REFINER_TINY)), root / "refiner_vae.safetensors"),
        "qwen": save(qwen_single_file_state(tiny_qwen_vl(hidden=128, heads=1, kv_heads=1)), root / "qwen.safetensors"),
        "byt5": save_glyph_comfy(tiny_glyph_t5(width=64), root / "byt5.safetensors"),
    }
    return {name: str(path) for name, path in files.items()}


def test_every_loader_builds_with_comfy_ops_and_matches_torch_nn(tiny_files):
    results = run_in_comfyui(PROBE, json.dumps(tiny_files))
    assert set(results) == {"dit", "vae", "refiner_vae", "qwen", "byt5"}
    for name, result in results.items():
        assert result["modules"] == ["comfy.ops"], (name, result)
        assert result["not_streamable"] == [], (name, result)  # norms owning a scale are cast ops too
        assert result["equal"] and result["finite"], (name, result)
