"""fp16 layers (GPUs without bf16) keep the DiT's residual stream in float32: no overflow, close to the fp32 result.

A tiny distilled DiT whose single-stream gates are scaled up (its weights stay ordinary fp16 numbers) drives the
residual stream past fp16's 65504 while every layer's own output stays in range; the final layer's norm brings the
output back to an ordinary size. With the stream in fp16 (what the code did before) the output is NaN; with the
stream in float32 it is finite and within 1e-2 of the float32 model. bf16 and float32 runs are unchanged by this
(the parity tests hold them to the reference).
"""

from __future__ import annotations

import pytest
import torch
from dit_files import TINY_DISTILLED, random_state
from helpers import relative_error

import hunyuan_core.dit.model as dit_model
from hunyuan_core.dit import HunyuanImageDiT

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_thread")]

CFG = TINY_DISTILLED.with_(depth_single=6)
GATE_GAIN = 2e4  # the residual reaches ~94,000 in float32 (measured), each layer's output stays below 65504


def overflowing_state() -> dict[str, torch.Tensor]:
    state = random_state(CFG, 0)
    h = CFG.hidden_size
    for i in range(CFG.depth_single):
        for leaf in ("weight", "bias"):
            state[f"single_blocks.{i}.modulation.linear.{leaf}"][2 * h :] *= GATE_GAIN  # the gate third
    return state


def model(dtype: torch.dtype) -> HunyuanImageDiT:
    dit = HunyuanImageDiT(CFG, dtype=dtype)
    dit.load_state_dict({k: v.to(dtype) for k, v in overflowing_state().items()})
    return dit.eval()


def run(dit: HunyuanImageDiT) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, CFG.in_channels, 8, 8, generator=g)
    text = torch.randn(1, 6, CFG.text_dim, generator=g)
    with torch.no_grad():
        return dit(
            x, torch.tensor([700.0]), text, torch.ones(1, 6, dtype=torch.int64),
            guidance=torch.tensor([3250.0]), timestep_r=torch.tensor([500.0]),
        ).float()  # fmt: skip


def test_fp16_output_is_finite_and_close_to_fp32_although_the_stream_exceeds_fp16():
    reference = model(torch.float32)
    peaks = []
    reference.single_blocks[-1].register_forward_hook(lambda m, i, o: peaks.append(float(o.abs().max())))
    want = run(reference)
    assert peaks[0] > 65504  # in fp16 this stream would overflow
    weights = overflowing_state()
    assert max(float(v.abs().max()) for v in weights.values()) < 65504  # the file itself is ordinary fp16
    got = run(model(torch.float16))
    assert got.isfinite().all()
    assert relative_error(got, want) <= 1e-2


def test_a_stream_in_fp16_overflows_on_the_same_model(monkeypatch):
    """The failure the float32 stream prevents (black images on fp16 GPUs), on the same weights and input."""
    monkeypatch.setattr(dit_model, "FP16_RESIDUAL", torch.float16)
    assert not run(model(torch.float16)).isfinite().all()
