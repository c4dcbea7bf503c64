"""The base and distilled DiT against diffusers' HunyuanImageTransformer2DModel on tiny random weights, fp32.

Both sides get the same random weights (diffusers' parameters re-drawn, then converted to our fused layout through
``keys.source_of(..., DIFFUSERS)``). Diffusers keeps padded text in the sequence behind an attention mask; we drop
it. The image output must agree to 1e-5 of the reference's largest value in every case.
"""

from __future__ import annotations

import pytest
import torch
from dit_files import PARITY, PARITY_DISTILLED, diffusers_pair
from helpers import assert_close

pytestmark = pytest.mark.parity

REL_TOL = 1e-5
CHANNELS, TEXT_DIM, BYT5_DIM = PARITY.in_channels, PARITY.text_dim, PARITY.byt5_dim


@pytest.fixture(scope="module")
def base():
    return diffusers_pair(PARITY, seed=11)


@pytest.fixture(scope="module")
def distilled():
    return diffusers_pair(PARITY_DISTILLED, seed=12)


def prefix_mask(lengths: list[int], total: int) -> torch.Tensor:
    mask = torch.zeros(len(lengths), total, dtype=torch.long)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
    return mask


def inputs(seed: int, batch: int, h: int, w: int, text_len: int, byt5_len: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "x": torch.randn(batch, CHANNELS, h, w, generator=gen),
        "text": torch.randn(batch, text_len, TEXT_DIM, generator=gen),
        "byt5": torch.randn(batch, byt5_len, BYT5_DIM, generator=gen),
    }


def run_ref(ref, x, t, text, mask, byt5, byt5_mask, guidance=None, timestep_r=None) -> torch.Tensor:
    with torch.no_grad():
        return ref(
            x, t, text, mask, encoder_hidden_states_2=byt5, encoder_attention_mask_2=byt5_mask, guidance=guidance,
            timestep_r=timestep_r, return_dict=False,
        )[0]  # fmt: skip


def run_ours(ours, x, t, text, mask, byt5, byt5_mask, guidance=None, timestep_r=None) -> torch.Tensor:
    with torch.no_grad():
        return ours(x, t, text, mask, byt5, byt5_mask, guidance=guidance, timestep_r=timestep_r)


def test_base_with_byt5_and_padded_text(base):
    ref, ours = base
    data = inputs(1, batch=1, h=8, w=8, text_len=20, byt5_len=16)
    t = torch.tensor([700.0])
    mask, byt5_mask = prefix_mask([14], 20), prefix_mask([6], 16)
    want = run_ref(ref, data["x"], t, data["text"], mask, data["byt5"], byt5_mask)
    got = run_ours(ours, data["x"], t, data["text"], mask, data["byt5"], byt5_mask)
    assert_close(got, want, REL_TOL)
    # The ByT5 tokens must matter, or this case would not test the ByT5 path at all.
    other = run_ours(ours, data["x"], t, data["text"], mask, data["byt5"].flip(1), byt5_mask)
    assert float((other - got).abs().max()) > 100 * REL_TOL * float(want.abs().max())


def test_base_without_quoted_text(base):
    ref, ours = base
    data = inputs(2, batch=1, h=8, w=8, text_len=20, byt5_len=16)
    t = torch.tensor([420.0])
    mask = prefix_mask([17], 20)
    byt5, byt5_mask = torch.zeros(1, 16, BYT5_DIM), prefix_mask([0], 16)
    want = run_ref(ref, data["x"], t, data["text"], mask, byt5, byt5_mask)
    assert_close(run_ours(ours, data["x"], t, data["text"], mask, byt5, byt5_mask), want, REL_TOL)
    assert_close(run_ours(ours, data["x"], t, data["text"], mask, None, None), want, REL_TOL)


def test_distilled_guidance_and_meanflow(distilled):
    ref, ours = distilled
    data = inputs(3, batch=1, h=8, w=8, text_len=20, byt5_len=12)
    t, t_r, guidance = torch.tensor([750.0]), torch.tensor([500.0]), torch.tensor([3250.0])
    mask, byt5_mask = prefix_mask([15], 20), prefix_mask([5], 12)
    args = (data["x"], t, data["text"], mask, data["byt5"], byt5_mask)
    want = run_ref(ref, *args, guidance=guidance, timestep_r=t_r)
    got = run_ours(ours, *args, guidance=guidance, timestep_r=t_r)
    assert_close(got, want, REL_TOL)
    # Guidance and the MeanFlow timestep must both reach the output.
    scale = float(want.abs().max())
    assert float((run_ours(ours, *args, guidance=guidance * 0.5, timestep_r=t_r) - got).abs().max()) > 1e-3 * scale
    assert float((run_ours(ours, *args, guidance=guidance, timestep_r=t_r * 0.5) - got).abs().max()) > 1e-3 * scale


def test_batch_of_two_prompts_matches_diffusers_and_single_runs(base):
    ref, ours = base
    data = inputs(4, batch=2, h=8, w=8, text_len=20, byt5_len=12)
    t = torch.tensor([700.0, 300.0])
    mask, byt5_mask = prefix_mask([15, 7], 20), prefix_mask([5, 9], 12)
    args = (data["x"], t, data["text"], mask, data["byt5"], byt5_mask)
    want = run_ref(ref, *args)
    got = run_ours(ours, *args)
    assert_close(got, want, REL_TOL)
    for i in range(2):
        alone = run_ours(ours, *(a[i : i + 1] for a in args))
        assert_close(got[i : i + 1], alone, REL_TOL)
        assert_close(alone, want[i : i + 1], REL_TOL)


def test_non_square_latent(base):
    ref, ours = base
    data = inputs(5, batch=1, h=6, w=5, text_len=20, byt5_len=12)
    t = torch.tensor([555.0])
    mask, byt5_mask = prefix_mask([12], 20), prefix_mask([4], 12)
    args = (data["x"], t, data["text"], mask, data["byt5"], byt5_mask)
    want = run_ref(ref, *args)
    assert want.shape == (1, CHANNELS, 6, 5)
    assert_close(run_ours(ours, *args), want, REL_TOL)


def test_trailing_padding_never_enters_attention(base):
    _, ours = base
    data = inputs(6, batch=1, h=6, w=5, text_len=20, byt5_len=12)
    gen = torch.Generator().manual_seed(7)
    t = torch.tensor([640.0])
    mask, byt5_mask = prefix_mask([14], 20), prefix_mask([5], 12)
    clean = run_ours(ours, data["x"], t, data["text"], mask, data["byt5"], byt5_mask)

    # Pad MLLM 20 -> 60 and ByT5 12 -> 40 with large random garbage under mask 0.
    text = torch.cat([data["text"], torch.randn(1, 40, TEXT_DIM, generator=gen) * 50], dim=1)
    byt5 = torch.cat([data["byt5"], torch.randn(1, 28, BYT5_DIM, generator=gen) * 50], dim=1)
    text[:, 14:20] = torch.randn(1, 6, TEXT_DIM, generator=gen) * 50  # the original padding turns to garbage too
    padded = run_ours(ours, data["x"], t, text, prefix_mask([14], 60), byt5, prefix_mask([5], 40))
    assert_close(padded, clean, REL_TOL)

    # Next to a longer prompt the padding columns cannot be trimmed away: they go through the token refiner and
    # the pooled text, and must still leave the short prompt's result unchanged.
    other = inputs(8, batch=1, h=6, w=5, text_len=60, byt5_len=40)
    batch = run_ours(
        ours, torch.cat([data["x"], other["x"]]), torch.tensor([640.0, 200.0]), torch.cat([text, other["text"]]),
        prefix_mask([14, 55], 60), torch.cat([byt5, other["byt5"]]), prefix_mask([5, 33], 40),
    )  # fmt: skip
    assert_close(batch[:1], clean, REL_TOL)
