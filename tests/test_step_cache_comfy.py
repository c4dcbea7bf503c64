"""The Step Cache node inside ComfyUI: its error bound at the shipped defaults, and nothing changed when it skips
nothing (the hosted ComfyUI, a narrow DiT with random weights, the calibration bench's tiny shape).

- The pack's sampling (guider + ComfyUI's euler, as the Sampler node runs it) with the node at its calibrated
  defaults: base (50 steps, the CFG->APG mix, negative and positive batched) and distilled (8 steps) skip forwards,
  and the final latent stays within ``ERROR_BOUND`` of the uncached run.
- ComfyUI's own KSampler (CFGGuider, its ``calc_cond_batch``): the cache sees the negative and the positive prompt
  as two keys of one forward and skips steps within the bound.
- Threshold 0 samples exactly the uncached latent; a second run of the patched model starts a fresh cache (the same
  latent again); the unpatched model is left unchanged; the log names the skipped steps.
- The node refuses the refiner.
"""

from __future__ import annotations

import pytest

from hunyuan_core.dit.step_cache import ERROR_BOUND
from hy21_host import IMPORT_PACK, run_in_comfyui

pytestmark = pytest.mark.parity


PROBE = (
    IMPORT_PACK
    + """
import logging
import torch

import comfy.sample
from hy21_pack.hunyuan_core.dit import DiTConfig, HunyuanImageDiT
from hy21_pack.hunyuan_core.dit.step_cache import StepCache
from hy21_pack.hunyuan_core.sampling import Conditioning, make_noise, plan_sampling
from hy21_pack.nodes.conditioning import to_comfy
from hy21_pack.nodes.guider import HunyuanGuider, sample_with_guider
from hy21_pack.nodes.model import wrap_dit
from hy21_pack.nodes.step_cache import HunyuanImage21StepCache

torch.set_num_threads(1)
BASE = DiTConfig(variant="base", hidden_size=256, num_heads=2, depth_double=1, depth_single=1, rope_axes=(64, 64),
                 text_dim=3584, byt5_dim=1472)
DISTILLED = BASE.with_(variant="distilled", guidance_embed=True, meanflow=True)
REFINER = BASE.with_(variant="refiner", in_channels=128, patch_dims=3, rope_axes=(16, 56, 56), byt5_dim=None,
                     guidance_embed=True, meanflow=True)


def tiny(cfg, seed):
    g = torch.Generator().manual_seed(seed)
    model = HunyuanImageDiT(cfg, dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim > 1:
                p.copy_(torch.randn(p.shape, generator=g) * p[0].numel() ** -0.5)
            else:
                p.copy_(torch.ones(p.shape) if "norm" in name else torch.randn(p.shape, generator=g) * 0.02)
    return model.eval()


g = torch.Generator().manual_seed(7)
prompt = lambda n, text: to_comfy(Conditioning(mllm=torch.randn(1, n, 3584, generator=g),
                                               mllm_mask=torch.ones(1, n, dtype=torch.int64)), text)
pos, neg = prompt(40, "a prompt"), prompt(8, "")
noise = make_noise((1, 64, 8, 8), 0, "official")
empty = {"samples": torch.zeros_like(noise)}

keys_seen = []
at = StepCache.at
def recording_at(self, sigma, step, steps, keys):
    keys_seen.append(len(keys))
    return at(self, sigma, step, steps, keys)
StepCache.at = recording_at

messages = []
handler = logging.Handler()
handler.emit = lambda record: messages.append(record.getMessage())
logging.getLogger("hy21_pack.nodes.step_cache").addHandler(handler)
logging.getLogger("hy21_pack.nodes.step_cache").setLevel(logging.INFO)


def counted(dit):
    calls = {"dit": 0, "blocks": 0}
    dit.register_forward_pre_hook(lambda *_: calls.__setitem__("dit", calls["dit"] + 1))
    dit.double_blocks[0].register_forward_pre_hook(lambda *_: calls.__setitem__("blocks", calls["blocks"] + 1))
    return calls


def rel(a, b):
    return float((a.float() - b.float()).norm() / b.float().norm())


def pack_run(model, variant, calls):
    calls.update(dit=0, blocks=0)
    plan = plan_sampling(variant)
    guider = HunyuanGuider(model, plan.guidance, offset=plan.schedule.offset)
    guider.set_conds(pos, neg)
    out = sample_with_guider(guider, noise, empty, plan.schedule.sigmas, seed=0)
    return out, calls["dit"], calls["dit"] - calls["blocks"]


node = lambda model, threshold=-1.0: HunyuanImage21StepCache.execute(model, threshold, -1.0, -1.0).result[0]
result = {}
shared = {}
for variant, cfg, seed in (("base", BASE, 0), ("distilled", DISTILLED, 0)):
    dit = tiny(cfg, seed)
    calls = counted(dit)
    model = wrap_dit(dit)
    reference, forwards, _ = pack_run(model, variant, calls)
    keys_seen.clear()
    messages.clear()
    patched = node(model)
    cached, _, skipped = pack_run(patched, variant, calls)
    again, _, _ = pack_run(patched, variant, calls)
    plain, _, plain_skipped = pack_run(model, variant, calls)
    exact, _, exact_skipped = pack_run(node(model, 0.0), variant, calls)
    result[variant] = {
        "forwards": forwards, "skipped": skipped, "error": rel(cached, reference),
        "again_equal": bool(torch.equal(again, cached)), "keys": sorted(set(keys_seen)),
        "plain_equal": bool(torch.equal(plain, reference)), "plain_skipped": plain_skipped,
        "exact_equal": bool(torch.equal(exact, reference)), "exact_skipped": exact_skipped,
        "logged": [m for m in messages if "forwards skipped" in m],
    }
    shared[variant] = (dit, model, calls)

dit, model, calls = shared["base"]
ksampler = lambda m: comfy.sample.sample(m, noise, 30, 3.5, "euler", "simple", pos, neg, empty["samples"], seed=0,
                                         disable_pbar=True)
calls.update(dit=0, blocks=0)
reference = ksampler(model)
keys_seen.clear()
calls.update(dit=0, blocks=0)
cached = ksampler(node(model))
result["ksampler"] = {"forwards": calls["dit"], "skipped": calls["dit"] - calls["blocks"],
                      "error": rel(cached, reference), "keys": sorted(set(keys_seen))}

try:
    node(wrap_dit(tiny(REFINER, 0)))
    result["refiner"] = "accepted"
except ValueError as exc:
    result["refiner"] = str(exc)
"""
)


@pytest.fixture(scope="module")
def results() -> dict:
    return run_in_comfyui(PROBE, timeout=600)


@pytest.mark.parametrize("variant", ["base", "distilled"])
def test_calibrated_defaults_skip_forwards_within_the_error_bound(results, variant):
    found = results[variant]
    assert found["skipped"] >= 1, found
    assert found["error"] <= ERROR_BOUND, found
    assert found["logged"] and f"{found['skipped']} of {found['forwards']} forwards skipped" in found["logged"][0]


@pytest.mark.parametrize("variant", ["base", "distilled"])
def test_each_run_starts_a_fresh_cache_and_the_unpatched_model_is_unchanged(results, variant):
    found = results[variant]
    assert found["again_equal"] and found["plain_equal"] and found["plain_skipped"] == 0, found


@pytest.mark.parametrize("variant", ["base", "distilled"])
def test_threshold_zero_samples_exactly_the_uncached_latent(results, variant):
    found = results[variant]
    assert found["exact_equal"] and found["exact_skipped"] == 0, found


def test_the_pack_sampler_batches_negative_and_positive_as_two_keys_of_one_forward(results):
    assert results["base"]["keys"] == [2] and results["distilled"]["keys"] == [1]


def test_comfyui_ksampler_keys_cond_and_uncond_separately_and_stays_within_the_bound(results):
    found = results["ksampler"]
    assert found["keys"] == [2], found
    assert found["skipped"] >= 1 and found["error"] <= ERROR_BOUND, found


def test_the_refiner_is_refused_with_what_to_do(results):
    assert "refiner" in results["refiner"] and "load the base or distilled DiT" in results["refiner"]
