"""The refiner DiT (3-D patch, RoPE over t/h/w, no ByT5) against diffusers on tiny random weights, fp32."""

from __future__ import annotations

import pytest
import torch
from dit_files import TINY_REFINER, diffusers_pair
from helpers import assert_close

pytestmark = pytest.mark.parity


def test_refiner_forward_matches_diffusers():
    gen = torch.Generator().manual_seed(3)
    ref, ours = diffusers_pair(TINY_REFINER, gen)  # the inputs below go on drawing from gen

    x = torch.randn(2, 128, 1, 6, 5, generator=gen)
    t = torch.tensor([923.1, 923.1])
    text = torch.randn(2, 20, 48, generator=gen)
    mask = torch.zeros(2, 20, dtype=torch.long)
    mask[0, :13], mask[1, :6] = 1, 1
    guidance = torch.tensor([3250.0, 3250.0])
    with torch.no_grad():
        want = ref(x, t, text, mask, guidance=guidance, return_dict=False)[0]
        got = ours(x, t, text, mask, guidance=guidance)
    assert got.shape == want.shape == (2, 64, 1, 6, 5)
    assert_close(got, want, 1e-5, min_scale=None)
