"""Cancel inside text encoding, VAE decode and model loading: ComfyUI's interrupt takes effect at the next layer.

Inside the hosted ComfyUI (in-process, CPU): a tiny Qwen2.5-VL, ByT5 and stage-1 VAE handed to ComfyUI through the
pack's ``management.patch`` (as the loaders do). A forward hook on one block sets ComfyUI's interrupt flag (what
``POST /interrupt`` does); the next block raises ComfyUI's ``InterruptProcessingException`` and no block after it
runs. Without an interrupt the outputs are those of the same models without the checks, bit for bit.
"""

from __future__ import annotations

import pytest

from hy21_host import IMPORT_PACK, run_in_comfyui

pytestmark = pytest.mark.parity

PROBE = (
    IMPORT_PACK
    + """
import torch
from pathlib import Path
import tempfile
from safetensors.torch import save_file
sys.path[1:1] = [root, root + "/tests", root + "/scripts"]
import comfy.model_management as mm
from text_files import QWEN_TOKENIZER, BYT5_TOKENIZER, tiny_qwen_vl, qwen_single_file_state, tiny_glyph_t5
from text_files import save_glyph_comfy
from vae_files import TINY, random_state, comfy_org
from hy21_pack.hunyuan_core.text.qwen import load_qwen_encoder
from hy21_pack.hunyuan_core.text.byt5 import load_glyph_encoder
from hy21_pack.hunyuan_core.vae import load_vae, decode_image
from hy21_pack.nodes import management

folder = Path(tempfile.mkdtemp())
qwen_model = tiny_qwen_vl(hidden=128, heads=1, kv_heads=1, layers=4, seed=5)  # single files: 128-wide heads
save_file(qwen_single_file_state(qwen_model), str(folder / "qwen.safetensors"))
save_glyph_comfy(tiny_glyph_t5(), folder / "byt5.safetensors")
save_file(comfy_org(random_state(TINY)), str(folder / "vae.safetensors"))

def qwen():
    return load_qwen_encoder(folder / "qwen.safetensors", dtype=torch.float32, tokenizer_dirs=[QWEN_TOKENIZER])

def glyph():
    return load_glyph_encoder(folder / "byt5.safetensors", expected_width=None, tokenizer_dirs=[BYT5_TOKENIZER])

def vae():
    return load_vae(folder / "vae.safetensors", dtype=torch.float32)

latent = torch.randn(1, TINY.latent_channels, 2, 2, generator=torch.Generator().manual_seed(0))
work = {
    "qwen": (qwen, "text", lambda m: m.encode("a red fox").states),
    "byt5": (glyph, "text", lambda m: m.encode('Text "HELLO". ').states),
    "vae": (vae, "vae", lambda m: decode_image(m, latent, precision="fp32")),
}

def blocks(model):
    return [b for m in model.modules() if isinstance(m, torch.nn.ModuleList) for b in m]

result = {}
for name, (make, role, run) in work.items():
    plain = make()
    with torch.no_grad():
        want = run(plain)
    model = make()
    management.patch(model, role)
    ran = []
    all_blocks = blocks(model)
    for index, block in enumerate(all_blocks):
        block.register_forward_hook(lambda *_, i=index: ran.append(i))
    with torch.no_grad():
        same = bool(torch.equal(run(model), want))
    first = ran[0]  # the first block that runs (a text encoder's vision tower and unread layers never do)
    ran.clear()
    handle = all_blocks[first].register_forward_hook(lambda *_: mm.interrupt_current_processing(True))
    outcome = "finished"
    try:
        with torch.no_grad():
            run(model)
    except mm.InterruptProcessingException:
        outcome = "interrupted"
    handle.remove()
    cleared = not mm.processing_interrupted()
    mm.interrupt_current_processing(False)
    after = ran[ran.index(first) + 1 :] if first in ran else None
    result[name] = {"same": same, "outcome": outcome, "blocks": len(all_blocks), "ran_after": after,
                    "flag_cleared": cleared}

from hy21_pack.nodes.interrupt import check_loads
check_loads()
mm.interrupt_current_processing(True)  # Cancel pressed while a model file is being read
try:
    vae()
    result["load"] = "finished"
except mm.InterruptProcessingException:
    result["load"] = "interrupted"
result["load_flag_cleared"] = not mm.processing_interrupted()
result["load_after"] = type(vae()).__name__  # the next load runs
"""
)


@pytest.fixture(scope="module")
def results() -> dict:
    return run_in_comfyui(PROBE)


@pytest.mark.parametrize("name", ["qwen", "byt5", "vae"])
def test_interrupt_stops_at_the_next_block(results, name):
    r = results[name]
    assert r["blocks"] >= 2, r  # there is something left to stop
    assert r["outcome"] == "interrupted" and r["flag_cleared"], r
    assert r["ran_after"] == [], r  # the block after the one that saw the flag set never ran


def test_interrupt_stops_a_model_load_and_the_next_load_runs(results):
    assert results["load"] == "interrupted" and results["load_flag_cleared"], results
    assert results["load_after"] == "HunyuanImageVAE", results


@pytest.mark.parametrize("name", ["qwen", "byt5", "vae"])
def test_the_checks_do_not_change_outputs(results, name):
    assert results[name]["same"], results[name]
