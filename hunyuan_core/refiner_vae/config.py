"""Shape of HunyuanImage-2.1's refiner VAE (16x in space, 4x in time, 32 latent channels, causal 3-D): the
released preset and tiny test configs alike."""

from __future__ import annotations

from dataclasses import dataclass

from ..vae_common import VAEShape, is_power_of_two
from ..variants import REFINER_LATENT


@dataclass(frozen=True)
class RefinerVAEConfig(VAEShape):
    """Everything that decides the refiner VAE's tensors. Detected from a checkpoint's shapes, except the scale.

    ``scaling_factor`` (1.03682) is carried for the refiner's sampling code, which multiplies raw latents by it on
    the way in and divides on the way out; the VAE itself never applies it.

    Resampling follows the official rule: the encoder downsamples after each of its first ``log2(spatial)`` levels,
    the last ``log2(temporal)`` of those also halving time; the decoder upsamples after its first ``log2(spatial)``
    levels, the first ``log2(temporal)`` of those also doubling time. Only single images (one frame) are run here,
    but the temporal steps still decide the convolutions' widths and how the shortcuts fold channels.
    """

    in_channels: int = 3
    out_channels: int = 3
    latent_channels: int = REFINER_LATENT.channels
    block_out_channels: tuple[int, ...] = (128, 256, 512, 1024, 1024)
    layers_per_block: int = 2
    spatial_compression: int = REFINER_LATENT.compression
    temporal_compression: int = 4
    scaling_factor: float = REFINER_LATENT.scale

    NAME = "refiner VAE"

    def problem(self) -> str | None:
        return (
            self.compression_problem()
            or self._temporal_problem()
            or self.depth_problem()
            or self._positive_problem()
            or self.deepest_problem()
            or self._resample_problem()
        )

    def _temporal_problem(self) -> str | None:
        if not is_power_of_two(self.temporal_compression) or self.temporal_compression > self.spatial_compression:
            return f"temporal_compression {self.temporal_compression} is not a power of two up to the spatial one"
        return None

    def _positive_problem(self) -> str | None:
        if min(self.block_out_channels) < 1 or min(self.in_channels, self.out_channels, self.latent_channels) < 1:
            return "every channel count must be positive"
        return None

    def _resample_problem(self) -> str | None:
        for c_in, c_out, temporal in self.downsamplers:
            fold = 8 if temporal else 4
            if c_out % fold or (4 * c_in) % c_out:
                return f"downsampling {c_in} -> {c_out} channels ({'temporal' if temporal else 'spatial'}) is invalid"
        for c_in, c_out, temporal in self.upsamplers:
            if (4 * c_out) % c_in or (temporal and c_in % 4):
                return f"upsampling {c_in} -> {c_out} channels ({'temporal' if temporal else 'spatial'}) is invalid"
        return None

    @property
    def num_temporal(self) -> int:
        """How many of those steps also resample time: 2 for the 4x temporal compression."""
        return self.temporal_compression.bit_length() - 1

    @property
    def downsamplers(self) -> list[tuple[int, int, bool]]:
        """(in, out, temporal?) of the encoder's downsamplers, one after each of its first ``num_resamples`` levels."""
        chans = self.block_out_channels
        first_temporal = self.num_resamples - self.num_temporal
        return [(chans[i], chans[i + 1], i >= first_temporal) for i in range(self.num_resamples)]

    @property
    def upsamplers(self) -> list[tuple[int, int, bool]]:
        """(in, out, temporal?) of the decoder's upsamplers, at its first (deepest) ``num_resamples`` levels."""
        chans = self.decoder_channels
        return [(chans[i], chans[i + 1], i < self.num_temporal) for i in range(self.num_resamples)]

    @property
    def decoder_in_repeat(self) -> int:
        """How often the decoder's input shortcut repeats each latent channel (32 at full size)."""
        return self.block_out_channels[-1] // self.latent_channels


REFINER_VAE = RefinerVAEConfig()
