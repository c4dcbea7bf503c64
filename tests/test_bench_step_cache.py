"""Smoke test of bench/bench_step_cache.py on a narrow model: it runs inside the hosted ComfyUI, samples the
distilled model without the cache and through the Step Cache node at two thresholds, and prints the table; nothing
about speed is asserted. The calibration is ``.venv/bin/python bench/bench_step_cache.py`` (full width)."""

from __future__ import annotations

import re

import pytest
from helpers import run_bench

pytestmark = pytest.mark.bench


def test_sweep_reports_forwards_skipped_and_the_error_per_threshold():
    stdout = run_bench(
        "bench_step_cache.py", "--hidden", "256", "--side", "128", "--variants", "distilled", "--thresholds", "0",
        "0.5", "--bound", "1",
    )  # fmt: skip
    rows = {
        m.group(1): (int(m.group(2)), int(m.group(3)), float(m.group(4)))
        for m in re.finditer(r"^distilled\s+(\S+)\s+(?:\S+\s+\S+\s+)?(\d+)\s+(\d+)\s+(\S+)", stdout, re.MULTILINE)
    }
    assert rows["off"] == (8, 0, 0.0), stdout
    assert rows["0"] == (8, 0, 0.0), stdout  # threshold 0 skips nothing: exactly the reference
    forwards, skipped, error = rows["0.5"]
    assert forwards == 8 and skipped >= 1 and 0 < error < 1, stdout
    assert "distilled: largest threshold within the bound 1: 0.5" in stdout, stdout
