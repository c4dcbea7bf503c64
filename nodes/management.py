"""Hand the pack's models to ComfyUI's model management: the one place that decides how (layers, patcher, loading).

ComfyUI then moves them to the GPU right before use, loads them partially when VRAM is short, and evicts them
when other models need the room; the pack itself never unloads anything by force. What differs between ComfyUI
releases (the patcher class, dtype archiving) is found from the host's own modules, never from its version.
"""

from __future__ import annotations

import os

import comfy.model_management as mm
import comfy.model_patcher
import folder_paths
import torch

from ..hunyuan_core.memory import GIB
from .interrupt import make_interruptible
from .quantized_patching import with_quantized_patching

HOST_TOKENIZERS = os.path.join(os.path.dirname(os.path.realpath(comfy.model_patcher.__file__)), "text_encoders")


def host_tokenizer_dir(name: str) -> str:
    """A tokenizer folder that ComfyUI itself ships (``qwen25_tokenizer``, ``byt5_tokenizer``)."""
    return os.path.join(HOST_TOKENIZERS, name)


def operations() -> type:
    """The ``comfy.ops`` namespace every loader builds its layers with.

    ``manual_cast`` casts each weight to the compute dtype as the layer runs, which is what lets ComfyUI keep part
    of a model off the GPU; the pack adds ``QuantizedLinear`` (fp8 and GGUF weights, streamed the same way). One
    home, so a host with other layer classes is followed here and nowhere else.
    """
    from .streaming_ops import pack_operations

    return pack_operations()


def patcher_class() -> type[comfy.model_patcher.ModelPatcher]:
    """The patcher ComfyUI's own loaders use: ``CoreModelPatcher`` where the host has it (current releases rebind
    it at start-up, e.g. to their dynamic-VRAM patcher), else the plain ``ModelPatcher`` (0.3.75).

    Looked up at call time, since the host may rebind it after the pack is imported.
    """
    return getattr(comfy.model_patcher, "CoreModelPatcher", comfy.model_patcher.ModelPatcher)


def patch(model: torch.nn.Module, role: str) -> comfy.model_patcher.ModelPatcher:
    """Wrap a core module as ComfyUI wraps its own; ``role`` picks ComfyUI's devices for it (diffusion, text, vae).

    The patcher is the host's class with ``QuantizedPatching`` mixed in, so weight patches (LoRA) on fp8 and GGUF
    layers apply where those weights are expanded. Where the host has ``archive_model_dtypes`` it records each
    weight's stored dtype on the module first, as ComfyUI's own loaders do before wrapping, so its patcher can
    restore and cast weights correctly.
    """
    devices = {
        "diffusion": (mm.get_torch_device, mm.unet_offload_device),
        "text": (mm.text_encoder_device, mm.text_encoder_offload_device),
        "vae": (mm.vae_device, mm.vae_offload_device),
    }
    load_device, offload_device = (f() for f in devices[role])
    if role in ("text", "vae"):  # Cancel within a layer of text encoding or a block of decoding, not at the end
        make_interruptible(model)
    archive = getattr(mm, "archive_model_dtypes", None)
    if archive is not None:
        archive(model)
    return with_quantized_patching(patcher_class())(model, load_device=load_device, offload_device=offload_device)


def no_bf16_dtype() -> torch.dtype | None:
    """fp16 where the diffusion device is a CUDA GPU without native bf16 (Turing, Pascal and older: bf16 there is
    emulated and slow, or missing), for the DiT loader's ``auto``; None elsewhere (the file's own precision)."""
    device = mm.get_torch_device()
    if device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        return torch.float16
    return None


LARGE_WORK = 2 * GIB  # above this a node shows its memory estimate on itself


def memory_note(need: int, device: torch.device, subject: str, fix: str) -> str | None:
    """Refuse work of ``need`` bytes that no memory of ``device`` holds (ComfyUI can stream weights, not a step's
    own tensors), saying ``fix``; for large work that fits, the estimate to show on the node; else None."""
    total = mm.get_total_memory(device)
    amount = f"about {need / GIB:.1f} GiB"
    if need > total:
        raise ValueError(f"{subject} needs {amount}, more than this device's {total / GIB:.1f} GiB: {fix}")
    return f"{subject}: {amount} (device: {total / GIB:.1f} GiB)" if need > LARGE_WORK else None


def load(*patchers: comfy.model_patcher.ModelPatcher | None) -> None:
    """Have ComfyUI bring these models to their device right before use (partially, evicting others, as needed)."""
    mm.load_models_gpu([p for p in patchers if p is not None])


def gguf_files(folder: str) -> list[str]:
    """The ``.gguf`` files under a models folder (every path ComfyUI has for it), relative, sorted.

    ComfyUI's own lists leave ``.gguf`` out; the pack lists them for its loaders only, so ComfyUI's loaders never
    offer a file they cannot read.
    """
    found = set()
    for base in folder_paths.get_folder_paths(folder):
        for root, _, names in os.walk(base, followlinks=True):
            for name in names:
                if name.lower().endswith(".gguf"):
                    found.add(os.path.relpath(os.path.join(root, name), base).replace(os.sep, "/"))
    return sorted(found)


def model_files(folder: str) -> list[str]:
    """What a pack loader offers from a models folder: ComfyUI's list plus the ``.gguf`` files (once: a folder
    registered without extensions lists them already)."""
    return list(dict.fromkeys(folder_paths.get_filename_list(folder) + gguf_files(folder)))


def resolve(folder: str, name: str) -> str:
    """A file, or a model folder (listed by ``model_folders`` as ``name/``), chosen from a models folder, with
    ComfyUI's clear error. ComfyUI's lookup takes any extension (``.gguf`` too) and keeps the name inside the folder."""
    if name.endswith("/"):
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


def file_problem(name: str, folder: str, value: str | None, extra: tuple[str, ...] = ()) -> str | None:
    """Why the file (or model folder) chosen in input ``name`` cannot be loaded from ``models/<folder>`` (None when
    it can, or when the input is linked), for a loader's ``validate_inputs``.

    ComfyUI 0.3.75 does not check V3 combo values against their options, so the loaders do it themselves; the
    list is read now, so a file added since the menu was built is accepted. Values in ``extra`` (e.g. "none")
    are accepted as they are.
    """
    if value is None or value in extra:
        return None
    available = model_files(folder) + (model_folders(folder) if folder == "text_encoders" else [])
    if value in available:
        return None
    shown = ", ".join(available[:8]) + (" ..." if len(available) > 8 else "") or "nothing"
    return f"{name}: {value!r} is not in models/{folder} (found: {shown}); put the file there or pick one of those"
