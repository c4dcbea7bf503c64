"""The DiT core accepts ComfyUI's ``comfy.ops`` layer classes (checked in a subprocess with the real ComfyUI)."""

from __future__ import annotations

import pytest

from hy21_host import run_in_comfyui

pytestmark = pytest.mark.parity

PROBE = """
sys.path.insert(1, sys.argv[2])
import torch
import comfy.ops
from hunyuan_core.dit import DiTConfig, HunyuanImageDiT
cfg = DiTConfig(hidden_size=64, num_heads=2, depth_double=1, depth_single=1, rope_axes=(16, 16), text_dim=48,
                byt5_dim=40, byt5_hidden=96)
torch.manual_seed(0)
plain = HunyuanImageDiT(cfg, dtype=torch.float32).eval()
state = {k: torch.randn_like(v) * 0.1 for k, v in plain.state_dict().items()}
plain.load_state_dict(state)
result = {}
for name in ("disable_weight_init", "manual_cast"):
    ops = getattr(comfy.ops, name)
    model = HunyuanImageDiT(cfg, dtype=torch.float32, operations=ops).eval()
    model.load_state_dict(state)
    linear_types = {type(m).__module__ for m in model.modules() if isinstance(m, torch.nn.Linear)}
    x, t = torch.randn(1, 64, 3, 4), torch.tensor([500.0])
    text, mask = torch.randn(1, 9, 48), torch.ones(1, 9, dtype=torch.long)
    with torch.no_grad():
        diff = (model(x, t, text, mask) - plain(x, t, text, mask)).abs().max().item()
    result[name] = {"diff": diff, "linear_modules": sorted(linear_types)}
"""


def test_core_builds_and_runs_with_comfy_ops():
    for name, result in run_in_comfyui(PROBE).items():
        assert result["linear_modules"] == ["comfy.ops"], (name, result)
        assert result["diff"] == 0.0, (name, result)
