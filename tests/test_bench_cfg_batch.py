"""Smoke test of bench/bench_cfg_batch.py on a narrow model: it runs inside the hosted ComfyUI, samples the base
guidance with negative and positive batched into one forward and as two forwards, counts the forwards and compares
the latents; nothing about speed is asserted. The measurement is ``.venv/bin/python bench/bench_cfg_batch.py``
(full width, 1024 x 1024)."""

from __future__ import annotations

import re

import pytest
from helpers import run_bench

pytestmark = pytest.mark.bench


def test_reports_batched_against_two_calls_with_half_the_forwards():
    stdout = run_bench("bench_cfg_batch.py", "--hidden", "256", "--side", "128", "--steps", "2", "--repeats", "1")
    assert "DiT forwards per run: batched 2, two calls 4" in stdout, stdout
    ratio = r"ratio batched / two calls \(fastest\): ([0-9.]+); max\|batched - two calls\| / max\|two calls\| = (\S+)"
    found = re.search(ratio, stdout)
    assert found and float(found.group(1)) > 0, stdout
    assert float(found.group(2)) < 1e-5, stdout  # the same guidance, rounded differently
