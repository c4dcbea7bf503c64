"""ComfyUI glue for HunyuanImage-2.1: thin V3 nodes over ``hunyuan_core``."""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from .custom_sampling import HunyuanImage21Guider, HunyuanImage21Scheduler
from .enhancer import HunyuanImage21PromptEnhancer, HunyuanImage21PromptEnhancerLoader
from .interrupt import check_loads
from .latent import HunyuanImage21EmptyLatent
from .loaders import (
    HunyuanImage21DiTLoader,
    HunyuanImage21RefinerVAELoader,
    HunyuanImage21TextEncoderLoader,
    HunyuanImage21VAELoader,
)
from .lora_keys import extend_host_key_map
from .lora_loader import HunyuanImage21LoraLoader
from .refiner import HunyuanImage21Refiner
from .sampler import HunyuanImage21Sampler
from .step_cache import HunyuanImage21StepCache
from .text import HunyuanImage21TextEncode
from .vae import HunyuanImage21VAEDecode, HunyuanImage21VAEEncode

NODE_CLASSES: list[type[io.ComfyNode]] = [
    HunyuanImage21DiTLoader,
    HunyuanImage21LoraLoader,
    HunyuanImage21StepCache,
    HunyuanImage21TextEncoderLoader,
    HunyuanImage21VAELoader,
    HunyuanImage21PromptEnhancerLoader,
    HunyuanImage21PromptEnhancer,
    HunyuanImage21TextEncode,
    HunyuanImage21EmptyLatent,
    HunyuanImage21Sampler,
    HunyuanImage21Guider,
    HunyuanImage21Scheduler,
    HunyuanImage21VAEDecode,
    HunyuanImage21VAEEncode,
    HunyuanImage21RefinerVAELoader,
    HunyuanImage21Refiner,
]


class HunyuanImage21Extension(ComfyExtension):
    """The pack's single registration point with ComfyUI."""

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        # Called by every ComfyUI release with V3 nodes (``on_load`` is not, in 0.3.75): ComfyUI's own LoRA loaders
        # learn the pack DiT's LoRA names here.
        extend_host_key_map()
        check_loads()  # Cancel stops a model load between two modules
        return list(NODE_CLASSES)
