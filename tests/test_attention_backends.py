"""The DiT's attention through ComfyUI's kernels (``nodes/attention.py``), checked in the real ComfyUI.

Every attention function the host registers (PyTorch SDPA, split, sub-quadratic; Sage, Flash and xformers where
installed) and its basic one is compared with PyTorch's SDPA on the same inputs: unmasked, with a key mask (the
token refiner's), and over valid prefixes of padded text (each sample sliced to its own tokens, so no padded key is
ever computed). Then the pack's backend as the DiT uses it: ComfyUI's selection at each call (a run-time swap is
followed), SDPA in place of the generic fallbacks ComfyUI picks where PyTorch attention is off, a whole tiny
DiT forward equal to SDPA's under each selection, and an ``optimized_attention_override`` in the forward's
``transformer_options`` (a model patch's hook) receiving every attention call.
"""

from __future__ import annotations

import pytest

from hy21_host import IMPORT_PACK, run_in_comfyui

pytestmark = pytest.mark.parity

PROBE = (
    IMPORT_PACK
    + """
sys.path.insert(1, sys.argv[2])
import torch
import comfy.ldm.modules.attention as host
from hy21_pack.nodes import attention as pack_attention
from hy21_pack.hunyuan_core.dit.attention import key_attention_mask, key_masked_attention, prefix_attention, sdpa
from hy21_pack.hunyuan_core.dit import DiTConfig, HunyuanImageDiT

torch.manual_seed(0)
q, k, v = (torch.randn(2, 37, 3, 16) for _ in range(3))  # [B, S, heads, D], as the DiT's blocks hand them over
key_mask = torch.ones(2, 37, dtype=torch.long)
key_mask[0, 25:] = 0
key_mask[1, 9:] = 0
key_mask = key_attention_mask(key_mask)
valid = [37, 20]

def bhsd(t):
    return t.transpose(1, 2)

reference = {
    "unmasked": sdpa(*map(bhsd, (q, k, v))),
    "key_masked": key_masked_attention(q, k, v, key_mask, sdpa),
    "prefix": prefix_attention(q, k, v, valid, sdpa),
}
functions = dict(host.REGISTERED_ATTENTION_FUNCTIONS)
functions["basic"] = host.attention_basic
kernels = {}
for name, function in sorted(functions.items()):
    backend = pack_attention.through(function)
    got = {
        "unmasked": backend(*map(bhsd, (q, k, v))),
        "key_masked": key_masked_attention(q, k, v, key_mask, backend),
        "prefix": prefix_attention(q, k, v, valid, backend),
    }
    kernels[name] = {case: (got[case] - reference[case]).abs().max().item() for case in reference}
    kernels[name]["padding_zero"] = got["prefix"][1, 20:].abs().max().item()

calls = []
def counting(*args, **kwargs):
    calls.append(args[0].shape)
    return host.attention_pytorch(*args, **kwargs)

cfg = DiTConfig(hidden_size=64, num_heads=2, depth_double=1, depth_single=1, rope_axes=(16, 16), text_dim=48,
                byt5_dim=40, byt5_hidden=96)
model = HunyuanImageDiT(cfg, dtype=torch.float32).eval()
model.load_state_dict({name: torch.randn_like(t) * 0.1 for name, t in model.state_dict().items()})
x, t = torch.randn(2, 64, 3, 4), torch.tensor([500.0, 500.0])
text = torch.randn(2, 9, 48)
mask = torch.ones(2, 9, dtype=torch.long)
mask[1, 5:] = 0
with torch.no_grad():
    expected = model(x, t, text, mask)
    forwards = {}
    original = host.optimized_attention
    for name in ("attention_pytorch", "attention_split", "attention_sub_quad", "attention_basic", "counting"):
        host.optimized_attention = counting if name == "counting" else getattr(host, name)
        model.attention = pack_attention.host_attention_backend
        forwards[name] = {
            "diff": (model(x, t, text, mask) - expected).abs().max().item(),
            "host_function": getattr(pack_attention.host_function(), "__name__", None),
            "described": pack_attention.described(),
        }
    host.optimized_attention = original

# a model patch's attention override in transformer_options, as ComfyUI hands it to its own models
from hy21_pack.nodes.model import wrap_dit
patcher = wrap_dit(model)
overridden = []
def override(function, *args, **kwargs):
    overridden.append(function.__name__)
    return function(*args, **kwargs)
diffusion_model = patcher.model.diffusion_model
with torch.no_grad():
    plain = diffusion_model(x, t, text, attention_mask=mask)
    routed = diffusion_model(x, t, text, attention_mask=mask,
                             transformer_options={pack_attention.OVERRIDE: override})
result = {"kernels": kernels, "forwards": forwards, "counted_calls": len(calls),
          "counted_lengths": sorted({shape[2] for shape in calls}),
          "override": {"calls": overridden, "diff": (routed - plain).abs().max().item(),
                       "selected": host.optimized_attention.__name__,
                       "left_over": dict(pack_attention._forward_options)}}
"""
)


@pytest.fixture(scope="module")
def probe() -> dict:
    return run_in_comfyui(PROBE)


def test_every_host_kernel_matches_sdpa(probe):
    kernels = probe["kernels"]
    assert {"pytorch", "split", "sub_quad", "basic"} <= set(kernels), sorted(kernels)
    for name, diffs in kernels.items():
        for case in ("unmasked", "key_masked", "prefix"):
            assert diffs[case] < 1e-5, f"{name} differs from SDPA by {diffs[case]:.2e} ({case})"
        assert diffs["padding_zero"] == 0.0, f"{name}: padded text positions got output"
    assert probe["kernels"]["pytorch"]["unmasked"] == 0.0  # the same SDPA call


def test_dit_follows_the_host_selection_with_sdpa_for_its_fallbacks(probe):
    forwards = probe["forwards"]
    for fallback in ("attention_split", "attention_sub_quad", "attention_basic"):
        assert forwards[fallback]["host_function"] is None, fallback
        assert forwards[fallback]["diff"] == 0.0, f"{fallback}: the DiT did not use SDPA"
        assert forwards[fallback]["described"] == f"PyTorch SDPA (ComfyUI selected its generic {fallback})"
    assert forwards["attention_pytorch"]["host_function"] == "attention_pytorch"
    assert forwards["attention_pytorch"]["described"] == "ComfyUI's attention_pytorch"
    assert forwards["attention_pytorch"]["diff"] == 0.0
    assert forwards["counting"]["diff"] == 0.0


def test_a_kernel_swapped_at_run_time_is_called_without_padded_text(probe):
    # 1 double + 1 single block and the token refiner's layer, each per sample where text is padded: the swapped
    # kernel saw every attention of the forward, and only unpadded lengths (12 image tokens + 9 or 5 text tokens)
    assert probe["counted_calls"] >= 3, probe["counted_calls"]
    assert probe["counted_lengths"] == [9, 17, 21], probe["counted_lengths"]


def test_an_attention_override_in_transformer_options_gets_every_attention_call(probe):
    found = probe["override"]
    assert found["calls"] == [found["selected"]] * 6, found  # ComfyUI's selection, handed to the override
    assert found["diff"] < 1e-5, found
    assert found["left_over"] == {}, "the forward's options outlived it"
