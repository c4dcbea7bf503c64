"""VAE decode and encode with HunyuanImage-2.1's 32x VAE, in ComfyUI's LATENT and IMAGE conventions.

Both nodes take the pack's VAE (the official arithmetic, fp16 decode on GPUs) or ComfyUI's own VAE loaded from a
HunyuanImage-2.1 file (its Load VAE node), so either loader serves every workflow. The pack's VAE stays its own type:
ComfyUI's VAE class has no public way to carry another implementation's model.
"""

from __future__ import annotations

import sys
from typing import Any

import comfy.model_management as mm
import torch
from comfy_api.latest import io

from ..hunyuan_core.memory import vae_decode_bytes
from ..hunyuan_core.vae import Tiling, decode_image, encode_image
from ..hunyuan_core.vae_common import PRECISIONS as VAE_PRECISIONS
from ..hunyuan_core.variants import STAGE1_LATENT, STAGE1_VAE_FILE
from . import host, management, widgets
from .finite_checks import check_image, check_latent
from .types import VAE

DECODE_NODE, ENCODE_NODE = "HunyuanImage 2.1 VAE Decode", "HunyuanImage 2.1 VAE Encode"

AUTO = "auto"
ENCODE_PRECISIONS = tuple(VAE_PRECISIONS)  # the working precisions both VAEs accept: the encode menu and its check
DECODE_PRECISIONS = (AUTO, *ENCODE_PRECISIONS)  # the decode menus (here and in the refiner) and their check


def vae_input() -> io.MultiType.Input:
    """The ``vae`` input: the pack's VAE or ComfyUI's own VAE of HunyuanImage-2.1."""
    return io.MultiType.Input(
        VAE.Input("vae", tooltip="From the HunyuanImage 2.1 VAE Loader, or ComfyUI's Load VAE with the same file."),
        types=[VAE, io.Vae],
    )


def native_vae(vae: Any) -> Any | None:
    """ComfyUI's own VAE (checked to be HunyuanImage-2.1's 64-channel, 32x one), or None for the pack's.

    ``comfy.sd`` is looked up, not imported: a VAE of ComfyUI's can only exist once it is loaded, and importing it
    here would pull ComfyUI's text-encoder stack (transformers) into the pack's import.
    """
    comfy_sd = sys.modules.get("comfy.sd")
    if comfy_sd is None or not isinstance(vae, comfy_sd.VAE):
        return None
    channels, factor = getattr(vae, "latent_channels", None), vae.spacial_compression_decode()
    if (channels, factor) != (STAGE1_LATENT.channels, STAGE1_LATENT.compression):
        raise ValueError(
            f"the connected VAE has {channels} latent channels and {factor}x compression, not HunyuanImage-2.1's "
            f"{STAGE1_LATENT.channels} and {STAGE1_LATENT.compression}x: load {STAGE1_VAE_FILE.name} with the "
            "HunyuanImage 2.1 VAE Loader (or ComfyUI's Load VAE)"
        )
    return vae


def native_decode(vae: Any, samples: torch.Tensor, tile_size: int) -> torch.Tensor:
    """Decode with ComfyUI's own VAE (its own precision choice); ``tile_size`` in latent cells as for the pack's."""
    if tile_size:
        return vae.decode_tiled(samples, tile_x=tile_size, tile_y=tile_size, overlap=tile_size // 4)
    return vae.decode(samples)


def device_precision(precision: str, vae) -> str:
    """``auto``: the official fp16 decode on a GPU, fp32 on the CPU (where fp16 convolutions are slow)."""
    if precision != AUTO:
        return precision
    return "fp32" if vae.load_device.type == "cpu" else "fp16"


def decode_fits(vae, samples: torch.Tensor, precision: str, batch_slice: int, tiled: bool) -> str | None:
    """Refuse a one-piece decode that no device memory holds (naming tile_size and batch_slice), and say what a
    large one costs; tiled decodes are bounded by their tile."""
    if tiled:
        return None
    height, width = (side * vae.model.config.spatial_compression for side in samples.shape[-2:])
    at_once = min(batch_slice or samples.shape[0], samples.shape[0])
    dtype_bytes = 4 if precision == "fp32" else 2
    need = at_once * vae_decode_bytes(vae.model.config.block_out_channels[0], width, height, dtype_bytes)
    subject = f"decoding {at_once} image(s) of {width}x{height} in {precision} at once"
    fix = "set batch_slice to 1, decode in fp16/bf16, or set tile_size (overlapped tiles, approximate)"
    return management.memory_note(need, vae.load_device, subject, fix)


class HunyuanImage21VAEDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return host.build(
            io.Schema,
            node_id="HunyuanImage21VAEDecode",
            display_name=DECODE_NODE,
            category="HunyuanImage/latent",
            description=(
                "Decodes a HunyuanImage-2.1 latent to an image in one piece, as the official pipeline does. For small "
                "GPUs, decode one image at a time, or enable tiling (approximate: it can leave faint seams)."
            ),
            inputs=[
                vae_input(),
                io.Latent.Input("latent", tooltip="A [B, 64, H/32, W/32] latent, e.g. from the sampler."),
                widgets.combo_input(
                    "precision", DECODE_PRECISIONS, default=AUTO, advanced=True,
                    tooltip="auto: fp16 on a GPU (as official), fp32 on the CPU. fp32 is exact but slower. "
                    "ComfyUI's own VAE uses its own precision.",
                ),
                host.build(
                    io.Int.Input, "batch_slice", default=0, min=0, max=64, advanced=True,
                    tooltip="Decode this many images at a time (0 = all at once). Same result, less memory.",
                ),
                host.build(
                    io.Int.Input, "tile_size", default=0, min=0, max=256, advanced=True,
                    tooltip="0 = no tiling (official). Else tile size in latent cells (32 px): less memory, inexact.",
                ),
            ],
            outputs=[io.Image.Output(tooltip="The decoded images, 0..1.")],
            search_aliases=host.aliases("vae decode", "decode latent", "tiled decode"),
            hidden=[io.Hidden.unique_id],  # to show a large decode's memory estimate on the node
        )  # fmt: skip

    @classmethod
    def validate_inputs(cls, precision: str | None = None) -> bool | str:
        """The one input only the pack checks before the run on ComfyUI 0.3.75 (it compares no V3 combo)."""
        return widgets.verdict(widgets.choice_problem("precision", precision, DECODE_PRECISIONS))

    @classmethod
    def execute(cls, vae, latent: dict, precision: str, batch_slice: int, tile_size: int) -> io.NodeOutput:
        if native_vae(vae) is not None:
            return io.NodeOutput(native_decode(vae, latent["samples"], tile_size))
        check_latent(latent["samples"], DECODE_NODE)
        management.load(vae)
        tiling = Tiling(tile=tile_size, overlap=tile_size // 4) if tile_size else None
        chosen = device_precision(precision, vae)
        note = decode_fits(vae, latent["samples"], chosen, batch_slice, tiled=tiling is not None)
        if note:
            host.show_text(cls.hidden.unique_id, note)
        images = decode_image(
            vae.model, latent["samples"], precision=chosen,
            batch_size=batch_slice or None, tiling=tiling, output_device=mm.intermediate_device(),
        )  # fmt: skip
        check_image(images, DECODE_NODE, chosen, auto=precision == AUTO)
        return io.NodeOutput(images)


class HunyuanImage21VAEEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return host.build(
            io.Schema,
            node_id="HunyuanImage21VAEEncode",
            display_name=ENCODE_NODE,
            category="HunyuanImage/latent",
            description="Encodes an image (sides multiples of 32) to a HunyuanImage-2.1 latent, e.g. for img2img.",
            inputs=[
                vae_input(),
                io.Image.Input("image", tooltip="The image to encode; width and height must be multiples of 32."),
                widgets.combo_input(
                    "precision", ENCODE_PRECISIONS, default="fp32", advanced=True,
                    tooltip="fp32 is exact; fp16/bf16 halve the memory.",
                ),
            ],
            outputs=[io.Latent.Output(tooltip="The posterior mean latent, [B, 64, H/32, W/32].")],
            search_aliases=host.aliases("vae encode", "encode image", "img2img"),
        )  # fmt: skip

    @classmethod
    def validate_inputs(cls, precision: str | None = None) -> bool | str:
        """The one input only the pack checks before the run on ComfyUI 0.3.75 (it compares no V3 combo)."""
        return widgets.verdict(widgets.choice_problem("precision", precision, ENCODE_PRECISIONS))

    @classmethod
    def execute(cls, vae, image, precision: str) -> io.NodeOutput:
        if native_vae(vae) is not None:
            return io.NodeOutput({"samples": vae.encode(image[..., :3])})
        management.load(vae)
        samples = encode_image(vae.model, image, precision=precision, output_device=mm.intermediate_device())
        check_image(samples, ENCODE_NODE, precision, made="encoding")
        return io.NodeOutput({"samples": samples})
