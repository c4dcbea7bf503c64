"""Hand the pack's models to ComfyUI's model management (ModelPatcher + load_models_gpu).

ComfyUI then moves them to the GPU right before use, loads them partially when VRAM is short, and evicts them
when other models need the room; the pack itself never unloads anything by force.
"""

from __future__ import annotations

import os

import comfy.model_management as mm
import comfy.model_patcher
import folder_paths
import torch

HOST_TOKENIZERS = os.path.join(os.path.dirname(os.path.realpath(comfy.model_patcher.__file__)), "text_encoders")


def host_tokenizer_dir(name: str) -> str:
    """A tokenizer folder that ComfyUI itself ships (``qwen25_tokenizer``, ``byt5_tokenizer``)."""
    return os.path.join(HOST_TOKENIZERS, name)


def patch(model: torch.nn.Module, role: str) -> comfy.model_patcher.ModelPatcher:
    """Wrap a core module; ``role`` picks ComfyUI's devices for it (diffusion, text, vae)."""
    devices = {
        "diffusion": (mm.get_torch_device, mm.unet_offload_device),
        "text": (mm.text_encoder_device, mm.text_encoder_offload_device),
        "vae": (mm.vae_device, mm.vae_offload_device),
    }
    load_device, offload_device = (f() for f in devices[role])
    return comfy.model_patcher.ModelPatcher(model, load_device=load_device, offload_device=offload_device)


def load(*patchers: comfy.model_patcher.ModelPatcher) -> None:
    mm.load_models_gpu([p for p in patchers if p is not None])


def resolve(folder: str, name: str) -> str:
    """A file (or, for text encoders, a model folder) chosen from a models folder, with ComfyUI's clear error."""
    if folder == "text_encoders" and name.endswith("/"):
        for base in folder_paths.get_folder_paths(folder):
            candidate = os.path.join(base, name.rstrip("/"))
            if os.path.isdir(candidate):
                return candidate
        raise FileNotFoundError(f"model folder {name!r} not found in models/{folder}")
    return folder_paths.get_full_path_or_raise(folder, name)


def model_folders(folder: str) -> list[str]:
    """Hugging Face model folders (with a config.json) inside a models folder, listed as ``name/``."""
    found = []
    for base in folder_paths.get_folder_paths(folder):
        if os.path.isdir(base):
            found += [f"{d}/" for d in sorted(os.listdir(base)) if os.path.isfile(os.path.join(base, d, "config.json"))]
    return found


def choice_problem(folder: str, name: str | None, extra: tuple[str, ...] = ()) -> str | None:
    """Why ``name`` cannot be loaded from ``models/<folder>`` (None when it can), for a loader's validate_inputs.

    ComfyUI 0.3.75 does not check V3 combo values against their options, so the loaders do it themselves.
    """
    if name is None or name in extra:
        return None
    available = folder_paths.get_filename_list(folder) + (model_folders(folder) if folder == "text_encoders" else [])
    if name in available:
        return None
    shown = ", ".join(available[:8]) + (" ..." if len(available) > 8 else "") or "nothing"
    return f"{name!r} is not in models/{folder} (found: {shown}); put the file there or pick one of those"
