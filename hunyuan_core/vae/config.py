"""Shape of HunyuanImage-2.1's stage-1 32x VAE (model.md §2.1); the full preset and tiny test configs alike."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..resolution import LATENT_CHANNELS, SPATIAL_COMPRESSION

NORM_GROUPS = 32  # every GroupNorm in the VAE has 32 groups (eps 1e-6), so every width must divide by 32


@dataclass(frozen=True)
class VAEConfig:
    """Everything that decides the VAE's tensors. Detected from a checkpoint's shapes, except the latent scale.

    ``scaling_factor`` is carried for the DiT side (which multiplies raw latents by it on the way in and divides on
    the way out); the VAE itself never applies it, and there is no shift factor.
    """

    in_channels: int = 3
    out_channels: int = 3
    latent_channels: int = LATENT_CHANNELS
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512, 1024, 1024)
    layers_per_block: int = 2
    spatial_compression: int = SPATIAL_COMPRESSION
    scaling_factor: float = 0.75289
    shift_factor: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "block_out_channels", tuple(self.block_out_channels))
        problem = self._problem()
        if problem:
            raise ValueError(f"invalid VAE config: {problem}")

    def _problem(self) -> str | None:
        chans = self.block_out_channels
        n = self.spatial_compression
        if n < 1 or n & (n - 1):
            return f"spatial_compression {n} is not a power of two"
        if self.num_resamples > len(chans) - 1:
            return f"{self.num_resamples} resampling steps need at least {self.num_resamples + 1} levels, got {chans}"
        if self.layers_per_block < 1:
            return f"layers_per_block must be at least 1, got {self.layers_per_block}"
        if any(c % NORM_GROUPS for c in chans):
            return f"every block width must divide by {NORM_GROUPS} (GroupNorm), got {chans}"
        if chans[-1] % (2 * self.latent_channels):
            return f"the deepest width {chans[-1]} must divide by 2 x latent_channels ({2 * self.latent_channels})"
        for c_in, c_out in self.downsample_pairs:
            if c_out % 4 or (4 * c_in) % c_out:
                return f"downsampling {c_in} -> {c_out} channels cannot average channels for its shortcut"
        for c_in, c_out in self.upsample_pairs:
            if (4 * c_out) % c_in:
                return f"upsampling {c_in} -> {c_out} channels cannot repeat channels for its shortcut"
        return None

    @property
    def num_resamples(self) -> int:
        """Down- (encoder) or up-sampling (decoder) steps of 2x: 5 for the 32x VAE."""
        return self.spatial_compression.bit_length() - 1

    @property
    def downsample_pairs(self) -> list[tuple[int, int]]:
        """(in, out) widths of the encoder's downsamplers, at its first ``num_resamples`` levels."""
        chans = self.block_out_channels
        return [(chans[i], chans[i + 1]) for i in range(self.num_resamples)]

    @property
    def upsample_pairs(self) -> list[tuple[int, int]]:
        """(in, out) widths of the decoder's upsamplers, at its first (deepest) ``num_resamples`` levels."""
        chans = self.decoder_channels
        return [(chans[i], chans[i + 1]) for i in range(self.num_resamples)]

    @property
    def decoder_channels(self) -> tuple[int, ...]:
        """The decoder runs through the widths in reverse, deepest first."""
        return tuple(reversed(self.block_out_channels))

    @property
    def encoder_out_group(self) -> int:
        """Channels averaged into each of the encoder's ``2 x latent`` output shortcut channels."""
        return self.block_out_channels[-1] // (2 * self.latent_channels)

    def with_(self, **changes) -> VAEConfig:
        return replace(self, **changes)


STAGE1 = VAEConfig()
