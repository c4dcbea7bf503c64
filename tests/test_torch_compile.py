"""``torch.compile`` on the pack's DiT inside the real ComfyUI (CPU, in a subprocess).

- Each block the DiT runs (double-stream, single-stream, the token refiner's) compiles as one graph with no break,
  with ComfyUI's attention as the DiT calls it (``torch._dynamo.explain``).
- ComfyUI's own compile helper (``set_torch_compile_wrapper``, what its TorchCompileModel node calls), asked for the
  pack's blocks with ``fullgraph=True``, samples the pack's MODEL through the pack's guider to the eager result; it
  compiles once per block for the first prompt, not again per step nor for another prompt of the same length, and a
  prompt of another length costs at most one recompile per block, after which text length is dynamic.
- The whole diffusion model compiled as TorchCompileModel does (``fullgraph=False``) samples to the eager result.

The backend is a counting one that runs the captured graph as it is: capture, guards and recompiles are what is
tested; the kernels a GPU's inductor would generate are not built here.
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
import torch._dynamo as dynamo
import comfy.utils
from comfy_api.torch_helpers import set_torch_compile_wrapper
from hy21_pack.hunyuan_core.dit import DiTConfig, HunyuanImageDiT
from hy21_pack.hunyuan_core.sampling import Conditioning, plan_sampling
from hy21_pack.nodes.conditioning import to_comfy
from hy21_pack.nodes.guider import HunyuanGuider, sample_with_guider
from hy21_pack.nodes.model import wrap_dit

comfy.utils.PROGRESS_BAR_ENABLED = False
torch.manual_seed(0)
cfg = DiTConfig(variant="base", hidden_size=64, num_heads=2, depth_double=1, depth_single=1, rope_axes=(16, 16),
                text_dim=48, byt5_dim=40, byt5_hidden=96)
dit = HunyuanImageDiT(cfg, dtype=torch.float32).eval()
dit.load_state_dict({name: torch.randn_like(t) * 0.1 for name, t in dit.state_dict().items()})
model = wrap_dit(dit)  # the DiT's attention is ComfyUI's selection from here on
BLOCKS = ["diffusion_model.dit.double_blocks.0", "diffusion_model.dit.single_blocks.0",
          "diffusion_model.dit.txt_in.individual_token_refiner.blocks.0"]

# 1. one graph per block, no break: the inputs each block receives in a real forward
captured = {}
def keep(name):
    def hook(module, args, kwargs):
        captured[name] = (module, args, kwargs)
    return hook
handles = [dit.get_submodule(key.removeprefix("diffusion_model.dit.")).register_forward_pre_hook(keep(key),
           with_kwargs=True) for key in BLOCKS]
x, t = torch.randn(2, 64, 4, 4), torch.tensor([500.0, 500.0])
text, mask = torch.randn(2, 9, 48), torch.ones(2, 9, dtype=torch.long)
mask[1, 6:] = 0
with torch.no_grad():
    dit(x, t, text, mask)
for handle in handles:
    handle.remove()
explained = {}
for key, (module, args, kwargs) in captured.items():
    with torch.no_grad():
        report = dynamo.explain(module)(*args, **kwargs)
    explained[key] = {"graphs": report.graph_count, "breaks": report.graph_break_count,
                      "reasons": [str(r.reason)[:300] for r in report.break_reasons]}
dynamo.reset()

# 2. ComfyUI's compile helper on the blocks, fullgraph, through the pack's guider (CFG, two passes)
compiles = []
def counting(graph, example_inputs):
    compiles.append(len(example_inputs))
    return graph.forward

def prompt(tokens, seed):
    gen = torch.Generator().manual_seed(seed)
    states = torch.randn(1, tokens, 48, generator=gen)
    return Conditioning(mllm=states, mllm_mask=torch.ones(1, tokens, dtype=torch.int64))

plan = plan_sampling("base", steps=3, apg_start=1)
noise = torch.randn(1, 64, 4, 4, generator=torch.Generator().manual_seed(3))
def sample(patcher, tokens, seed):
    guider = HunyuanGuider(patcher, plan.guidance, offset=plan.schedule.offset)
    guider.set_conds(to_comfy(prompt(tokens, seed), "positive"), to_comfy(prompt(5, 99), ""))
    return sample_with_guider(guider, noise, {"samples": torch.zeros_like(noise)}, plan.schedule.sigmas, seed=0)

eager = {tokens: sample(model, tokens, tokens) for tokens in (7, 11, 13)}
compiled = model.clone()
set_torch_compile_wrapper(compiled, backend=counting, fullgraph=True, keys=BLOCKS)
after = {}
diffs = {}
for label, tokens in (("first", 7), ("same_length", 7), ("other_length", 11), ("third_length", 13)):
    out = sample(compiled, tokens, tokens)
    diffs[label] = (out - eager[tokens]).abs().max().item()
    after[label] = len(compiles)

# 3. the whole diffusion model, as TorchCompileModel compiles it
dynamo.reset()
whole = model.clone()
set_torch_compile_wrapper(whole, backend=counting, keys=["diffusion_model"])
whole_diff = (sample(whole, 7, 7) - eager[7]).abs().max().item()
result = {"explained": explained, "compiles_after": after, "diffs": diffs, "whole_diff": whole_diff}
"""
)


@pytest.fixture(scope="module")
def probe() -> dict:
    return run_in_comfyui(PROBE, timeout=600)


def test_each_block_is_one_graph_without_breaks(probe):
    assert len(probe["explained"]) == 3, probe["explained"]
    for block, report in probe["explained"].items():
        assert (report["graphs"], report["breaks"]) == (1, 0), f"{block}: {report}"


def test_comfyui_compiled_blocks_sample_to_the_eager_result_without_recompiling_per_step(probe):
    assert max(probe["diffs"].values()) == 0.0, probe["diffs"]
    after = probe["compiles_after"]
    blocks = len(probe["explained"])
    assert after["first"] == blocks, (
        f"a prompt's 3 steps x 2 passes compiled {after['first']} graphs for {blocks} blocks"
    )
    assert after["same_length"] == after["first"], after
    assert after["other_length"] <= after["first"] + blocks, after
    assert after["third_length"] == after["other_length"], f"text length did not become dynamic: {after}"


def test_whole_model_compiled_as_torch_compile_model_does_samples_the_same(probe):
    assert probe["whole_diff"] == 0.0, probe["whole_diff"]
