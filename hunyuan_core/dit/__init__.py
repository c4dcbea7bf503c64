"""HunyuanImage-2.1 MM-DiT: the base, distilled and refiner transformers."""

from .config import BASE, DISTILLED, REFINER, DiTConfig
from .model import HunyuanImageDiT

__all__ = ["BASE", "DISTILLED", "REFINER", "DiTConfig", "HunyuanImageDiT"]
