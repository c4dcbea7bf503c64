"""Smoke test of bench/bench_native_forward.py on a narrow model: inside the hosted ComfyUI it builds the pack's DiT
and ComfyUI's own HunyuanImage-2.1 model over the same weights, checks that both reach torch's SDPA through ComfyUI's
attention_pytorch, times one forward of each through ``BaseModel.apply_model`` and compares the two outputs; nothing
about speed is asserted. The measurement is ``.venv/bin/python bench/bench_native_forward.py`` (full width, 1024 x
1024, fp32)."""

from __future__ import annotations

import re

import pytest
from helpers import run_bench

pytestmark = pytest.mark.bench


def test_native_forward_on_the_same_weights_agrees_and_prints_the_ratio():
    stdout = run_bench("bench_native_forward.py", "--hidden", "256", "--latent", "4", "--repeats", "1")
    assert "detected as supported_models.HunyuanImage21" in stdout, stdout
    assert "loaded strictly (none missing or unexpected)" in stdout and "weights shared with the pack: yes" in stdout
    for side in ("pack", "native"):
        assert re.search(rf"{side} calls: comfy attention_pytorch x5, \S+scaled_dot_product_attention x5", stdout)
    assert "same attention backend (torch SDPA through attention_pytorch on both sides): yes" in stdout, stdout
    ratio = r"ratio pack / native \(fastest\): ([0-9.]+);.* max\|pack - native\| / max\|native\| = (\S+)"
    found = re.search(ratio, stdout)
    assert found and float(found.group(1)) > 0, stdout
    assert float(found.group(2)) < 1e-5, stdout  # the same weights and inputs in fp32: rounding only
    assert re.search(r"^ratio <= 1\.0: (yes|no)", stdout, re.MULTILINE), stdout
