"""Smoke test of bench/resident_bytes.py (the README's memory table): its byte counts add up and order as they must,
its GGUF type rules give what the published files hold, and the script prints a row per format.

The table itself is regenerated with ``.venv/bin/python bench/resident_bytes.py``.
"""

from __future__ import annotations

import importlib.util
import math
import re
import sys

import pytest
import torch
from helpers import BENCH_DIR, run_bench

from hunyuan_core.checkpoints.meta import on_meta
from hunyuan_core.dit import DiTConfig, HunyuanImageDiT

pytestmark = pytest.mark.bench

SCRIPT = BENCH_DIR / "resident_bytes.py"


@pytest.fixture(scope="module")
def rb():
    spec = importlib.util.spec_from_file_location("resident_bytes", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def table(rb):
    return rb.resident_bytes("base")


def test_bf16_is_two_bytes_a_parameter_of_the_full_model(table):
    model = on_meta(lambda: HunyuanImageDiT(DiTConfig(), dtype=torch.bfloat16))
    params = sum(t.numel() for t in model.state_dict().values())
    assert 17.3e9 < params < 17.5e9
    assert table["bf16"].parameters == params
    assert table["bf16"].resident == 2 * params
    assert all(fp.parameters == params for fp in table.values())


def test_formats_order_by_size(table):
    order = ["Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "bf16"]
    sizes = [table[fmt].resident for fmt in order]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes), dict(zip(order, sizes, strict=True))
    assert table["fp8"].resident < table["Q8_0"].resident < table["bf16"].resident
    assert 0.5 < table["fp8"].resident / table["bf16"].resident < 0.53  # block linears are 97 % of the weights


def test_fp8_counts_one_byte_and_a_scale_per_block_linear(rb, table):
    tensors = rb.dit_tensors(DiTConfig())
    linear = [math.prod(shape) for _, shape, block_linear in tensors if block_linear]
    rest = sum(math.prod(shape) for _, shape, block_linear in tensors if not block_linear)
    assert len(linear) == 20 * 10 + 40 * 3  # a double block: 2 streams x (mod, qkv, proj, fc1, fc2); a single: 3
    assert table["fp8"].resident == sum(linear) + 4 * len(linear) + 2 * rest


def test_gguf_types_follow_the_converter_and_its_llama_quantize_rules(rb, table):
    state = rb._QuantizeState()
    kinds = {
        name: rb.gguf_type(name, shape, "Q4_K_M", state)
        for name, shape in [
            ("double_blocks.0.img_attn_qkv.weight", (10752, 3584)),
            ("double_blocks.0.img_mlp.fc2.weight", (3584, 14336)),
            ("single_blocks.0.linear1.weight", (25088, 3584)),
            ("double_blocks.0.img_attn_q_norm.weight", (128,)),
            ("double_blocks.0.img_attn_qkv.bias", (10752,)),
            ("txt_in.individual_token_refiner.blocks.0.self_attn_qkv.weight", (10752, 3584)),
            ("final_layer.linear.weight", (64, 3584)),
            ("byt5_in.fc1.weight", (2048, 1472)),
            ("img_in.proj.weight", (3584, 64, 1, 1)),
        ]
    }
    assert list(kinds.values()) == ["Q5_K", "Q4_K", "Q4_K", "F32", "F32", "BF16", "BF16", "BF16", "BF16"], kinds
    assert table["Q4_K_M"].types == {"F32": 513, "Q4_K": 280, "Q5_K": 40, "BF16": 23}
    assert table["Q8_0"].types == {"F32": 513, "Q8_0": 320, "BF16": 23}
    # resident: quantized blocks as stored, every float tensor in bf16 (the F32 ones take 4 bytes in the file)
    assert table["Q8_0"].file - table["Q8_0"].resident == 2 * sum(
        math.prod(shape) for name, shape, _ in rb.dit_tensors(DiTConfig()) if len(shape) == 1
    )


def test_script_prints_a_row_per_format():
    stdout = run_bench("resident_bytes.py")
    rows = [line.strip("| ").split(" | ") for line in stdout.splitlines() if re.match(r"\| (bf16|fp8|Q\d)", line)]
    assert [row[0] for row in rows] == ["bf16", "fp8", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K"], stdout
    assert rows[0][1] == "16.00", stdout
    fits = {row[0]: row[-6:] for row in rows}
    assert all(cell in ("full", "stream") for cells in fits.values() for cell in cells), stdout
    assert fits["bf16"][-1] == "full" and fits["bf16"][0] == "stream", stdout  # 48 GB holds it, 8 GB does not
    for cells in fits.values():  # a larger card never streams what a smaller one holds
        assert cells == sorted(cells, key=lambda c: c == "full"), stdout
