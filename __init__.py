"""HunyuanImage-2.1 for ComfyUI.

ComfyUI imports this package from ``custom_nodes/`` and awaits ``comfy_entrypoint`` (V3 node schema). The
node modules are imported only then, so importing the package itself costs nothing and needs no ComfyUI;
heavy libraries (transformers, diffusers) are imported only when a node runs.
"""


async def comfy_entrypoint():
    from .nodes import HunyuanImage21Extension

    return HunyuanImage21Extension()


__all__ = ["comfy_entrypoint"]
