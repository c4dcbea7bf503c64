"""Smoke test of bench/bench_enhancer.py on a narrow model: the pack's decoding and transformers' generate produce
the same tokens and the table and ratio are printed; nothing about speed is asserted. The measurement is
``.venv/bin/python bench/bench_enhancer.py`` (full width, 2 layers)."""

from __future__ import annotations

import re

import pytest
from helpers import run_bench

pytestmark = pytest.mark.bench


def test_reports_tokens_per_second_of_both_sides_with_equal_tokens():
    stdout = run_bench(
        "bench_enhancer.py", "--hidden", "256", "--intermediate", "512", "--tokens", "12", "--repeats", "1"
    )
    assert "tokens equal: yes (12 pack, 12 generate)" in stdout, stdout
    found = re.search(r"ratio pack / generate \(tokens per second, fastest\): ([0-9.]+)", stdout)
    assert found and float(found.group(1)) > 0, stdout
