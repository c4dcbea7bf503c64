"""LoRAs of every published layout applied to the pack's DiT by ComfyUI itself: the weights and outputs they give.

One probe runs inside the hosted ComfyUI (on the CPU) with a tiny distilled DiT (all of its Linear layers on the
forward path) stored four ways: fp32, bf16, fp8 (quantized at load) and GGUF Q8_0. Each LoRA file of
``lora_files`` (one canonical LoRA in eight trainers' spellings, LyCORIS LoHa / LoKr files) is loaded through
ComfyUI's native ``comfy.sd.load_lora_for_models`` (after the pack's ``extend_host_key_map``) and through the pack
node's ``lora_patches``. Checked against changes computed by hand (``lora_files``), never against the pack's key map:
- every targeted weight (and part of a fused weight) is W + strength * delta as ComfyUI computes it (the patched
  state dict, or for fp8 / GGUF layers the expanded weight with the layer's patches), every other tensor untouched;
- the output equals a plain model holding the hand-merged weights (fp8 / GGUF: dequantized weights + delta), and
  every spelling of the canonical LoRA gives the same output;
- strength 0 and unpatching give the unpatched output bit for bit, two stacked LoRAs add both changes;
- fp8 / GGUF layers keep their stored bytes and hold no full-precision copy of a patched weight;
- ComfyUI's low-VRAM mode (every layer streamed, patches applied as the weight is fetched) and ComfyUI offloading a
  fully loaded patched model (``partially_unload``) give the full-load output, each weight's patch applied once.
bf16 weights are compared within ComfyUI's stochastic rounding, everything computed in float32 to 1e-6 (mostly 0).
"""

from __future__ import annotations

import re

import pytest

from hy21_host import IMPORT_PACK, run_in_comfyui

pytestmark = pytest.mark.parity

CANONICAL = ("kohya", "kohya_comfy", "kohya_split_qkv", "peft", "peft_comfy", "diffusers", "comfyui", "base_model")
FORMATS = (*CANONICAL, "loha", "lokr", "lycoris_diffusers")
KINDS = ("fp32", "bf16", "fp8", "gguf")
COMPUTE_FP32 = ("fp32", "fp8", "gguf")  # kinds whose arithmetic is float32 end to end: compared to 1e-6
QUANTIZED = ("fp8", "gguf")
TOL = 1e-6
BF16_TOL = 2.0**-7  # ComfyUI rounds a patched bf16 weight stochastically: within one bf16 step of W + s * delta
BF16_OUTPUT_TOL = 2e-2  # the same bf16 model patched two ways (measured: <= 0.9 %)
STRENGTH = 0.7
# What ComfyUI logs for a LoRA tensor it could not place or merge (unmapped keys, wrong shapes, failed adapters).
PLACEMENT_WARNINGS = re.compile(r"lora|not loaded|shape mismatch|not merged|weight failed", re.IGNORECASE)

PROBE = (
    IMPORT_PACK
    + """
import logging
import traceback
from pathlib import Path
import torch
sys.path[1:1] = [root, root + "/tests", root + "/scripts"]
import comfy.lora, comfy.sd, comfy.utils
import comfy.model_management as mm
from safetensors.torch import save_file
from dit_files import TINY_DISTILLED as CFG, random_state
from gguf_files import quantstack_tensors, write_gguf
from helpers import relative_error
from lora_files import canonical_deltas, canonical_files, canonical_lora, lycoris_files, merged, placed_deltas
from hy21_pack.hunyuan_core.checkpoints.quantized import QuantizedWeights
from hy21_pack.hunyuan_core.dit import HunyuanImageDiT
from hy21_pack.hunyuan_core.dit.checkpoint import load_dit
from hy21_pack.nodes import extend_host_key_map, management
from hy21_pack.nodes.lora_loader import lora_patches
from hy21_pack.nodes.model import wrap_dit
from hy21_pack.nodes.quantized_patching import layer_patches

torch.set_num_threads(1)
folder, strength = Path(sys.argv[3]), float(sys.argv[4])
CPU = torch.device("cpu")
STORED = (torch.float8_e4m3fn, torch.uint8)  # what fp8 and GGUF layers keep
extend_host_key_map()


class Warnings(logging.Handler):  # ComfyUI's "lora key not loaded" / "NOT LOADED" lines
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


warnings = Warnings()
logging.getLogger().addHandler(warnings)

state = random_state(CFG, 0)
save_file(state, str(folder / "dit.safetensors"))
tensors, gguf_reference = quantstack_tensors(state, "Q8_0")
write_gguf(folder / "dit.gguf", tensors)
canonical = canonical_lora(CFG)
files = {name: (t, canonical_deltas(canonical)) for name, t in canonical_files(canonical, CFG).items()}
spellings = list(files)
files.update({name: (t, placed_deltas(placed, CFG)) for name, (t, placed) in lycoris_files(CFG).items()})
for name, (t, _) in files.items():
    save_file(t, str(folder / f"{name}.safetensors"))

gen = torch.Generator().manual_seed(3)
x, ctx, byt5 = (torch.randn(*shape, generator=gen) for shape in ((1, 64, 4, 4), (1, 5, 48), (1, 3, 40)))
t, guidance = torch.tensor([500.0]), torch.tensor([3.25])
options = {"sample_sigmas": torch.tensor([1.0, 0.5, 0.25, 0.0])}  # MeanFlow's second timestep: time_r_in runs


def forward(patcher):
    with torch.no_grad():
        return patcher.model.diffusion_model(
            x, t, ctx, txt_byt5=byt5, guidance=guidance, transformer_options=options
        ).clone()


def run(patcher):
    mm.load_models_gpu([patcher])
    return forward(patcher)


def snapshot(patcher):
    return {k: v.clone() for k, v in patcher.model.diffusion_model.state_dict().items()}


def effective(patcher, only=None):
    # Official weight name -> the float32 weight the layer computes with (fp8 / GGUF: expanded, its patches applied).
    out = {}
    for name, m in patcher.model.diffusion_model.named_modules():
        key = f"{name}.weight"
        if only is not None and key not in only:
            continue
        if isinstance(m, QuantizedWeights):
            w = m.dequantized_weight()
            for patch in layer_patches(m):
                w = patch(w)
            out[key] = w.float()
        elif isinstance(getattr(m, "weight", None), torch.Tensor):
            out[key] = m.weight.detach().float().clone()
    return out


def reference(weights):
    model = HunyuanImageDiT(CFG, dtype=torch.float32).eval()
    model.load_state_dict(weights)
    return wrap_dit(model)


def native(patcher, name, s):
    lora = comfy.utils.load_torch_file(str(folder / f"{name}.safetensors"), safe_load=True)
    return comfy.sd.load_lora_for_models(patcher, None, lora, s, 0)[0]


def tensors_in(value, depth=0, seen=None):
    seen = set() if seen is None else seen
    if id(value) in seen or depth > 8 or isinstance(value, (torch.nn.Module, type, str, bytes)):
        return
    seen.add(id(value))
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from tensors_in(v, depth + 1, seen)
    elif isinstance(value, (list, tuple, set)):
        for v in value:
            yield from tensors_in(v, depth + 1, seen)
    elif hasattr(value, "__dict__"):
        yield from tensors_in(vars(value), depth + 1, seen)


def full_copies(patcher):
    # Quantized layers holding a float tensor as large as their weight (other than the stored fp8 weight itself),
    # or a weight backed up by ComfyUI's patcher for merging.
    found = []
    for name, m in patcher.model.diffusion_model.named_modules():
        if not isinstance(m, QuantizedWeights):
            continue
        size = m.out_features * m.in_features
        own = {k: v for k, v in vars(m).items() if k not in ("_parameters", "_buffers", "_modules")}
        for tensor in tensors_in([own, m._buffers]):
            if tensor.is_floating_point() and tensor.numel() >= size:
                found.append(name)
        if f"diffusion_model.{name}.weight" in patcher.backup or m.weight.dtype not in STORED:
            found.append(name)
    return sorted(set(found))


def patch_counts(patcher, targeted):
    # How many patch functions each targeted layer applies to its weight as it computes.
    counts = set()
    for name, m in patcher.model.diffusion_model.named_modules():
        if f"{name}.weight" in targeted:
            counts.add(len(layer_patches(m)) if isinstance(m, QuantizedWeights) else len(m.weight_function))
    return sorted(counts)


def lowvram(patcher, targeted):
    # Every layer streamed (nothing fits in 1 byte): patches applied as ComfyUI fetches each weight.
    mm.unload_all_models()
    patcher.patch_model(device_to=CPU, lowvram_model_memory=1)
    try:
        return forward(patcher), patch_counts(patcher, targeted), full_copies(patcher)
    finally:
        patcher.unpatch_model(device_to=CPU)


def partially_unloaded(patcher, targeted):
    # ComfyUI freeing memory from a fully loaded model: every layer goes back to streaming with its patches as weight
    # functions, while fp8 / GGUF layers still hold the patch they were handed at the full load.
    run(patcher)
    patcher.partially_unload(CPU, memory_to_free=1 << 40)
    try:
        return forward(patcher), patch_counts(patcher, targeted)
    finally:
        mm.unload_all_models()


def loaders(kind):
    path = folder / ("dit.gguf" if kind == "gguf" else "dit.safetensors")
    dtype = torch.bfloat16 if kind == "bf16" else torch.float32
    return load_dit(path, dtype=dtype, quantize_fp8=kind == "fp8", operations=management.operations())


def check(kind, name, deltas, base, before, stored, base_weights, plain):
    # One LoRA file on one model: the weights ComfyUI computes, the outputs (native, pack node, low-VRAM).
    warnings.lines.clear()
    patched = native(base, name, strength)
    out = run(patched)
    weights = effective(patched, only=deltas)
    errors = {k: relative_error(weights[k], base_weights[k] + strength * d) for k, d in deltas.items() if k in weights}
    now = snapshot(patched)
    # every tensor the LoRA does not target, and the stored fp8 weights / GGUF bytes of those it does
    changed = [k for k, v in stored.items() if (k not in deltas or v.dtype in STORED) and not torch.equal(now[k], v)]
    modules = patched.model.diffusion_model.named_modules()
    quantized = {f"{n}.weight" for n, m in modules if isinstance(m, QuantizedWeights)}
    f = {
        "output": out, "targeted": len(deltas), "missing": sorted(set(deltas) - set(weights)),
        "quantized_targeted": len(quantized & set(deltas)),
        "weight_error": max(errors.values()), "worst": max(errors, key=errors.get),
        "changed_tensors": changed, "warnings": list(warnings.lines),
        "full_copies": full_copies(patched) if kind in ("fp8", "gguf") else [],
    }
    f["changed"] = relative_error(out, before)
    if kind != "bf16":  # bf16: ComfyUI's stochastic rounding of patched weights is no hand merge
        f["vs_merged"] = relative_error(out, run(reference(merged(plain, (deltas, strength)))))
    patches, match = lora_patches(base, str(folder / f"{name}.safetensors"), name)
    mine = base.clone()
    applied = mine.add_patches(patches, strength)
    mine_out = run(mine)
    f["pack_equal"] = bool(torch.equal(mine_out, out))
    f["pack_vs_native"] = relative_error(mine_out, out)
    f["pack_unapplied"] = len(patches) - len(applied)
    f["pack_unmatched"] = match.unmatched
    low, counts, copies = lowvram(patched, deltas)
    f["lowvram_vs_full"] = relative_error(low, out)
    f["lowvram_equal"] = bool(torch.equal(low, out))
    f["lowvram_patch_counts"] = counts
    f["lowvram_full_copies"] = copies
    low, counts = partially_unloaded(patched, deltas)
    f["unloaded_vs_full"] = relative_error(low, out)
    f["unloaded_patch_counts"] = counts
    return f


result = {}
for kind in ("fp32", "bf16", "fp8", "gguf"):
    base = wrap_dit(loaders(kind))
    before = run(base)
    stored = snapshot(base)
    base_weights = effective(base)
    plain = {k: v.float() for k, v in stored.items() if not k.endswith("weight_scale")}
    plain.update({k: v for k, v in base_weights.items() if k in plain})  # fp8 / GGUF: the dequantized weights
    r = {"formats": {}}
    if kind == "gguf":  # the pack's dequantization is the gguf package's
        r["gguf_reference"] = all(torch.equal(plain[k], v.float()) for k, v in gguf_reference.items())
    outputs = {}
    for name, (_, deltas) in files.items():
        try:
            f = check(kind, name, deltas, base, before, stored, base_weights, plain)
            outputs[name] = f.pop("output")
        except Exception:
            f = {"error": traceback.format_exc()[-3000:]}
            mm.unload_all_models()
        r["formats"][name] = f
    if kind != "bf16":
        r["same_output"] = {n: relative_error(outputs[n], outputs["kohya"]) for n in spellings if n in outputs}
        r["strength0_equal"] = bool(torch.equal(run(native(base, "kohya", 0.0)), before))
        second = -1.3
        stacked = native(native(base, "kohya", strength), "lycoris_diffusers", second)
        stacked_out = run(stacked)
        both = merged(plain, (files["kohya"][1], strength), (files["lycoris_diffusers"][1], second))
        r["stacked_vs_merged"] = relative_error(stacked_out, run(reference(both)))
        r["stacked_vs_first"] = relative_error(stacked_out, outputs["kohya"])
        low, counts, _ = lowvram(stacked, set(files["kohya"][1]) | set(files["lycoris_diffusers"][1]))
        r["stacked_lowvram_vs_full"] = relative_error(low, stacked_out)
        r["stacked_lowvram_patch_counts"] = counts
    again = run(base)
    r["unpatched_equal"] = bool(torch.equal(again, before))
    r["unpatched_state_equal"] = all(torch.equal(v, stored[k]) for k, v in snapshot(base).items())
    mm.unload_all_models()
    result[kind] = r
"""
)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    return run_in_comfyui(PROBE, tmp_path_factory.mktemp("lora"), STRENGTH, timeout=600)


def kind_format(kinds):
    return [pytest.param(k, f, id=f"{k}-{f}") for k in kinds for f in FORMATS]


def outcome(results: dict, kind: str, fmt: str) -> dict:
    """What the probe found for one LoRA file on one model (failing on an exception it caught there)."""
    r = results[kind]["formats"][fmt]
    assert "error" not in r, r["error"]
    return r


@pytest.mark.parametrize(("kind", "fmt"), kind_format(KINDS))
def test_patched_weights_are_weight_plus_strength_times_delta(results, kind, fmt):
    """Every weight (and part of a fused weight) the LoRA targets is W + strength * delta as ComfyUI computes it;
    no other tensor of the model changes, and ComfyUI logs no warning (unplaced keys, shape errors)."""
    r = outcome(results, kind, fmt)
    assert r["missing"] == [] and r["targeted"] > 0, r
    assert r["weight_error"] <= (BF16_TOL if kind == "bf16" else TOL), r
    assert r["changed_tensors"] == [], r
    assert [w for w in r["warnings"] if PLACEMENT_WARNINGS.search(w)] == [], r


@pytest.mark.parametrize(("kind", "fmt"), kind_format(COMPUTE_FP32))
def test_output_equals_hand_merged_model(results, kind, fmt):
    """The patched DiT computes what a plain DiT holding W + strength * delta computes (fp8 / GGUF: W dequantized)."""
    r = outcome(results, kind, fmt)
    assert r["vs_merged"] <= TOL, r
    assert r["changed"] > 1e-3, r  # the LoRA really changes the output


@pytest.mark.parametrize("kind", COMPUTE_FP32)
def test_every_spelling_of_one_lora_gives_the_same_output(results, kind):
    same = results[kind]["same_output"]
    assert set(same) == set(CANONICAL), same
    assert max(same.values()) <= TOL, same


@pytest.mark.parametrize(("kind", "fmt"), kind_format(KINDS))
def test_pack_node_patches_equal_native_ones(results, kind, fmt):
    """The pack node's ``lora_patches`` matches every module and gives the native loader's output bit for bit."""
    r = outcome(results, kind, fmt)
    assert r["pack_unmatched"] == [] and r["pack_unapplied"] == 0, r
    assert r["pack_equal"], r


@pytest.mark.parametrize(("kind", "fmt"), kind_format(KINDS))
def test_low_vram_output_equals_full_load(results, kind, fmt):
    """With every layer streamed, each patched weight gets exactly one patch function and the output is the
    full-load output (bf16: ComfyUI patches a streamed bf16 weight in bf16 arithmetic, a fully loaded one in float32
    with stochastic rounding, so the two agree to bf16 precision only)."""
    r = outcome(results, kind, fmt)
    assert r["lowvram_patch_counts"] == [1], r
    assert r["lowvram_vs_full"] <= (BF16_OUTPUT_TOL if kind == "bf16" else TOL), r


@pytest.mark.parametrize(("kind", "fmt"), kind_format(KINDS))
def test_partially_unloaded_model_applies_each_patch_once(results, kind, fmt):
    """ComfyUI offloading a fully loaded patched model (``partially_unload``) turns every patched layer into a
    streamed one: the fp8 / GGUF layers, which still hold the patch handed over at the full load, must not apply it
    a second time, and the output stays the full-load output."""
    r = outcome(results, kind, fmt)
    assert r["unloaded_patch_counts"] == [1], r
    assert r["unloaded_vs_full"] <= (BF16_OUTPUT_TOL if kind == "bf16" else TOL), r


@pytest.mark.parametrize("kind", COMPUTE_FP32)
def test_strength_zero_and_stacking(results, kind):
    """Strength 0 leaves the output bit for bit; two LoRAs loaded one after the other (on shared weights, parts
    and the swapped final modulation included) add both changes, fully loaded and streamed."""
    r = results[kind]
    assert r["strength0_equal"], r
    assert r["stacked_vs_merged"] <= TOL and r["stacked_vs_first"] > 1e-3, r
    assert r["stacked_lowvram_vs_full"] <= TOL and r["stacked_lowvram_patch_counts"] == [1], r


@pytest.mark.parametrize("kind", KINDS)
def test_unpatching_restores_the_model_bit_for_bit(results, kind):
    """Loading the unpatched MODEL again after every LoRA gives its first output and its first tensors exactly."""
    r = results[kind]
    assert r["unpatched_equal"] and r["unpatched_state_equal"], r


@pytest.mark.parametrize(("kind", "fmt"), [pytest.param(k, f, id=f"{k}-{f}") for k in QUANTIZED for f in FORMATS])
def test_quantized_layers_keep_their_bytes_and_no_float_copy(results, kind, fmt):
    """fp8 / GGUF layers stay as stored while patched (bytes compared before and after) and hold no full-precision
    copy of a patched weight, neither fully loaded nor streamed."""
    r = outcome(results, kind, fmt)
    assert r["quantized_targeted"] > 0, r  # the LoRA does patch quantized layers
    assert r["changed_tensors"] == [] and r["full_copies"] == [] and r["lowvram_full_copies"] == [], r
    if kind == "gguf":
        assert results[kind]["gguf_reference"]
