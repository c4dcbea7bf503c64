"""ComfyUI's partial loading on the pack's DiT in every weight format: at a budget of 30 % of the model, ComfyUI's own
``ModelPatcher`` streams the layers that do not fit and the output is bit-identical to a full load.

Runs ``bench/bench_partial_load.py`` inside the hosted ComfyUI (any release ``COMFYUI_PATH`` points at) on the CPU:
ComfyUI refuses ``--lowvram`` with ``--cpu``, so the patcher is driven in-process with ``lowvram_model_memory``.
On a GPU the same script measures what moves and the peak memory (``--device cuda``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hy21_host import find_comfyui

pytestmark = pytest.mark.parity

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_partial_load.py"


@pytest.fixture(scope="module")
def results() -> dict:
    out = subprocess.run(
        [sys.executable, str(BENCH), "--comfyui", str(find_comfyui()), "--budget", "0.3", "--double", "2"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


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
