"""Smoke test of bench/bench_lora_patch.py on a narrow model (hidden 256, rank 8): both formats run through ComfyUI's
patcher inside the hosted ComfyUI, the LoRA patches every block linear and changes the output, unpatching restores it
bit for bit, and the table and the JSON line report times and memory; the bound is not judged at this width.

The real measurement (hidden 3584, rank 64) is ``.venv/bin/python bench/bench_lora_patch.py`` (``--device cuda`` on a
GPU).
"""

from __future__ import annotations

import json
import re

import pytest
from helpers import run_bench

pytestmark = pytest.mark.bench

TINY = ["--hidden", "256", "--rank", "8", "--latent", "4", "--threads", "1"]


def test_quick_run_patches_both_formats_and_reports_time_and_memory():
    stdout = run_bench("bench_lora_patch.py", *TINY)
    report = json.loads(stdout.strip().splitlines()[-1])
    assert report["judged"] is False and set(report["formats"]) == {"bf16", "fp8"}, stdout
    for fmt, r in report["formats"].items():
        assert r["patched_layers"] == r["patches_applied"] == 13, fmt  # 10 double-block + 3 single-block linears
        assert r["finite"] and r["unpatch_restored"], fmt
        assert 1e-4 < r["lora_changed_output"] < 0.5, fmt
        assert r["patch_s"] > 0 and r["forward_patched_s"] > 0 and r["forward_unpatched_s"] > 0, fmt
        assert r["peak_extra_mib"] >= 0 and r["bound_mib"] > r["lora_mib"] > 0, fmt
        assert r["method"].startswith("CPU: process RSS"), fmt
    for fmt in ("bf16", "fp8"):
        assert re.search(rf"^{fmt}\s+[0-9.]+\s+[0-9.]+", stdout, re.M), stdout  # its table row
        assert re.search(rf"^{fmt} peak extra / bound: +[0-9.]+x not judged \(narrow model\)", stdout, re.M), stdout
