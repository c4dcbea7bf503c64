"""ComfyUI's partial loading on the pack's DiT in every weight format: at a budget of 30 % of the model, ComfyUI's own
``ModelPatcher`` streams the layers that do not fit and the output is bit-identical to a full load.

Runs ``bench/bench_partial_load.py`` inside the hosted ComfyUI (any release ``COMFYUI_PATH`` points at) on the CPU:
ComfyUI refuses ``--lowvram`` with ``--cpu``, so the patcher is driven in-process with ``lowvram_model_memory``.
On a GPU the same script measures what moves and the peak memory (``--device cuda``).
"""

from __future__ import annotations

import json

import pytest
from helpers import run_bench

from hy21_host import IMPORT_PACK, find_comfyui, run_in_comfyui

pytestmark = pytest.mark.parity


@pytest.fixture(scope="module")
def results() -> dict:
    stdout = run_bench(
        "bench_partial_load.py", "--comfyui", str(find_comfyui()), "--budget", "0.3", "--double", "2", timeout=600
    )
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("fmt", ["bf16", "fp8", "Q4_K"])
def test_partial_load_streams_and_is_bit_identical(results, fmt):
    r = results[fmt]
    assert r["finite"] and r["bit_identical"], r
    assert r["streamed"] > 0, r  # the budget really was smaller than the model
    assert r["not_streamable"] == [], r  # every module owning a parameter is a ComfyUI cast op


def test_quantized_layers_are_what_streams(results):
    """fp8 and GGUF layers are streamed as they are stored (ComfyUI budgets their compact size)."""
    assert results["fp8"]["streamed_quantized"] > 0 and results["Q4_K"]["streamed_quantized"] > 0
    sizes = {fmt: results[fmt]["model_gb"] for fmt in ("bf16", "fp8", "Q4_K")}
    assert sizes["Q4_K"] < sizes["fp8"] < sizes["bf16"], sizes


QUANTIZED_LAYERS_PROBE = (
    IMPORT_PACK
    + """
import numpy as np
import torch
from torch import nn
sys.path[1:1] = [root, root + "/tests"]
from gguf_files import random_blocks
from hy21_pack.hunyuan_core.checkpoints.errors import CheckpointError
from hy21_pack.hunyuan_core.checkpoints.gguf_file import GGMLWeight
from hy21_pack.hunyuan_core.checkpoints.meta import load_weights, on_meta
from hy21_pack.nodes import management

rng = np.random.default_rng(0)
tensors = {"0.weight": GGMLWeight(torch.from_numpy(random_blocks("Q6_K", (300, 256), rng)), 14, (300, 256)),
           "1.weight": GGMLWeight(torch.from_numpy(random_blocks("Q4_K", (64, 256), rng)), 12, (64, 256)),
           "1.bias": torch.randn(64)}

def build(ops):
    model = on_meta(lambda: nn.Sequential(nn.Embedding(300, 256), nn.Linear(256, 64)))
    load_weights(model, list(tensors), tensors.__getitem__, dtype=torch.float32, device="cpu", error=CheckpointError,
                 file_name="probe", operations=ops)
    return model

ids = torch.tensor([[5, 299, 0, 17]])
plain, streamed = build(nn), build(management.operations())
patcher = management.patch(streamed, "text")
patcher.patch_model(device_to=torch.device("cpu"), lowvram_model_memory=1)  # nothing fits: both layers stream
with torch.no_grad():
    want, got = plain(ids), patcher.model(ids)
result = {
    "classes": [type(m).__name__ for m in streamed],
    "streamed": [getattr(m, "prev_comfy_cast_weights", None) is not None for m in streamed],
    "equal": bool(torch.equal(got, want)),
    "sizes": [int(m.weight.numel()) for m in streamed],
}
"""
)


def test_gguf_embedding_and_linear_stream_in_comfyui():
    """A GGUF embedding table (as in a Qwen2.5-VL GGUF) and linear stay quantized as ComfyUI cast layers, stream
    when nothing fits, and compute what the plain core layers compute."""
    r = run_in_comfyui(QUANTIZED_LAYERS_PROBE)
    assert r["classes"] == ["StreamedQuantizedEmbedding", "StreamedQuantizedLinear"], r
    assert r["streamed"] == [True, True] and r["equal"], r
    assert r["sizes"] == [300 * 210, 64 * 144], r  # Q6_K and Q4_K bytes, not expanded tables
