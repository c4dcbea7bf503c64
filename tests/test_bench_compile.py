"""Smoke test of bench/bench_compile.py on a narrow model with the ``eager`` compile backend (capture and guards
without building kernels): it runs inside the hosted ComfyUI, compiles every block, alternates eager and compiled
forwards and compares them; nothing about speed is asserted. The measurement is
``.venv/bin/python bench/bench_compile.py`` (full width, inductor)."""

from __future__ import annotations

import re

import pytest
from helpers import run_bench

pytestmark = pytest.mark.bench


def test_reports_compiled_against_eager_with_the_same_output():
    stdout = run_bench(
        "bench_compile.py", "--hidden", "256", "--side", "128", "--text", "8", "--repeats", "2", "--backend", "eager"
    )
    assert "first compiled forward (compiles 4 blocks)" in stdout, stdout
    ratio = r"ratio compiled / eager \(fastest\): ([0-9.]+); max\|compiled - eager\| / max\|eager\| = (\S+)"
    found = re.search(ratio, stdout)
    assert found and float(found.group(1)) > 0, stdout
    assert float(found.group(2)) == 0.0, stdout  # the eager backend runs the captured graph as it is
