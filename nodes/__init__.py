"""ComfyUI glue for HunyuanImage-2.1: thin V3 nodes over ``hunyuan_core``."""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from .latent import HunyuanImage21EmptyLatent

NODE_CLASSES: list[type[io.ComfyNode]] = [
    HunyuanImage21EmptyLatent,
]


class HunyuanImage21Extension(ComfyExtension):
    """The pack's single registration point with ComfyUI."""

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODE_CLASSES)
