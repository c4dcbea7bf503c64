"""Shape of HunyuanImage-2.1's stage-1 VAE (32x in space, 64 latent channels); the full preset and tiny test configs."""

from __future__ import annotations

from dataclasses import dataclass

from ..vae_common import VAEShape
from ..variants import STAGE1_LATENT

NORM_GROUPS = 32  # every GroupNorm in the VAE has 32 groups (eps 1e-6), so every width must divide by 32


@dataclass(frozen=True, kw_only=True)
class VAEConfig(VAEShape):
    """Everything that decides the VAE's tensors. Detected from a checkpoint's shapes, except the latent scale.

    ``scaling_factor`` is carried for the DiT side (which multiplies raw latents by it on the way in and divides on
    the way out); the VAE itself never applies it, and there is no shift factor.
    """

    latent_channels: int = STAGE1_LATENT.channels
    spatial_compression: int = STAGE1_LATENT.compression
    scaling_factor: float = STAGE1_LATENT.scale
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512, 1024, 1024)
    shift_factor: float | None = None

    NAME = "VAE"

    def widths_problem(self) -> str | None:
        if any(c % NORM_GROUPS for c in self.block_out_channels):
            return f"every block width must divide by {NORM_GROUPS} (GroupNorm), got {self.block_out_channels}"
        return None

    def resample_problem(self) -> str | None:
        for c_in, c_out in self.downsample_pairs:
            if c_out % 4 or (4 * c_in) % c_out:
                return f"downsampling {c_in} -> {c_out} channels cannot average channels for its shortcut"
        for c_in, c_out in self.upsample_pairs:
            if (4 * c_out) % c_in:
                return f"upsampling {c_in} -> {c_out} channels cannot repeat channels for its shortcut"
        return None


STAGE1_VAE = VAEConfig()
