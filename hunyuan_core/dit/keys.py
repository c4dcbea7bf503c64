"""Key layouts of HunyuanImage-2.1 DiT checkpoints, all mapped onto this package's module names.

This package's names are the official released bf16 layout (fused ``*_attn_qkv`` and ``linear1``, ``linear2``).
For every parameter of the model, ``source_of(name, layout)`` says which tensors of a file in another layout
make it and how (a plain copy, a concatenation of split projections, or the final layer's swapped halves), so
the loader can build each parameter straight from the file without a second copy of the state dict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

OFFICIAL = "official"
OFFICIAL_SPLIT = "official-split"
COMFY = "comfyui"
DIFFUSERS = "diffusers"
LAYOUTS = (OFFICIAL, OFFICIAL_SPLIT, COMFY, DIFFUSERS)

# Prefixes that wrappers put in front of the DiT's own keys (ComfyUI checkpoints, training wrappers).
PREFIXES = ("model.diffusion_model.", "diffusion_model.", "model.model.", "module.", "model.")


@dataclass(frozen=True)
class Source:
    """How one parameter is made from a file: ``keys`` concatenated on dim 0, optionally halves swapped."""

    keys: tuple[str, ...]
    swap_halves: bool = False


def _split(name: str, parts: tuple[str, ...], template: str) -> Source:
    return Source(tuple(template.format(p) for p in parts))


def _official_split(name: str) -> Source:
    if m := re.fullmatch(r"(double_blocks\.\d+\.(?:img|txt)_attn)_qkv\.(weight|bias)", name):
        return _split(name, ("q", "k", "v"), f"{m[1]}_{{}}.{m[2]}")
    if m := re.fullmatch(r"(single_blocks\.\d+)\.linear1\.(weight|bias)", name):
        return _split(name, ("q", "k", "v", "mlp"), f"{m[1]}.linear1_{{}}.{m[2]}")
    if m := re.fullmatch(r"(single_blocks\.\d+)\.linear2\.(weight|bias)", name):
        return Source((f"{m[1]}.linear2.fc.{m[2]}",))
    return Source((name,))


# ComfyUI's internal names (what it saves with the ``model.diffusion_model.`` prefix), from the official ones.
_COMFY_RENAMES = (
    ("txt_in.c_embedder.linear_1.", "txt_in.c_embedder.in_layer."),
    ("txt_in.c_embedder.linear_2.", "txt_in.c_embedder.out_layer."),
    ("_mod.linear.", "_mod.lin."),
    ("_attn_qkv.", "_attn.qkv."),
    ("mlp.fc1.", "mlp.0."),
    ("mlp.fc2.", "mlp.2."),
    ("_attn_q_norm.weight", "_attn.norm.query_norm.scale"),
    ("_attn_k_norm.weight", "_attn.norm.key_norm.scale"),
    (".q_norm.weight", ".norm.query_norm.scale"),
    (".k_norm.weight", ".norm.key_norm.scale"),
    ("_attn_proj.", "_attn.proj."),
    (".modulation.linear.", ".modulation.lin."),
    ("_embedder.mlp.0.", "_embedder.in_layer."),
    ("_embedder.mlp.2.", "_embedder.out_layer."),
    ("_in.mlp.0.", "_in.in_layer."),
    ("_in.mlp.2.", "_in.out_layer."),
)


def _comfy(name: str) -> Source:
    for old, new in _COMFY_RENAMES:
        name = name.replace(old, new)
    return Source((name,))


_DIFFUSERS_FIXED = {
    "img_in.proj": "x_embedder.proj",
    "txt_in.input_embedder": "context_embedder.proj_in",
    "txt_in.t_embedder.mlp.0": "context_embedder.time_text_embed.timestep_embedder.linear_1",
    "txt_in.t_embedder.mlp.2": "context_embedder.time_text_embed.timestep_embedder.linear_2",
    "txt_in.c_embedder.linear_1": "context_embedder.time_text_embed.text_embedder.linear_1",
    "txt_in.c_embedder.linear_2": "context_embedder.time_text_embed.text_embedder.linear_2",
    "time_in.mlp.0": "time_guidance_embed.timestep_embedder.linear_1",
    "time_in.mlp.2": "time_guidance_embed.timestep_embedder.linear_2",
    "time_r_in.mlp.0": "time_guidance_embed.timestep_embedder_r.linear_1",
    "time_r_in.mlp.2": "time_guidance_embed.timestep_embedder_r.linear_2",
    "guidance_in.mlp.0": "time_guidance_embed.guidance_embedder.linear_1",
    "guidance_in.mlp.2": "time_guidance_embed.guidance_embedder.linear_2",
    "byt5_in.layernorm": "context_embedder_2.norm",
    "byt5_in.fc1": "context_embedder_2.linear_1",
    "byt5_in.fc2": "context_embedder_2.linear_2",
    "byt5_in.fc3": "context_embedder_2.linear_3",
    "final_layer.linear": "proj_out",
}
_DIFFUSERS_REFINER = {
    "norm1": "norm1",
    "norm2": "norm2",
    "self_attn_proj": "attn.to_out.0",
    "mlp.fc1": "ff.net.0.proj",
    "mlp.fc2": "ff.net.2",
    "adaLN_modulation.1": "norm_out.linear",
}
_DIFFUSERS_DOUBLE = {
    "img_mod.linear": "norm1.linear",
    "txt_mod.linear": "norm1_context.linear",
    "img_attn_q_norm": "attn.norm_q",
    "img_attn_k_norm": "attn.norm_k",
    "txt_attn_q_norm": "attn.norm_added_q",
    "txt_attn_k_norm": "attn.norm_added_k",
    "img_attn_proj": "attn.to_out.0",
    "txt_attn_proj": "attn.to_add_out",
    "img_mlp.fc1": "ff.net.0.proj",
    "img_mlp.fc2": "ff.net.2",
    "txt_mlp.fc1": "ff_context.net.0.proj",
    "txt_mlp.fc2": "ff_context.net.2",
}
_DIFFUSERS_SINGLE = {
    "q_norm": "attn.norm_q",
    "k_norm": "attn.norm_k",
    "modulation.linear": "norm.linear",
    "linear2": "proj_out",
}


_QKV = ("attn.to_q", "attn.to_k", "attn.to_v")
# Per block family: the official module pattern (block index captured), diffusers' block name, the fused official
# modules with the diffusers modules concatenated into them, and the plainly renamed modules.
_DIFFUSERS_BLOCKS = (
    (
        r"txt_in\.individual_token_refiner\.blocks\.(\d+)",
        "context_embedder.token_refiner.refiner_blocks.{}",
        {"self_attn_qkv": _QKV},
        _DIFFUSERS_REFINER,
    ),
    (
        r"double_blocks\.(\d+)",
        "transformer_blocks.{}",
        {"img_attn_qkv": _QKV, "txt_attn_qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")},
        _DIFFUSERS_DOUBLE,
    ),
    (r"single_blocks\.(\d+)", "single_transformer_blocks.{}", {"linear1": (*_QKV, "proj_mlp")}, _DIFFUSERS_SINGLE),
)


def _diffusers(name: str) -> Source:
    module, _, leaf = name.rpartition(".")
    if module in _DIFFUSERS_FIXED:
        return Source((f"{_DIFFUSERS_FIXED[module]}.{leaf}",))
    if module == "final_layer.adaLN_modulation.1":
        return Source((f"norm_out.linear.{leaf}",), swap_halves=True)  # diffusers stores [scale, shift]
    for pattern, block, fused, renamed in _DIFFUSERS_BLOCKS:
        if m := re.fullmatch(rf"{pattern}\.(.+)", module):
            parts = fused.get(m[2]) or (renamed[m[2]],)
            return Source(tuple(f"{block.format(m[1])}.{part}.{leaf}" for part in parts))
    raise KeyError(f"no diffusers name known for {name}")


_SOURCES = {
    OFFICIAL: lambda name: Source((name,)),
    OFFICIAL_SPLIT: _official_split,
    COMFY: _comfy,
    DIFFUSERS: _diffusers,
}


def source_of(name: str, layout: str) -> Source:
    """Which file keys make parameter ``name`` (official fused naming) in a file of ``layout``."""
    return _SOURCES[layout](name)


def strip_prefix(keys: list[str]) -> str:
    """The wrapper prefix shared by the DiT keys (``''`` when there is none)."""
    for prefix in PREFIXES:
        if any(k.startswith(prefix + "double_blocks.") or k.startswith(prefix + "transformer_blocks.") for k in keys):
            return prefix
    return ""


def detect_layout(keys: set[str]) -> str | None:
    """Which layout a set of (prefix-free) keys uses, or None when it is no HunyuanImage DiT layout."""
    if any(k.startswith("transformer_blocks.") and ".attn.add_q_proj." in k for k in keys) or (
        "x_embedder.proj.weight" in keys and "context_embedder.proj_in.weight" in keys
    ):
        return DIFFUSERS
    if not any(k.startswith("double_blocks.") for k in keys):
        return None
    if any(".img_attn.qkv." in k or ".img_mod.lin." in k for k in keys):
        return COMFY
    if any(re.search(r"\.img_attn_q\.(weight|bias)$", k) or ".linear1_q." in k for k in keys):
        return OFFICIAL_SPLIT
    return OFFICIAL
