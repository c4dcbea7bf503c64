"""HunyuanImage-2.1 for ComfyUI.

ComfyUI imports this package from ``custom_nodes/`` and calls ``comfy_entrypoint`` (V3 node schema). Importing
it stays cheap: the heavy libraries (transformers, diffusers) are only imported when a node runs.
"""

from .nodes import comfy_entrypoint

__all__ = ["comfy_entrypoint"]
