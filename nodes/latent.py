"""Empty stage-1 latent for HunyuanImage-2.1, with the official 2K sizes as presets."""

from __future__ import annotations

import logging

import comfy.model_management
import torch
from comfy_api.latest import io

from ..hunyuan_core import resolution
from . import host, widgets

log = logging.getLogger(__name__)

SIZE_CHOICES = (*(p.label for p in resolution.OFFICIAL_SIZES), resolution.CUSTOM_SIZE)  # the size menu and check
MAX_BATCH = 4096


def resolve_size(size: str, width: int, height: int) -> tuple[int, int]:
    """The pixel size a node call means: the preset's, or the custom width and height."""
    if size == resolution.CUSTOM_SIZE:
        return width, height
    preset = resolution.preset_by_label(size)
    return preset.width, preset.height


def side_input(name: str) -> io.Int.Input:
    """The custom width or height widget: pixels in steps of the VAE's compression."""
    step = resolution.SPATIAL_COMPRESSION
    return io.Int.Input(
        name,
        default=2048,
        min=step,
        max=resolution.MAX_SIDE,
        step=step,
        tooltip=(
            f"Custom {name} in pixels, a multiple of {step}; used only when size is 'custom'. Images smaller than the "
            "2K presets lose quality."
        ),
    )


class HunyuanImage21EmptyLatent(io.ComfyNode):
    """Zero latent ``[B, 64, H/32, W/32]`` in ComfyUI's HunyuanImage convention (native nodes accept it)."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return host.build(
            io.Schema,
            node_id="HunyuanImage21EmptyLatent",
            display_name="HunyuanImage 2.1 Empty Latent",
            category="HunyuanImage/latent",
            description=(
                "Starting latent for a HunyuanImage-2.1 text-to-image generation. Pick one of the official 2K "
                "sizes the model was trained on, or 'custom' for any width and height in steps of 32. Sizes "
                "below the 2K range still run but lose quality (artifacts, broken faces)."
            ),
            inputs=[
                widgets.combo_input(
                    "size",
                    SIZE_CHOICES,
                    default=SIZE_CHOICES[0],
                    tooltip=(
                        "Image size in pixels. The five presets are the official 2K sizes; choose 'custom' to "
                        "use the width and height below instead."
                    ),
                ),
                side_input("width"),
                side_input("height"),
                io.Int.Input(
                    "batch_size",
                    default=1,
                    min=1,
                    max=MAX_BATCH,
                    tooltip="How many images to generate at once; each one costs the full memory and time again.",
                ),
            ],
            outputs=[io.Latent.Output(tooltip="Zero latent with 64 channels at 1/32 of the image size.")],
            search_aliases=host.aliases("empty latent image", "resolution", "image size", "2k"),
            hidden=[io.Hidden.unique_id],  # to show the below-2K note on the node
        )

    @classmethod
    def validate_inputs(cls, size: str | None = None) -> bool | str:
        """The size preset before the run (ComfyUI checks width, height and batch_size's ranges itself)."""
        return widgets.verdict(widgets.choice_problem("size", size, SIZE_CHOICES))

    @classmethod
    def execute(cls, size: str, width: int, height: int, batch_size: int) -> io.NodeOutput:
        widgets.require(widgets.choice_problem("size", size, SIZE_CHOICES))
        width, height = resolve_size(size, width, height)
        widgets.require(resolution.size_problem(width, height))
        shape = resolution.latent_shape(width, height, batch_size)
        if resolution.below_trained_range(width, height):
            note = (
                f"{width}x{height} is below the model's trained 2K range (smallest official size 2560x1536): expect "
                "lower quality. Use a 2K preset for the official results."
            )
            log.warning("HunyuanImage-2.1: %s", note)
            host.show_text(cls.hidden.unique_id, note)  # on the node itself, not only in the server log
        latent = torch.zeros(shape, device=comfy.model_management.intermediate_device())
        return io.NodeOutput({"samples": latent})
