"""HunyuanImage-2.1 MM-DiT: the base, distilled and refiner transformers."""

from .config import DiTConfig
from .model import HunyuanImageDiT

__all__ = ["DiTConfig", "HunyuanImageDiT"]
