"""Smoke test of bench/bench_gguf_dequant.py on a small weight: it runs every type, reports a ratio for each and
finds every result bit-identical to gguf's; the speeds themselves are not judged (a 256 x 256 weight is mostly
per-call overhead).

The real measurement is ``.venv/bin/python bench/bench_gguf_dequant.py`` (3584 x 3584, add ``--device cuda`` on a GPU).
"""

from __future__ import annotations

import re

import pytest
from helpers import run_bench

from hunyuan_core.checkpoints.gguf_quants import SUPPORTED_TYPES

pytestmark = pytest.mark.bench


def test_reports_a_ratio_per_type_and_bit_identical_results():
    stdout = run_bench("bench_gguf_dequant.py", "--size", "256", "--repeats", "1")
    found = re.search(r"ratio ours / gguf throughput \(fp32 output\): (.*)", stdout)
    assert found, stdout
    ratios = dict(item.split() for item in found.group(1).split(", "))
    assert list(ratios) == list(SUPPORTED_TYPES), stdout
    assert ratios.pop("F32") == "n/a", stdout  # gguf's F32 is a view of the bytes: nothing to compare
    assert all(float(ratio) > 0 for ratio in ratios.values()), stdout
    assert "all results bit-identical to gguf: yes" in stdout, stdout
