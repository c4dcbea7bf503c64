"""Shape of HunyuanImage-2.1's refiner VAE (16x in space, 4x in time, 32 latent channels, causal 3-D): the
released preset and tiny test configs alike."""

from __future__ import annotations

from dataclasses import dataclass

from ..vae_common import VAEShape, is_power_of_two
from ..variants import REFINER_LATENT


@dataclass(frozen=True, kw_only=True)
class RefinerVAEConfig(VAEShape):
    """Everything that decides the refiner VAE's tensors. Detected from a checkpoint's shapes, except the scale.

    ``scaling_factor`` (1.03682) is carried for the refiner's sampling code, which multiplies raw latents by it on
    the way in and divides on the way out; the VAE itself never applies it.

    Resampling follows the official rule: the encoder downsamples after each of its first ``log2(spatial)`` levels,
    the last ``log2(temporal)`` of those also halving time; the decoder upsamples after its first ``log2(spatial)``
    levels, the first ``log2(temporal)`` of those also doubling time. Only single images (one frame) are run here,
    but the temporal steps still decide the convolutions' widths and how the shortcuts fold channels.
    """

    latent_channels: int = REFINER_LATENT.channels
    spatial_compression: int = REFINER_LATENT.compression
    scaling_factor: float = REFINER_LATENT.scale
    block_out_channels: tuple[int, ...] = (128, 256, 512, 1024, 1024)
    temporal_compression: int = 4

    NAME = "refiner VAE"

    @property
    def num_temporal(self) -> int:
        """How many of the ``num_resamples`` steps also resample time: 2 for the 4x temporal compression."""
        return self.temporal_compression.bit_length() - 1

    @property
    def downsamplers(self) -> list[tuple[int, int, bool]]:
        """``downsample_pairs`` with whether each also halves time: the last ``num_temporal`` do."""
        first_temporal = self.num_resamples - self.num_temporal
        return [(c_in, c_out, i >= first_temporal) for i, (c_in, c_out) in enumerate(self.downsample_pairs)]

    @property
    def upsamplers(self) -> list[tuple[int, int, bool]]:
        """``upsample_pairs`` with whether each also doubles time: the first (deepest) ``num_temporal`` do."""
        return [(c_in, c_out, i < self.num_temporal) for i, (c_in, c_out) in enumerate(self.upsample_pairs)]

    @property
    def decoder_in_repeat(self) -> int:
        """How often the decoder's input shortcut repeats each latent channel (32 at full size)."""
        return self.block_out_channels[-1] // self.latent_channels

    def temporal_problem(self) -> str | None:
        if not is_power_of_two(self.temporal_compression) or self.temporal_compression > self.spatial_compression:
            return f"temporal_compression {self.temporal_compression} is not a power of two up to the spatial one"
        return None

    def widths_problem(self) -> str | None:
        if min(self.block_out_channels) < 1 or min(self.in_channels, self.out_channels, self.latent_channels) < 1:
            return "every channel count must be positive"
        return None

    def resample_problem(self) -> str | None:
        for c_in, c_out, temporal in self.downsamplers:
            fold = 8 if temporal else 4
            if c_out % fold or (4 * c_in) % c_out:
                return f"downsampling {c_in} -> {c_out} channels ({'temporal' if temporal else 'spatial'}) is invalid"
        for c_in, c_out, temporal in self.upsamplers:
            if (4 * c_out) % c_in or (temporal and c_in % 4):
                return f"upsampling {c_in} -> {c_out} channels ({'temporal' if temporal else 'spatial'}) is invalid"
        return None


REFINER_VAE = RefinerVAEConfig()
