"""GGUF checkpoints for tests, written with the ``gguf`` package's own writer in the layouts the published files use.

QuantStack's HunyuanImage-2.1 files come from city96's converter (ComfyUI-GGUF ``tools/convert.py``, whose
HunyuanVideo template also matches this model) and its patched ``llama-quantize``: architecture ``hyvid``, the
official fused tensor names without a prefix, one-dimensional and very small tensors (<= 1024 elements) in F32, the
embedders, final layer and ``byt5_in`` left in BF16, every other 2-D weight quantized to the file's type, and a row
that is not whole blocks of that type left in F16. The refiner's 5-D patch-embedding weight is added back in F32.

The ``gguf`` package can quantize the legacy types only, so quantized weights are random valid blocks (random quant
bytes, small float16 scales): each weight is then exactly what the package's reference dequantizer makes of its
bytes, which is what the tests compare against.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import gguf
import numpy as np
import torch
from gguf import GGMLQuantizationType, GGUFWriter
from gguf import quants as reference

from hunyuan_core.checkpoints import gguf_quants as gq

QUANTIZATION_THRESHOLD = 1024  # city96's converter keeps tensors this small in F32
# What the patched llama-quantize never quantizes in a "hyvid" file (tools/lcpp.patch; byt5_in since PR #333).
UNQUANTIZED = ("txt_in.", "img_in.", "time_in.", "vector_in.", "guidance_in.", "final_layer.", "byt5_in.")
# A scale that keeps each type's dequantized values around +-0.1 (the largest quant times the largest sub-scale).
SCALE = {"Q8_0": 1e-3, "Q5_0": 6e-3, "Q5_1": 6e-3, "Q4_0": 1.2e-2, "Q4_1": 1.2e-2,
         "Q6_K": 4e-5, "Q5_K": 1e-4, "Q4_K": 2e-4, "Q3_K": 5e-4, "Q2_K": 1e-3}  # fmt: skip
# The min (or the min's scale) that centres each type's values on zero: the mean quant times the scale, negated where
# the type adds its min and positive where it subtracts it (the K-quants' dmin).
CENTRE = {"Q5_1": -15.5, "Q4_1": -7.5, "Q5_K": 15.5, "Q4_K": 7.5, "Q2_K": 1.5}


def random_blocks(type_name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Valid random bytes of a ``type_name`` tensor of ``shape`` (torch order), as rows of bytes."""
    block = gq.block_of(type_name)
    n_blocks = int(np.prod(shape)) // block.block_size
    blocks = rng.integers(0, 256, (n_blocks, block.type_size), dtype=np.uint8)
    scale = rng.uniform(0.5, 1.0, n_blocks) * SCALE[type_name]
    fields = zip(block.scales_at, (1.0, CENTRE.get(type_name, 1.0)), strict=False)
    for offset, factor in fields:
        halves = (scale * factor).astype(np.float16)
        blocks[:, offset : offset + 2] = halves.view(np.uint8).reshape(n_blocks, 2)
    return blocks.reshape(*shape[:-1], -1)


def stored_type(name: str, shape: tuple[int, ...], type_name: str) -> str:
    """The type city96's converter and its patched llama-quantize give a tensor in a file of ``type_name``: F32 for
    1-D, tiny and 5-D tensors, BF16 (the converter's type for a bf16 source) for the embedders, final layer and
    ``byt5_in`` that llama-quantize leaves alone, the file's type for the other 2-D weights, F16 for a row that is
    not whole blocks."""
    if len(shape) == 1 or int(np.prod(shape)) <= QUANTIZATION_THRESHOLD or len(shape) > 4:
        return "F32"
    if type_name in ("F32", "F16", "BF16"):
        return type_name
    if name.startswith(UNQUANTIZED) or len(shape) != 2:
        return "BF16"
    if shape[-1] % gq.block_of(type_name).block_size:
        return "F16"  # llama-quantize leaves rows that are not whole blocks in F16
    return type_name


def float_bytes(values: np.ndarray, type_name: str) -> np.ndarray:
    """float32 ``values`` as a GGUF float tensor's data: F32 / F16 arrays, BF16 as rows of bytes (top halves)."""
    if type_name in ("F32", "F16"):
        return values.astype(np.float32 if type_name == "F32" else np.float16)
    top = (values.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    return top.view(np.uint8).reshape(*values.shape[:-1], -1)


def quantstack_tensors(
    state: Mapping[str, torch.Tensor],
    type_name: str,
    seed: int = 0,
    types: Mapping[str, str] | None = None,
    reference: bool = True,
) -> tuple[dict[str, tuple[np.ndarray, str]], dict[str, torch.Tensor]]:
    """A DiT state dict (official fused names) as a QuantStack-style GGUF's tensors, and the float32 weights the
    file holds (quantized weights are random blocks; float ones are the state's values rounded to their type).

    ``types`` overrides the type of single tensors by name (mixed files such as Q4_K_M). ``reference=False`` skips
    the (slow, numpy) reference reading: the second dict comes back empty, for benchmarks that need only the file."""
    rng = np.random.default_rng(seed)
    tensors, expected = {}, {}
    for name, value in state.items():
        shape = tuple(value.shape)
        kind = stored_type(name, shape, (types or {}).get(name, type_name))
        if kind in ("F32", "F16", "BF16"):
            raw = float_bytes(value.float().numpy(), kind)
        else:
            raw = random_blocks(kind, shape, rng)
        tensors[name] = (raw, kind)
        if reference:
            expected[name] = dequantized(raw, kind, shape)
    return tensors, expected


def dequantized(raw: np.ndarray, type_name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """The gguf package's reference reading of ``raw``, float32, in ``shape``."""
    if type_name in ("F32", "F16"):
        return torch.from_numpy(raw.astype(np.float32)).reshape(shape)
    values = reference.dequantize(raw, GGMLQuantizationType[type_name])
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).reshape(shape)


def write_gguf(
    path: Path,
    tensors: Mapping[str, tuple[np.ndarray, str]],
    arch: str | None = "hyvid",
    metadata: Mapping[str, str | int] | None = None,
) -> Path:
    """Write ``tensors`` (raw numpy data and GGML type name) as a GGUF file; ``arch=None`` writes no architecture."""
    writer = GGUFWriter(path=None, arch=arch or "pig")
    if arch is None:
        writer.kv_data[0].pop("general.architecture", None)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for key, value in (metadata or {}).items():
        if isinstance(value, str):
            writer.add_string(key, value)
        else:
            writer.add_uint32(key, int(value))
    for name, (raw, kind) in tensors.items():
        qtype = GGMLQuantizationType[kind]
        if kind in ("F32", "F16"):
            writer.add_tensor(name, raw)
        else:
            writer.add_tensor(name, raw, raw_dtype=qtype)
    writer.write_header_to_file(path=path)
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_random_dit(folder: Path, cfg, stem: str, formats: tuple[str, ...] = ("bf16", "Q4_K"), seed: int = 0):
    """A random DiT of ``cfg`` (bf16 values ~ N(0, 0.02^2)) written as ``<stem>_bf16.safetensors`` and/or a
    QuantStack-style ``<stem>-Q4_K.gguf`` (random blocks), for benchmarks; returns ``{format: path}``."""
    from safetensors.torch import save_file

    from hunyuan_core.checkpoints.meta import meta_shapes
    from hunyuan_core.dit import HunyuanImageDiT

    gen = torch.Generator().manual_seed(seed)
    shapes = meta_shapes(lambda: HunyuanImageDiT(cfg, dtype=torch.bfloat16))
    state = {k: (torch.randn(s, generator=gen) * 0.02).to(torch.bfloat16) for k, s in shapes.items()}
    files = {}
    if "bf16" in formats:
        files["bf16"] = folder / f"{stem}_bf16.safetensors"
        save_file(state, str(files["bf16"]))
    if "Q4_K" in formats:
        files["Q4_K"] = write_gguf(folder / f"{stem}-Q4_K.gguf", quantstack_tensors(state, "Q4_K", reference=False)[0])
    return files
