"""HunyuanImage 2.1 LoRA Loader: a LoRA on the pack's DiT that says what it found, and refuses what does not fit.

ComfyUI's own ``LoraLoaderModelOnly`` applies the same LoRAs to the pack's MODEL (``lora_keys`` teaches it the
names), but it reports a LoRA for another model only as one "lora key not loaded" line per tensor and applies the
rest. This node reads the file as data, logs one line per LoRA (naming, modules matched / total, rank, the first
unmatched names), checks every matched module's shape against the weight it patches, and fails with a message
naming the LoRA's family when nothing fits. The patches themselves are ComfyUI's (``comfy.lora.load_lora`` and
``ModelPatcher.add_patches``), so strength, stacking, unpatching and caching behave exactly as with ComfyUI's node.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import comfy.lora
import folder_paths
from comfy_api.latest import io

from ..hunyuan_core.checkpoints.errors import CheckpointError
from ..hunyuan_core.checkpoints.files import TensorFile
from ..hunyuan_core.lora import LoraMatch, dit_lora_targets, foreign_family, match_lora, shape_problems
from . import host, management, widgets
from .lora_keys import pack_key_map
from .model import require_pack_dit

log = logging.getLogger(__name__)

NODE = "HunyuanImage 2.1 LoRA Loader"


def read_lora(path: str) -> TensorFile:
    """The LoRA file's tensors as data (safetensors, or a pickle read with ``weights_only``), or a clear refusal."""
    try:
        return TensorFile(path)
    except CheckpointError as exc:
        raise ValueError(f"{exc} (LoRA file {Path(path).name} in models/loras)") from None


def refusal(name: str, match: LoraMatch, keys: list[str]) -> str:
    """Why a LoRA with no module that fits the DiT is refused, naming its family when its keys tell."""
    family = foreign_family(match, keys)
    if family is not None:
        return f"{name} is a LoRA for {family}, not HunyuanImage-2.1: none of its modules fits this DiT"
    shown = ", ".join((match.unmatched or list(match.misfit))[:3]) or "no LoRA tensors at all"
    return (
        f"{name}: none of its modules fits HunyuanImage-2.1's DiT (its modules are named like {shown}); "
        "use a LoRA trained for HunyuanImage-2.1"
    )


def lora_patches(model: Any, path: str, name: str) -> tuple[dict, LoraMatch]:
    """ComfyUI weight patches for the pack's DiT from one LoRA file, with how its modules matched."""
    dit = require_pack_dit(model, NODE)
    lora = read_lora(path)
    keys = lora.keys()
    match = match_lora(keys, lora.shape, dit_lora_targets(dit.config))
    if not match.matched:
        raise ValueError(refusal(name, match, keys))
    if match.misfit:  # some modules fit, these name a layer of another width: a mixed-up or damaged file
        listed = ", ".join(
            f"{module} ({got} wide, the layer takes {want})" for module, (got, want) in match.misfit.items()
        )
        raise ValueError(
            f"{name}: {len(match.misfit)} of its modules do not fit the layers they name: {listed}; the file is "
            "damaged or mixes LoRAs of different models"
        )
    problems = shape_problems(match, lora.shape)
    if problems:
        listed = "; ".join(list(problems.values())[:3]) + (" ..." if len(problems) > 3 else "")
        raise ValueError(f"{name}: {len(problems)} module(s) do not fit the weights they patch ({listed})")
    key_map = pack_key_map(dit.config)
    wanted = {module: key_map[module] for module in match.matched}
    tensors = {key: lora.get(key) for module in wanted for key in match.tensors[module]}
    return comfy.lora.load_lora(tensors, wanted, log_missing=False), match


class HunyuanImage21LoraLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return host.build(
            io.Schema,
            node_id="HunyuanImage21LoraLoader",
            display_name=NODE,
            category="HunyuanImage/loaders",
            description=(
                "Applies a HunyuanImage-2.1 LoRA from models/loras to the DiT, whichever trainer wrote it: "
                "sd-scripts (kohya, also split q/k/v), diffusion-pipe and other PEFT trainers, diffusers, ComfyUI's "
                "own saves, LyCORIS LoHa / LoKr. fp8 and GGUF DiTs stay quantized: the LoRA applies where their "
                "weights are expanded. The log says what matched; a LoRA for another model is refused by name. "
                "Chain several loaders to stack LoRAs."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The MODEL from the HunyuanImage 2.1 DiT Loader (or an earlier LoRA)."),
                io.Combo.Input(
                    "lora_name",
                    options=folder_paths.get_filename_list("loras"),
                    tooltip="The LoRA file in models/loras (.safetensors; .pt/.ckpt files are read as data only).",
                ),
                io.Float.Input(
                    "strength_model",
                    default=1.0,
                    min=-100.0,
                    max=100.0,
                    step=0.01,
                    tooltip="How strongly the LoRA changes the model: 1 as trained, 0 leaves the model as it is, "
                    "negative values push the other way.",
                ),
            ],
            outputs=[io.Model.Output(display_name="model", tooltip="The MODEL with the LoRA's weight patches.")],
            search_aliases=host.aliases("lora", "load lora", "lora loader model only"),
        )

    @classmethod
    def validate_inputs(cls, lora_name: str | None = None) -> bool | str:
        return widgets.verdict(management.file_problem("lora_name", "loras", lora_name))

    @classmethod
    def execute(cls, model: Any, lora_name: str, strength_model: float) -> io.NodeOutput:
        require_pack_dit(model, NODE)
        if strength_model == 0:  # as ComfyUI's loader: the model as it is, no file read
            return io.NodeOutput(model)
        path = management.resolve("loras", lora_name)
        patches, match = lora_patches(model, path, lora_name)
        patched = model.clone()
        applied = set(patched.add_patches(patches, strength_model))
        log.info("HunyuanImage-2.1 LoRA %s, strength %g", match.summary(lora_name), strength_model)
        missed = [str(key) for key in patches if key not in applied]
        if missed:
            raise ValueError(f"{lora_name}: {len(missed)} patches found no weight in the model (e.g. {missed[0]})")
        return io.NodeOutput(patched)
