"""Model core of HunyuanImage-2.1: pure PyTorch, never imports ComfyUI.

Modules here take ``dtype``, ``device`` and an ``operations`` namespace where they build layers, so the
ComfyUI glue in ``nodes/`` can pass ``comfy.ops`` classes in without this package knowing about ComfyUI.
"""
