"""The activation estimate the sampler refuses sizes with: checked against a measured forward, and inverted exactly.

A DiT of the real proportions at reduced width (hidden 512, MLP 4x) runs one bf16 forward in a fresh interpreter on
the CPU; its peak resident memory over the loaded model (``bench/common.CpuMeter``: glibc returns freed blocks at
once, so RSS follows live tensors) is compared with ``step_activation_bytes``.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import BENCH_DIR

from hunyuan_core.memory import GIB, largest_square, step_activation_bytes
from hunyuan_core.resolution import latent_tokens
from hunyuan_core.variants import BASE
from hy21_host import IMPORT_PACK, run_in_comfyui

pytestmark = pytest.mark.unit

MEASURE = """
import sys
sys.path[:0] = [{root!r}, {bench!r}, {tests!r}, {scripts!r}]
import torch
from common import CpuMeter
from dit_files import TINY
from hunyuan_core.dit import HunyuanImageDiT
from hunyuan_core.memory import step_activation_bytes
torch.set_num_threads(1)
meter = CpuMeter()
cfg = TINY.with_(hidden_size=512, num_heads=4, depth_double=1, depth_single=2, rope_axes=(64, 64), text_dim=64,
                 byt5_dim=None)
model = HunyuanImageDiT(cfg, dtype=torch.bfloat16).eval()
side = {side}
x = torch.randn(1, cfg.in_channels, side, side, dtype=torch.bfloat16)
text, mask = torch.randn(1, 32, 64, dtype=torch.bfloat16), torch.ones(1, 32, dtype=torch.int64)
def run():
    with torch.no_grad():
        return model(x, torch.tensor([500.0]), text, mask, None, None)
run()
print(meter.added_by(run) / step_activation_bytes(cfg, side * side, 32, 1, 2))
"""


@pytest.mark.parametrize("side", [48])
def test_estimate_matches_a_measured_forward(side):
    root = BENCH_DIR.parent
    code = MEASURE.format(
        root=str(root), bench=str(BENCH_DIR), tests=str(root / "tests"), scripts=str(root / "scripts"), side=side
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    ratio = float(out.stdout.strip().splitlines()[-1])
    assert 0.9 <= ratio <= 1.1, ratio  # measured peak / estimate


def test_full_model_at_2k_and_the_largest_square_inverts_the_estimate():
    cfg = BASE.dit
    at_2k = step_activation_bytes(cfg, latent_tokens(2048, 2048), 256, 1, 2)
    assert 0.5 < at_2k / GIB < 0.6, at_2k / GIB  # README: 0.46 GiB single block, x1.18 for the whole forward
    for budget_gib in (4, 8, 23):
        side = largest_square(cfg, budget_gib * GIB, 256, 1, 2)
        assert side % 32 == 0
        assert step_activation_bytes(cfg, latent_tokens(side, side), 256, 1, 2) <= budget_gib * GIB
        assert step_activation_bytes(cfg, latent_tokens(side + 32, side + 32), 256, 1, 2) > budget_gib * GIB
    assert largest_square(cfg, 1024, 256, 1, 2) == 0


SAMPLER_PROBE = (
    IMPORT_PACK
    + """
import torch
sys.path[1:1] = [root]
import comfy.model_management as mm
from hy21_pack.hunyuan_core.checkpoints.meta import on_meta
from hy21_pack.hunyuan_core.dit import HunyuanImageDiT
from hy21_pack.hunyuan_core.memory import largest_square
from hy21_pack.hunyuan_core.variants import BASE
from hy21_pack.nodes.model import wrap_dit
from hy21_pack.nodes.sampler import fits_on_device

model = wrap_dit(on_meta(lambda: HunyuanImageDiT(BASE.dit, dtype=torch.bfloat16)))  # full size, no memory
total = mm.get_total_memory(model.load_device)
fits = largest_square(BASE.dit, total, 256, 1, 2)
positive = [[torch.zeros(1, 256, 3584), {}]]
result = {"fits": fits, "total_gib": total / 2**30}
for name, side in (("2k", 2048), ("large", fits // 2 // 32 * 32), ("too_big", fits + 64)):
    latent = torch.zeros(1, 64, side // 32, side // 32, device="meta")
    try:
        result[name] = fits_on_device(model, latent, positive) or "quiet"
    except ValueError as exc:
        result[name] = "refused: " + str(exc)
"""
)


def test_sampler_refuses_a_size_no_device_memory_holds_and_names_the_largest_that_fits():
    """On this machine's own device (the CPU's RAM here): the full-size DiT at 2K runs quietly, a size past 2 GiB of
    activations is shown with its estimate, one past the device's memory is refused with the largest square."""
    r = run_in_comfyui(SAMPLER_PROBE)
    fits = r["fits"]
    assert r["2k"] == "quiet", r
    half = fits // 2 // 32 * 32
    assert r["large"].startswith(f"a DiT step at {half}x{half} (its activations): about "), r
    assert r["large"].endswith(f"GiB (device: {r['total_gib']:.1f} GiB)"), r
    side = fits + 64
    assert r["too_big"].startswith(f"refused: a DiT step at {side}x{side} (its activations) needs about"), r
    assert f"the largest square that fits is {fits}x{fits}" in r["too_big"], r


VAE_MEASURE = """
import sys
sys.path[:0] = [{root!r}, {bench!r}]
import torch
from common import CpuMeter
from hunyuan_core.memory import vae_decode_bytes
from hunyuan_core.vae import VAEConfig, decode_image
from hunyuan_core.vae.model import HunyuanImageVAE
torch.set_num_threads(2)
meter = CpuMeter()
cfg = VAEConfig()  # the official stage-1 VAE's widths, random weights
vae = HunyuanImageVAE(cfg).eval()
side = {side}
z = torch.randn(1, cfg.latent_channels, side // 32, side // 32)
peak = meter.added_by(lambda: decode_image(vae, z, precision="fp32"))
print(peak / vae_decode_bytes(cfg.block_out_channels[0], side, side, 4))
"""


def test_vae_decode_estimate_matches_a_measured_decode():
    """The official stage-1 VAE at full width decoding 384x384 in float32: measured peak / estimate."""
    code = VAE_MEASURE.format(root=str(BENCH_DIR.parent), bench=str(BENCH_DIR), side=384)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    ratio = float(out.stdout.strip().splitlines()[-1])
    assert 0.75 <= ratio <= 1.1, ratio  # never much below: the estimate refuses sizes


DECODE_PROBE = (
    IMPORT_PACK
    + """
import torch
sys.path[1:1] = [root]
import comfy.model_management as mm
from hy21_pack.hunyuan_core.checkpoints.meta import on_meta
from hy21_pack.hunyuan_core.vae import VAEConfig
from hy21_pack.hunyuan_core.vae.model import HunyuanImageVAE
from hy21_pack.nodes import management
from hy21_pack.nodes.vae import decode_fits

vae = management.patch(on_meta(lambda: HunyuanImageVAE(VAEConfig())), "vae")  # full size, no memory
total = mm.get_total_memory(vae.load_device)
result = {}
for name, side, precision, slice_, tiled in (
    ("2k_fp32", 2048, "fp32", 0, False), ("8k_fp32", 8192, "fp32", 0, False), ("8k_tiled", 8192, "fp32", 0, True),
    ("2k_x4_fp32", 2048, "fp32", 0, False), ("2k_x4_sliced", 2048, "fp32", 1, False),
):
    batch = 4 if "x4" in name else 1
    latent = torch.zeros(batch, 64, side // 32, side // 32, device="meta")
    try:
        result[name] = decode_fits(vae, latent, precision, slice_, tiled) or "quiet"
    except ValueError as exc:
        result[name] = "refused: " + str(exc)
result["total_gib"] = total / 2**30
"""
)


def test_decode_refuses_what_no_device_memory_holds_and_shows_large_estimates():
    r = run_in_comfyui(DECODE_PROBE)
    assert r["8k_tiled"] == "quiet", r  # tiles bound the memory
    assert r["8k_fp32"].startswith("refused: decoding 1 image(s) of 8192x8192 in fp32 at once needs about"), r
    assert "set batch_slice to 1, decode in fp16/bf16, or set tile_size" in r["8k_fp32"], r
    # 4.5 x 128 x 4 B x 2048^2
    assert r["2k_fp32"].startswith("decoding 1 image(s) of 2048x2048 in fp32 at once: about 9.0 GiB"), r
    assert r["2k_x4_sliced"] == r["2k_fp32"], r  # one image at a time
    assert r["2k_x4_fp32"].startswith("refused: decoding 4 image(s)" if r["total_gib"] < 36 else "decoding"), r
