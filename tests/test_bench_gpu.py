"""Smoke test of bench/bench_gpu.py and bench/gpu.sh: on a tiny model on the CPU every row runs (bf16, fp8
weight-only and the opt-in fp8 matmul forwards, both samplers, the VAE decode), outputs are finite, the FLOP formula
agrees with torch's counter; and without CUDA the script says so in one line and exits with status 2. Nothing about
speed is asserted. The measurement is ``bash bench/gpu.sh`` on a GPU machine."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from helpers import BENCH_DIR, run_bench

pytestmark = pytest.mark.bench

NO_GPU = "bench/gpu.sh needs an NVIDIA GPU"
NO_CUDA = "bench/gpu.sh needs an NVIDIA GPU (torch.cuda.is_available() is False): nothing was measured"
FORWARDS = [f"DiT forward {size}x{size}, batch {batch}" for size in (64, 128) for batch in (1, 2)]


def table_rows(stdout: str) -> dict[tuple[str, str], list[str]]:
    """The table's rows by (row name, weights): the columns after them, split on whitespace."""
    rows = {}
    for line in stdout.splitlines():
        found = re.match(r"^(\S.*?)\s{2,}(bf16|fp8 matmul|fp8)\s+(.*)$", line)
        if found:
            rows[found.group(1), found.group(2)] = found.group(3).split()
    return rows


def test_tiny_cpu_run_has_every_row_with_finite_outputs():
    stdout = run_bench(
        "bench_gpu.py", "--device", "cpu", "--tiny", "--threads", "1", "--repeats", "1", "--sample-repeats", "1",
        "--vae-repeats", "1", "--base-timed-steps", "10",
    )  # fmt: skip
    rows = table_rows(stdout)
    wanted = [(name, weights) for weights in ("bf16", "fp8", "fp8 matmul") for name in FORWARDS]
    for weights in ("bf16", "fp8"):
        wanted += [
            ("distilled 8 steps 128x128 (embedded, MeanFlow)", weights),
            ("base 50 steps 128x128 (extrapolated from 10)", weights),
        ]
    wanted.append(("VAE decode 32x32", "bf16"))
    assert sorted(rows) == sorted(wanted), stdout
    for key, columns in rows.items():
        median, _runs, tflop, limit, ratio, peak, finite = columns
        assert finite == "yes", (key, stdout)
        assert float(median) > 0 and float(tflop) > 0 and float(limit) > 0 and float(ratio) > 0, (key, stdout)
        assert peak == "-", (key, stdout)  # no CUDA peak on the CPU
    # the fp8 models hold the bf16 model's weights, rounded: their outputs stay close to it
    for other in ("fp8", "fp8_matmul"):
        found = re.search(rf"{other} vs bf16 output .*: relative L2 (\S+)", stdout)
        assert found and float(found.group(1)) < 0.1, stdout
    check = re.search(r"FLOP formula check .*ratio (\S+)", stdout)
    assert check and float(check.group(1)) == pytest.approx(1.0, abs=1e-3), stdout
    assert "rows: 17, failed: 0, non-finite outputs: 0" in stdout, stdout


def test_gpu_sh_without_cuda_says_so_and_exits_2():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    script = str(BENCH_DIR / "gpu.sh")
    said = {}
    for args in ([sys.executable], []):  # the Python given, and the one the script picks
        out = subprocess.run(["bash", script, *args], capture_output=True, text=True, env=env, timeout=120, check=False)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        lines = out.stdout.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(NO_GPU), (args, out.stdout, out.stderr)
        assert lines[0].endswith("nothing was measured"), (args, out.stdout)
        said[bool(args)] = lines[0]
    assert said[True] == NO_CUDA  # bench_gpu.py's own check, with torch but no CUDA
