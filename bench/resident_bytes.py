"""The full HunyuanImage-2.1 DiT's resident bytes per weight format, and which VRAM sizes hold it at 2048x2048.

Resident bytes are counted tensor by tensor on a full-size DiT built on the meta device (nothing allocated), as
this pack holds each format after loading:

- bf16: every tensor in 2 bytes.
- fp8 (the official FP8 release): every Linear weight inside the double and single blocks in e4m3 (1 byte) with one
  float32 scale per tensor; everything else (embedders, token refiner, final layer, biases, norms) bf16.
- GGUF (Q8_0 ... Q2_K): the types the published files hold. city96's converter (ComfyUI-GGUF tools/convert.py)
  writes 1-D tensors and tensors of <= 1024 elements in F32 and the rest in BF16; its patched llama-quantize
  (tools/lcpp.patch, arch "hyvid") then quantizes only 2-D weights outside ``txt_in.``, ``img_in.``, ``time_in.``,
  ``vector_in.``, ``guidance_in.``, ``final_layer.`` and (ComfyUI-GGUF PR #333) ``byt5_in.``, to the file type's
  base type, except for its image-model mixes: a fused ``*attn_qkv.weight`` goes to Q4_K in Q3_K_M / Q3_K_L, Q5_K
  in Q4_K_M and Q6_K in Q5_K_M; its ``attn_v`` and ``ffn_down`` rules match no HunyuanImage-2.1 name, so the _K_S
  types and Q2_K are pure, and in this model the _K_M mix moves the 40 double-block qkv weights only; a K-quant
  row that is not whole 256-element blocks stays F16. The pack keeps quantized weights as their blocks and casts
  every float tensor (F32, BF16, F16) to the bf16 compute dtype at load, so those count 2 bytes resident.

Whether a card holds the DiT: resident bytes + the working set of one forward at 2048x2048 + a fixed overhead
(the CUDA context and ComfyUI's reserve, ``--overhead-gib``) <= the card's memory; otherwise ComfyUI loads part of
the model and streams the rest per step (it works, more slowly). The working set is derived from the activations:
the single-stream block is the largest point of a forward (the double block's streams are narrower), and its live
tensors were counted at each step of its ``forward`` (bf16 activations, ``--batch`` x (4096 image + ``--text-tokens``)
tokens; fp32 norm and RoPE temporaries peak lower). A quantized layer also expands its weight to bf16 per call; the
temporaries of that expansion were measured here (peak RSS of one expansion, glibc set to return every large block at
once) and scaled to the whole layer, with GGUF kernels working in chunks of ``CHUNK_ELEMENTS["default"]`` elements
as they do on a GPU.

Run: .venv/bin/python bench/resident_bytes.py [--variant base|distilled] [--batch 1] [--text-tokens 256]
     [--overhead-gib 1.0]
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]  # the core, and common.py beside this script (also when imported)

import torch  # noqa: E402
from common import CpuMeter  # noqa: E402

from hunyuan_core.checkpoints import gguf_quants as gq  # noqa: E402
from hunyuan_core.checkpoints.fp8 import quantize_fp8  # noqa: E402
from hunyuan_core.checkpoints.meta import on_meta  # noqa: E402
from hunyuan_core.checkpoints.quantized import QuantizedLinear  # noqa: E402
from hunyuan_core.dit import DiTConfig, HunyuanImageDiT  # noqa: E402
from hunyuan_core.dit.checkpoint import official_fp8_weights  # noqa: E402
from hunyuan_core.memory import single_block_stages  # noqa: E402
from hunyuan_core.variants import get_variant  # noqa: E402

GIB = 1024**3
FORMATS = ("bf16", "fp8", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K")
VRAM_GB = (8, 12, 16, 24, 32, 48)
IMAGE_PIXELS = 2048
COMPUTE_BYTES = 2  # bf16

# --- what the published GGUF files hold (ComfyUI-GGUF tools/convert.py and tools/lcpp.patch) --------------------

QUANTIZATION_THRESHOLD = 1024  # convert.py: tensors this small stay F32
NOT_QUANTIZED = ("txt_in.", "img_in.", "time_in.", "vector_in.", "guidance_in.", "final_layer.", "byt5_in.")
# The name rules of lcpp.patch's img_tensor_get_type (substring matches, as there).
ATTN_V = ("attn_v.weight", ".to_v.weight", ".v.weight", ".attn.w1v.weight", ".attn.w2v.weight", "_attn.v_proj.weight")
FUSED_QKV = ("attn_qkv.weight", "attn.qkv.weight", "attention.qkv.weight")
FFN_DOWN = (
    "ffn_down", ".ffn.2.weight", ".ff.net.2.weight", ".mlp.layer2.weight", ".adaln_modulation_mlp.2.weight",
    ".feed_forward.w2.weight",
)  # fmt: skip
BASE_TYPE = {
    "Q8_0": "Q8_0", "Q6_K": "Q6_K", "Q5_K_M": "Q5_K", "Q5_K_S": "Q5_K", "Q4_K_M": "Q4_K", "Q4_K_S": "Q4_K",
    "Q3_K_L": "Q3_K", "Q3_K_M": "Q3_K", "Q3_K_S": "Q3_K", "Q2_K": "Q2_K",
}  # fmt: skip
ATTN_V_TYPE = {"Q2_K": "Q3_K", "Q3_K_L": "Q5_K", "Q4_K_M": "Q6_K", "Q5_K_M": "Q6_K"}  # Q3_K_M, Q4_K_S: see below
QKV_TYPE = {"Q3_K_M": "Q4_K", "Q3_K_L": "Q4_K", "Q4_K_M": "Q5_K", "Q5_K_M": "Q6_K"}
FFN_DOWN_TYPE = {"Q3_K_M": "Q4_K", "Q3_K_L": "Q5_K", "Q4_K_S": "Q5_K", "Q4_K_M": "Q6_K", "Q5_K_M": "Q6_K"}
K_QUANTS = ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")


def _ggml_dims(shape: tuple[int, ...]) -> int:
    """ggml_n_dims: dimensions up to the last one above 1 in GGUF order (torch's leading 1s do not count)."""
    dims = list(shape)
    while len(dims) > 1 and dims[0] == 1:
        dims.pop(0)
    return len(dims)


def converted_type(name: str, shape: tuple[int, ...]) -> str:
    """The type convert.py writes a bf16 tensor as: F32 when 1-D or tiny, BF16 otherwise."""
    return "F32" if len(shape) == 1 or math.prod(shape) <= QUANTIZATION_THRESHOLD else "BF16"


@dataclass
class _QuantizeState:
    """llama-quantize's counters (its ``attn_v`` rule depends on how many it has seen)."""

    attention_wv: int = 0


def gguf_type(name: str, shape: tuple[int, ...], file_type: str, state: _QuantizeState) -> str:
    """The GGML type of ``name`` in a city96/QuantStack GGUF of ``file_type`` (e.g. "Q4_K_M")."""
    stored = converted_type(name, shape)
    quantize = (
        name.endswith("weight")
        and _ggml_dims(shape) == 2
        and "_norm.weight" not in name
        and not any(part in name for part in NOT_QUANTIZED)
    )
    if not quantize or stored == "F32":  # the tiny F32 ones: none of this model's 2-D weights is that small
        return stored
    new = BASE_TYPE[file_type]
    if any(rule in name for rule in ATTN_V):
        if file_type == "Q3_K_M":
            new = "Q5_K" if state.attention_wv < 2 else "Q4_K"
        elif file_type == "Q4_K_S":
            new = "Q5_K" if state.attention_wv < 4 else new
        else:
            new = ATTN_V_TYPE.get(file_type, new)
        state.attention_wv += 1
    elif any(rule in name for rule in FUSED_QKV):
        new = QKV_TYPE.get(file_type, new)
    elif any(rule in name for rule in FFN_DOWN) or ("experts." in name and ".w2.weight" in name):
        new = FFN_DOWN_TYPE.get(file_type, new)
    if new in K_QUANTS and shape[-1] % gq.QK_K:
        return "F16"  # llama-quantize's fallback for rows that are not whole blocks
    return new


# --- resident bytes -------------------------------------------------------------------------------------------


@dataclass
class Footprint:
    """One weight format of the DiT: bytes resident in this pack, bytes in the file, tensors per stored type."""

    name: str
    parameters: int = 0
    resident: int = 0
    file: int = 0
    types: dict[str, int] = field(default_factory=dict)

    @property
    def bits_per_weight(self) -> float:
        return 8 * self.resident / self.parameters

    def add(self, numel: int, resident: int, file: int, kind: str) -> None:
        self.parameters += numel
        self.resident += resident
        self.file += file
        self.types[kind] = self.types.get(kind, 0) + 1


def dit_config(variant: str) -> DiTConfig:
    return get_variant(variant).dit


def dit_tensors(cfg: DiTConfig) -> list[tuple[str, tuple[int, ...], bool]]:
    """Every state-dict tensor of the DiT: name, shape, and whether it is a block linear's weight (what fp8 holds
    in one byte), from a model on the meta device."""
    model = on_meta(lambda: HunyuanImageDiT(cfg, dtype=torch.bfloat16))
    linears = official_fp8_weights(model)
    return [(name, tuple(t.shape), name in linears) for name, t in model.state_dict().items()]


def footprint(tensors: list[tuple[str, tuple[int, ...], bool]], fmt: str) -> Footprint:
    """The DiT's bytes in format ``fmt`` (one of ``FORMATS``, or another GGUF file type such as "Q4_K_S")."""
    out, state = Footprint(fmt), _QuantizeState()
    for name, shape, block_linear in tensors:
        numel = math.prod(shape)
        if fmt == "bf16":
            out.add(numel, 2 * numel, 2 * numel, "BF16")
        elif fmt == "fp8":
            if block_linear:  # e4m3 weight + a float32 scale (the official file keeps the scales beside it)
                out.add(numel, numel + 4, numel + 4, "F8_E4M3")
            else:
                out.add(numel, 2 * numel, 2 * numel, "BF16")
        else:
            kind = gguf_type(name, shape, fmt, state)
            stored = gq.block_of(kind).nbytes(shape if len(shape) > 1 else (1, numel))
            resident = stored if kind not in ("F32", "F16", "BF16") else COMPUTE_BYTES * numel
            out.add(numel, resident, stored, kind)
    return out


def resident_bytes(variant: str = "base", formats: tuple[str, ...] = FORMATS) -> dict[str, Footprint]:
    """Resident and file bytes of the full-size DiT of ``variant`` in each format."""
    tensors = dit_tensors(dit_config(variant))
    return {fmt: footprint(tensors, fmt) for fmt in formats}


# --- the working set of one forward ---------------------------------------------------------------------------


def measured_peak(run) -> int:
    """Peak resident bytes ``run()`` adds (live memory: see ``common.CpuMeter``)."""
    return CpuMeter().added_by(run)


def expansion_bytes(fmt: str, rows: int = 4096, cols: int = 4096, chunk: int = 1 << 22) -> tuple[float, float]:
    """Measured peak bytes of expanding one ``fmt`` weight to bf16: (per weight element, per chunk element).

    fp8 expands the whole tensor at once (its bf16 copy times the per-tensor scale). GGUF kernels write the bf16 result
    (2 bytes an element) and work through ``chunk`` elements at a time in float32 and uint8 temporaries, so a
    weight of n elements costs 2 n + per-chunk x min(n, chunk); the per-chunk figure is measured with a small
    ``chunk`` here and scaled to the GPU's chunk by the caller."""
    if fmt == "bf16":
        return 0.0, 0.0
    numel = rows * cols
    if fmt == "fp8":
        weight, scale = quantize_fp8(torch.randn(rows, cols, dtype=torch.bfloat16))
        layer = QuantizedLinear(cols, rows, False, torch.bfloat16, "fp8")
        layer.load_state_dict({"weight": weight, "weight_scale": scale.reshape(())}, assign=True)
        return measured_peak(layer.dequantized_weight) / numel, 0.0
    kind = BASE_TYPE[fmt]
    raw = torch.randint(0, 256, (rows, gq.block_of(kind).nbytes((1, cols))), dtype=torch.uint8)
    saved = dict(gq.CHUNK_ELEMENTS)
    gq.CHUNK_ELEMENTS["cpu"] = chunk
    try:
        peak = measured_peak(lambda: gq.dequantize(raw, kind, (rows, cols), torch.bfloat16))
    finally:
        gq.CHUNK_ELEMENTS.clear()
        gq.CHUNK_ELEMENTS.update(saved)
    return 2.0, (peak - 2 * numel) / min(chunk, numel)


@dataclass
class WorkingSet:
    tokens: int
    activations: int  # the bf16 activation peak alone
    total: int  # with the expansion of the layer in use
    stage: str


def working_set(cfg: DiTConfig, fmt: str, tokens: int, per_element: float, per_chunk: float) -> WorkingSet:
    """Peak bytes of one forward beyond the weights: the single block's activations at each step plus, for a
    quantized format, the expansion of linear1 / linear2 right before they are used (and their bf16 copies while
    they multiply)."""
    h, m = cfg.hidden_size, cfg.mlp_hidden
    gpu_chunk = gq.CHUNK_ELEMENTS["default"]
    stages = {name: tokens * n * COMPUTE_BYTES for name, n in single_block_stages(cfg).items()}
    weights = {"linear1": (3 * h + m) * h, "linear2": (h + m) * h}
    candidates = {"attention, cat": stages["attention, cat"]}
    for layer, numel in weights.items():
        expand = per_element * numel + per_chunk * min(numel, gpu_chunk)
        copy = COMPUTE_BYTES * numel if fmt != "bf16" else 0
        candidates[f"{layer} expanding"] = stages[f"{layer} in"] + expand
        candidates[f"{layer} multiplying"] = stages[f"{layer} out"] + copy
    stage = max(candidates, key=candidates.get)
    return WorkingSet(tokens, max(stages.values()), int(candidates[stage]), stage)


# --- the report -----------------------------------------------------------------------------------------------


def type_summary(fp: Footprint) -> str:
    return ", ".join(f"{count} {kind}" for kind, count in sorted(fp.types.items(), key=lambda item: -item[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="base", choices=("base", "distilled"))
    parser.add_argument("--batch", type=int, default=1, help="samples per forward (2: CFG's prompts in one batch)")
    parser.add_argument("--text-tokens", type=int, default=256, help="valid text tokens (MLLM + ByT5)")
    parser.add_argument("--overhead-gib", type=float, default=1.0, help="CUDA context + ComfyUI's reserve")
    args = parser.parse_args()
    cfg = dit_config(args.variant)
    footprints = resident_bytes(args.variant)
    image_tokens = (IMAGE_PIXELS // 32) ** 2
    tokens = args.batch * (image_tokens + args.text_tokens)
    measured = CpuMeter.available()
    expansion = {
        fmt: expansion_bytes(fmt) if measured else (6.0, 6.0)  # unmeasured: float32 + bf16 of the whole chunk
        for fmt in ("bf16", "fp8", *(f for f in FORMATS if f in BASE_TYPE))
    }
    params = footprints["bf16"].parameters
    print(f"HunyuanImage-2.1 {args.variant} DiT, {params / 1e9:.2f} B parameters; working set at "
          f"{IMAGE_PIXELS}x{IMAGE_PIXELS}: batch {args.batch} x ({image_tokens} image + {args.text_tokens} text) "
          f"tokens, bf16 activations; + {args.overhead_gib:.1f} GiB CUDA context and ComfyUI reserve; "
          "a card of N GB has N GiB")  # fmt: skip
    print()
    cards = " | ".join(f"{gb} GB" for gb in VRAM_GB)
    print(f"| format | bits/weight | resident GiB | file GiB | working set GiB | total GiB | {cards} |")
    print("| --- " * (6 + len(VRAM_GB)) + "|")
    sets = {}
    for fmt, fp in footprints.items():
        per_element, per_chunk = expansion["bf16" if fmt == "bf16" else ("fp8" if fmt == "fp8" else fmt)]
        ws = sets[fmt] = working_set(cfg, fmt, tokens, per_element, per_chunk)
        total = fp.resident + ws.total + args.overhead_gib * GIB
        fits = " | ".join("full" if total <= gb * GIB else "stream" for gb in VRAM_GB)
        print(f"| {fmt} | {fp.bits_per_weight:.2f} | {fp.resident / GIB:.2f} | {fp.file / GIB:.2f} | "
              f"{ws.total / GIB:.2f} | {total / GIB:.2f} | {fits} |")  # fmt: skip
    print()
    print("full: the whole DiT stays on the GPU; stream: ComfyUI keeps part of it in RAM and moves it per step.")
    bf16_ws = sets["bf16"]
    print(f"activations: {bf16_ws.activations / GIB:.2f} GiB at the single block's peak ({bf16_ws.stage}); "
          "a quantized layer adds its bf16 expansion: "
          + ", ".join(f"{fmt} {(ws.total - ws.activations) / GIB:.2f} GiB ({ws.stage})"
                      for fmt, ws in sets.items() if fmt != "bf16"))  # fmt: skip
    how = "measured as the peak RSS of one expansion" if measured else "not measurable here, assumed"
    chunk = gq.CHUNK_ELEMENTS["default"]
    print(f"expansion to bf16 ({how}): fp8 {expansion['fp8'][0]:.2f} B/weight; GGUF 2 B/weight (the result) plus, "
          f"per element of a chunk ({chunk} elements on a GPU), "
          + ", ".join(f"{fmt} {c:.2f} B" for fmt, (_, c) in expansion.items() if fmt in BASE_TYPE))  # fmt: skip
    for fmt, fp in footprints.items():
        if fmt not in ("bf16", "fp8"):
            print(f"{fmt} tensors: {type_summary(fp)}")


if __name__ == "__main__":
    main()
