"""The opt-in fp8 matmul path (``fp8_matmul``): one ``torch._scaled_mm`` with the activations quantized per tensor,
equal to its definition, used only where it applies, and off by default (the official weight-only arithmetic)."""

from __future__ import annotations

import pytest
import torch
from dit_files import TINY_DISTILLED, random_state
from helpers import assert_close, relative_error, save

from hunyuan_core.checkpoints.fp8 import quantize_fp8
from hunyuan_core.checkpoints.quantized import FP8_MAX, QuantizedLinear, scaled_fp8_linear
from hunyuan_core.dit.checkpoint import load_dit

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_thread")]


def fp8_layer(out_features: int = 64, in_features: int = 96, seed: int = 0) -> tuple[QuantizedLinear, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    weight, scale = quantize_fp8(torch.randn(out_features, in_features, generator=g) * 0.05)
    layer = QuantizedLinear(in_features, out_features, True, torch.float32, "fp8")
    bias = torch.randn(out_features, generator=g) * 0.1
    layer.load_state_dict({"weight": weight, "weight_scale": scale, "bias": bias}, assign=True)
    return layer, torch.randn(2, 7, in_features, generator=g)


def test_scaled_mm_equals_its_definition():
    layer, x = fp8_layer()
    got = scaled_fp8_linear(x, layer.weight, layer.weight_scale, layer.bias, torch.float32)
    x_scale = x.abs().amax() / FP8_MAX
    x_q = (x / x_scale).to(torch.float8_e4m3fn).float() * x_scale
    want = x_q @ (layer.weight.float() * layer.weight_scale).T + layer.bias
    assert_close(got, want, 1e-6)


def test_off_by_default_and_official_when_off():
    layer, x = fp8_layer()
    assert layer.fp8_matmul is False
    official = torch.nn.functional.linear(x, layer.weight.float() * layer.weight_scale, layer.bias)
    assert torch.equal(layer(x), official)
    layer.fp8_matmul = True
    fast = layer(x)
    assert not torch.equal(fast, official)  # the fast path really ran
    assert relative_error(fast, official) < 0.1  # activation rounding to e4m3: a few per cent at most


@pytest.mark.parametrize(
    ("case", "make"),
    [
        ("per-row scales", lambda w, s: (w, s.expand(w.shape[0], 1).contiguous())),
        ("e5m2 weight", lambda w, s: (w.float().to(torch.float8_e5m2), s)),
        ("width not a multiple of 16", lambda w, s: (w[:, :90].contiguous(), s)),
    ],
)  # fmt: skip
def test_cases_the_kernel_cannot_take_fall_back(case, make):
    layer, x = fp8_layer()
    weight, scale = make(layer.weight, layer.weight_scale)
    x = x[..., : weight.shape[1]]
    assert scaled_fp8_linear(x, weight, scale, None, torch.float32) is None, case


def test_dit_with_fp8_matmul_runs_close_to_weight_only(tmp_path):
    path = save(random_state(TINY_DISTILLED), tmp_path / "dit.safetensors")
    official = load_dit(path, dtype=torch.float32, quantize_fp8=True)
    fast = load_dit(path, dtype=torch.float32, quantize_fp8=True, fp8_matmul=True)
    fp8 = [m for m in fast.modules() if getattr(m, "weight_format", None) == "fp8"]
    assert fp8 and all(m.fp8_matmul for m in fp8)
    g = torch.Generator().manual_seed(1)
    inputs = dict(
        x=torch.randn(1, 64, 2, 3, generator=g), t=torch.tensor([700.0]), text=torch.randn(1, 5, 48, generator=g),
        text_mask=torch.ones(1, 5, dtype=torch.long), byt5=torch.randn(1, 4, 40, generator=g),
        byt5_mask=torch.ones(1, 4, dtype=torch.long), guidance=torch.tensor([3250.0]), timestep_r=torch.tensor([500.0]),
    )  # fmt: skip
    with torch.no_grad():
        want, got = official(**inputs), fast(**inputs)
    assert got.isfinite().all() and not torch.equal(got, want)
    assert relative_error(got, want) < 0.1
