"""A headless ComfyUI host for this pack: start it, post API-format prompts, read results.

Used by the integration tests and by the demo; nothing here is shipped to ComfyUI users.
"""

from .client import ComfyClient, PromptRejectedError, PromptResult
from .host import IMPORT_PACK, ComfyHost, comfyui_version, find_comfyui, repo_root, run_in_comfyui

__all__ = [
    "IMPORT_PACK",
    "ComfyClient",
    "ComfyHost",
    "PromptRejectedError",
    "PromptResult",
    "comfyui_version",
    "find_comfyui",
    "repo_root",
    "run_in_comfyui",
]
