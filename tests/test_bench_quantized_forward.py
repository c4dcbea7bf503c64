"""Smoke test of bench/bench_quantized_forward.py on a narrow model (``--quick``): it reports a finite positive
ratio for fp8 / bf16, Q4_K / bf16 and fp8_fast / bf16, every output is finite, and the fp8 model's output differs
from the bf16 model's (same weights) by no more than the fp8 rounding of the weights themselves, and not by nothing;
the opt-in fp8 matmul ran (its output differs a little from weight-only fp8). The times of a 256-wide model are not
judged.

The real measurement is ``.venv/bin/python bench/bench_quantized_forward.py`` (full width, a few minutes on 2 cores).
"""

from __future__ import annotations

import math
import re

import pytest
from helpers import run_bench

pytestmark = pytest.mark.bench


def test_quick_run_reports_ratios_and_agreeing_outputs():
    stdout = run_bench("bench_quantized_forward.py", "--quick", "--repeats", "1")
    found = re.search(r"ratio fp8 / bf16: ([0-9.]+), Q4_K / bf16: ([0-9.]+), fp8_fast / bf16: ([0-9.]+)", stdout)
    assert found, stdout
    ratios = [float(value) for value in found.groups()]
    assert all(math.isfinite(r) and r > 0 for r in ratios), stdout
    assert "outputs finite: yes" in stdout, stdout
    error = re.search(r"relative L2 error ([0-9.e-]+) \(fp8 rounding of the block weights: relative L2 ([0-9.e-]+)\)",
                      stdout)  # fmt: skip
    assert error, stdout
    output_error, rounding = (float(value) for value in error.groups())
    assert 0 < rounding < 0.05, stdout  # e4m3 keeps 3 mantissa bits: a few percent
    assert 0 < output_error <= rounding, stdout
    fast = re.search(r"fp8_fast output vs fp8 weight-only output: relative L2 error ([0-9.e-]+)", stdout)
    assert fast and 0 < float(fast.group(1)) < 0.1, stdout  # the fast path ran, rounding activations slightly
