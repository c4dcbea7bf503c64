"""Tiny Qwen2.5-VL language models written as llama.cpp GGUFs, the way its tools write Qwen2.5-VL-7B-Instruct.

llama.cpp's ``convert_hf_to_gguf.py`` converts ``Qwen2_5_VLForConditionalGeneration`` with its ``Qwen2VLModel``:
architecture ``qwen2vl``, the vision tower dropped (it goes to a separate mmproj file), every other tensor renamed by
gguf-py's ``TensorNameMap`` and otherwise left as it is (q/k are not permuted, unlike Llama's), 1-D tensors (norms,
q/k/v biases) in F32. ``TextModel.set_gguf_parameters`` writes the sizes, ``rope.freq_base``,
``attention.layer_norm_rms_epsilon`` and the M-RoPE ``rope.dimension_sections``; llama-quantize then gives the
2-D weights their types (a Q4_K_M file mixes Q4_K and Q6_K).

The names here come from the installed gguf package's own map, not from the loader's table, so the two are checked
against each other. Quantized weights are random valid blocks (``gguf_files.random_blocks``); each tensor's expected
value is the gguf package's reference reading of its bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import gguf
import numpy as np
import torch
from gguf import GGMLQuantizationType, GGUFWriter
from gguf_files import dequantized, random_blocks

from hunyuan_core.checkpoints import gguf_quants as gq

# The type of each kind of 2-D weight (by its llama.cpp name) in a test file. The mixed file's LM head is in a type
# the pack cannot dequantize: the encoder never reads it, so it must not matter.
MIXED_TYPES = {
    "attn_q": "Q8_0", "attn_k": "Q4_K", "attn_v": "Q6_K", "attn_output": "Q5_K",
    "ffn_gate": "Q4_K", "ffn_up": "Q4_0", "ffn_down": "Q6_K", "token_embd": "Q8_0", "output": "IQ4_NL",
}  # fmt: skip
F16_TYPES = dict.fromkeys(MIXED_TYPES, "F16")
Tensors = dict[str, tuple[np.ndarray, str]]


def language_model_state(model) -> dict[str, torch.Tensor]:
    """A ``Qwen2_5_VLForConditionalGeneration``'s language model and LM head under the Hugging Face names llama.cpp's
    converter reads (``model.layers.N...``, ``model.embed_tokens``, ``model.norm``, ``lm_head``), float32."""
    state = {}
    for key, tensor in model.state_dict().items():
        if key.startswith(("model.visual.", "visual.")):
            continue  # llama.cpp writes the vision tower to the separate mmproj file
        state[key.replace("model.language_model.", "model.")] = tensor.float().contiguous()
    return state


def llama_cpp_name(name: str, layers: int, arch: gguf.MODEL_ARCH = gguf.MODEL_ARCH.QWEN2VL) -> str:
    """llama.cpp's name of a Hugging Face tensor name, from gguf-py's ``TensorNameMap``."""
    mapped = gguf.get_tensor_name_map(arch, layers).get_name(name, try_suffixes=(".weight", ".bias"))
    if mapped is None:
        raise KeyError(f"gguf's name map has no {name}")
    return mapped


def stored_type(gguf_name: str, shape: tuple[int, ...], types: Mapping[str, str]) -> str:
    """The type llama.cpp gives a tensor: F32 for 1-D ones, else the file's type for its kind (``types`` by the
    name's kind, e.g. ``attn_q``)."""
    if len(shape) == 1:
        return "F32"
    stem = gguf_name.rpartition(".")[0]  # without .weight
    return types[stem.rpartition(".")[2]]  # "blk.0.attn_q" -> "attn_q", "token_embd" -> "token_embd"


def encode_tensor(value: torch.Tensor, kind: str, rng: np.random.Generator) -> np.ndarray:
    """``value`` stored as ``kind``: float types hold its values, quantized ones random valid blocks of its shape."""
    if kind in ("F32", "F16"):
        return value.numpy().astype(np.float32 if kind == "F32" else np.float16)
    if kind in gq.SUPPORTED_TYPES:
        return random_blocks(kind, tuple(value.shape), rng)
    block, type_size = gguf.GGML_QUANT_SIZES[GGMLQuantizationType[kind]]  # a type the pack cannot read: any bytes
    return rng.integers(0, 256, (*value.shape[:-1], value.shape[-1] // block * type_size), dtype=np.uint8)


def llama_cpp_tensors(
    state: Mapping[str, torch.Tensor], layers: int, types: Mapping[str, str], seed: int = 0
) -> tuple[Tensors, dict[str, torch.Tensor]]:
    """A language-model state as a llama.cpp GGUF's tensors (name -> raw data, type), and the float32 weights the
    file holds under the Hugging Face names (what a safetensors twin of the file must hold)."""
    rng = np.random.default_rng(seed)
    tensors, expected = {}, {}
    for name, value in state.items():
        target = llama_cpp_name(name, layers)
        kind = stored_type(target, tuple(value.shape), types)
        raw = encode_tensor(value, kind, rng)
        tensors[target] = (raw, kind)
        if kind == "F32" or kind == "F16" or kind in gq.SUPPORTED_TYPES:
            expected[name] = dequantized(raw, kind, tuple(value.shape))
    return tensors, expected


def llama_cpp_metadata(config, arch: str = "qwen2vl") -> dict[str, object]:
    """The model metadata llama.cpp's converter writes for a Qwen2.5-VL text config (``general.*``, sizes, rope,
    norm epsilon; M-RoPE sections for ``qwen2vl``), plus the tokenizer keys that show the file carries its own."""
    meta: dict[str, object] = {
        "general.type": "model",
        "general.name": "Qwen2.5 VL 7B Instruct",
        "general.basename": "Qwen2.5-VL",
        "general.size_label": "7B",
        "general.finetune": "Instruct",
        f"{arch}.block_count": config.num_hidden_layers,
        f"{arch}.context_length": config.max_position_embeddings,
        f"{arch}.embedding_length": config.hidden_size,
        f"{arch}.feed_forward_length": config.intermediate_size,
        f"{arch}.attention.head_count": config.num_attention_heads,
        f"{arch}.attention.head_count_kv": config.num_key_value_heads,
        f"{arch}.rope.freq_base": float(config.rope_theta),
        f"{arch}.attention.layer_norm_rms_epsilon": float(config.rms_norm_eps),
        "general.file_type": 15,  # LlamaFileType.MOSTLY_Q4_K_M
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "qwen2",
    }
    if arch == "qwen2vl":
        sections = list(config.rope_scaling["mrope_section"])
        meta[f"{arch}.rope.dimension_sections"] = sections + [0] * (4 - len(sections))
    return meta


def write_llama_cpp_gguf(
    path: Path, tensors: Mapping[str, tuple[np.ndarray, str]], arch: str, metadata: Mapping[str, object]
) -> Path:
    """Write a GGUF with gguf-py's writer and llama.cpp's value types (uint32 sizes, float32 constants, int32
    arrays); a metadata value of None leaves that key out."""
    writer = GGUFWriter(path=None, arch=arch)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for key, value in metadata.items():
        if value is None:
            continue
        if isinstance(value, str):
            writer.add_string(key, value)
        elif isinstance(value, float):
            writer.add_float32(key, value)
        elif isinstance(value, list):
            writer.add_array(key, value)
        else:
            writer.add_uint32(key, int(value))
    for name, (raw, kind) in tensors.items():
        if kind in ("F32", "F16"):
            writer.add_tensor(name, raw)
        else:
            writer.add_tensor(name, raw, raw_dtype=GGMLQuantizationType[kind])
    writer.write_header_to_file(path=path)
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
