"""Architecture of the HunyuanImage-2.1 DiT: the shape-deciding fields; the official presets are in ``variants``."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class DiTConfig:
    """Everything that decides the DiT's shape; presets below, tiny configs in tests."""

    variant: str = "base"
    in_channels: int = 64
    out_channels: int = 64
    hidden_size: int = 3584
    num_heads: int = 28
    mlp_ratio: float = 4.0
    depth_double: int = 20
    depth_single: int = 40
    patch_dims: int = 2
    rope_axes: tuple[int, ...] = (64, 64)
    rope_theta: float = 256.0
    text_dim: int = 3584
    byt5_dim: int | None = 1472
    byt5_hidden: int = 2048
    guidance_embed: bool = False
    meanflow: bool = False
    refiner_depth: int = 2

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if sum(self.rope_axes) != self.head_dim:
            raise ValueError(f"rope axes {self.rope_axes} must add up to the head dim {self.head_dim}")
        if len(self.rope_axes) != self.patch_dims:
            raise ValueError(f"{self.patch_dims}-D patches need {self.patch_dims} rope axes, got {self.rope_axes}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def mlp_hidden(self) -> int:
        return int(self.hidden_size * self.mlp_ratio)

    @property
    def has_byt5(self) -> bool:
        return self.byt5_dim is not None

    def with_(self, **changes) -> DiTConfig:
        return replace(self, **changes)
