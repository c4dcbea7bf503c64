"""The refiner DiT (3-D patch, RoPE over t/h/w, no ByT5) against diffusers on tiny random weights, fp32."""

from __future__ import annotations

import torch
from diffusers import HunyuanImageTransformer2DModel
from dit_files import TINY_REFINER, from_diffusers

from hunyuan_core.dit import HunyuanImageDiT


def test_refiner_forward_matches_diffusers():
    gen = torch.Generator().manual_seed(3)
    ref = HunyuanImageTransformer2DModel(
        in_channels=128, out_channels=64, num_attention_heads=2, attention_head_dim=32, num_layers=2,
        num_single_layers=2, num_refiner_layers=2, text_embed_dim=48, text_embed_2_dim=None,
        rope_axes_dim=(4, 14, 14), patch_size=(1, 1, 1), guidance_embeds=True, use_meanflow=True,
    ).eval()  # fmt: skip
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    ours = from_diffusers(ref, HunyuanImageDiT(TINY_REFINER, dtype=torch.float32).eval())

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
    assert (got - want).abs().max() <= 1e-5 * want.abs().max()
