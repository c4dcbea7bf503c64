"""Smoke test of bench/bench_attention.py on a tiny attention: it runs inside the hosted ComfyUI, times every kernel
ComfyUI registers and the DiT's own choice against SDPA, and compares each output with SDPA's; nothing about speed is
asserted. The measurement is ``.venv/bin/python bench/bench_attention.py`` (1024 x 1024 by default)."""

from __future__ import annotations

import re

import pytest
from helpers import run_bench

pytestmark = pytest.mark.bench


def test_reports_every_kernel_against_sdpa():
    stdout = run_bench("bench_attention.py", "--side", "128", "--text", "8", "--heads", "2", "--repeats", "2")
    # ComfyUI 0.3.75 on the CPU selects sub-quadratic attention, which the DiT replaces with SDPA
    choice = r"the DiT uses (PyTorch SDPA \(ComfyUI selected its generic attention_\w+\)|ComfyUI's \w+)"
    assert re.search(choice, stdout), stdout
    rows = dict(re.findall(r"^(\w+)\s+[0-9.]+\s+[0-9.]+\s+([0-9.]+)\s+[0-9.e+-]+$", stdout, re.MULTILINE))
    assert {"sdpa", "pack", "pytorch", "split", "sub_quad", "basic"} <= set(rows), stdout
    assert rows["sdpa"] == "1.00", stdout
    diffs = [float(x) for x in re.findall(r"\s([0-9.]+e[+-][0-9]+)$", stdout, re.MULTILINE)]
    assert len(diffs) == len(rows) and max(diffs) < 1e-5, stdout
