"""What the stage-1 VAE (``vae/``) and the refiner VAE (``refiner_vae/``) share, written once.

Both are DC-AE style autoencoders: resampling moves 2x2 pixel blocks into channels (and back) instead of using
strided convolutions, and every resampling step, the encoder's output and the decoder's input carry a
parameter-free shortcut that averages or repeats channels. Their blocks differ (GroupNorm and 2-D convolutions
for stage 1; RMS norms and causal 3-D convolutions for the refiner), so the shared pieces below take the block
classes as arguments; ``Autoencoder`` holds the two halves and the size check of an encode. The IMAGE side
(``encode_image``/``decode_image``) turns ComfyUI's ``[B, H, W, 3]`` 0..1 IMAGEs into ``[-1, 1]`` pixels and
back, and runs either VAE slice by slice at a chosen working precision.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
HALF_DTYPES = (torch.float16, torch.bfloat16)

ConfigT = TypeVar("ConfigT", bound="VAEShape")
Precision = str | torch.dtype | None  # a key of PRECISIONS, a dtype, or None for the weights' own
Device = torch.device | str | None


# --- in-place inference arithmetic ---------------------------------------------------------------------------


def free(t: torch.Tensor) -> bool:
    """True when ``t`` may be overwritten: autograd does not track it (inference, the only use here)."""
    return not t.requires_grad


def silu(x: torch.Tensor) -> torch.Tensor:
    """SiLU, in place on fresh normalisation outputs to spare one full-resolution activation at 2K."""
    return F.silu(x, inplace=free(x))


def add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a + b``, into ``a`` when that changes nothing but memory.

    Under mixed-precision autocast the convolutions return fp16 while the residual stream is fp32; the sum must
    then be a new fp32 tensor, exactly as the official out-of-place additions give.
    """
    if free(a) and a.dtype == b.dtype and a.shape == b.shape:
        return a.add_(b)
    return a + b


def add_repeated(h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``h + x.repeat_interleave(r, dim=1)`` with ``r = h.C / x.C``, broadcast so the repeat is never materialised."""
    grouped = h.unflatten(1, (x.shape[1], h.shape[1] // x.shape[1]))
    if free(h) and h.dtype == x.dtype:
        return grouped.add_(x.unsqueeze(2)).flatten(1, 2)
    return (grouped + x.unsqueeze(2)).flatten(1, 2)


def group_mean(x: torch.Tensor, group: int) -> torch.Tensor:
    """Average runs of ``group`` consecutive channels: the parameter-free shortcut onto fewer channels."""
    return x if group == 1 else x.unflatten(1, (x.shape[1] // group, group)).mean(2)


def space_to_channels(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, 2H, 2W] -> [B, 4C, H, W]``, new channel ``(2*dy + dx) * C + c``.

    The 2x2 offset is the outer index, which is what the checkpoints were trained with (torch's pixel_unshuffle
    puts it innermost and would scramble the channel groups that the shortcuts average).
    """
    h, w = x.shape[2:]
    blocks = x.unflatten(3, (w // 2, 2)).unflatten(2, (h // 2, 2))  # b, c, h', dy, w', dx
    return blocks.permute(0, 3, 5, 1, 2, 4).flatten(1, 3)


def channels_to_space(x: torch.Tensor) -> torch.Tensor:
    """Inverse of ``space_to_channels``: ``[B, 4C, H, W] -> [B, C, 2H, 2W]`` in a single copy."""
    b, c4, h, w = x.shape
    offsets = x.unflatten(1, (2, 2, c4 // 4))  # b, dy, dx, c, h, w
    return offsets.permute(0, 3, 4, 1, 5, 2).reshape(b, c4 // 4, 2 * h, 2 * w)


# --- blocks and the level walk ----------------------------------------------------------------------------------


class ResidualBlock(nn.Module):
    """Norm-SiLU-conv twice, plus the input (through ``nin_shortcut`` when the width changes).

    Subclasses build ``norm1``, ``conv1``, ``norm2``, ``conv2`` and ``nin_shortcut`` (None at equal widths) from
    their own layer kinds, and override ``shortcut`` when the 1x1 convolution must be applied differently.
    """

    nin_shortcut: nn.Module | None

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.nin_shortcut is None else self.nin_shortcut(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One name for every intermediate, so each dies as soon as the next exists: at most the input and two
        # full-size tensors are alive (holding the first conv's output through the second norm would add one).
        h = silu(self.norm1(x))
        h = self.conv1(h)
        h = silu(self.norm2(h))
        h = self.conv2(h)
        return add(h, self.shortcut(x))


class MidBlock(nn.Module):
    """ResnetBlock, AttnBlock, ResnetBlock at the deepest width (the only global mixing in either VAE)."""

    def __init__(
        self,
        channels: int,
        resnet: Callable[..., nn.Module],
        attn: Callable[..., nn.Module],
        dtype: torch.dtype | None = None,
        device: Device = None,
        operations: SimpleNamespace = nn,
    ) -> None:
        super().__init__()
        self.block_1 = resnet(channels, channels, dtype, device, operations)
        self.attn_1 = attn(channels, dtype, device, operations)
        self.block_2 = resnet(channels, channels, dtype, device, operations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Level(nn.Module):
    """One resolution: ``block`` (ResnetBlocks), then an optional ``downsample`` (encoder) or ``upsample``.

    A container only: the encoder and decoder call its modules one by one (``level_steps``). Calling the level as
    a module would keep its input alive (in the call's arguments) until its last block is done, one more
    full-size activation at the peak of a 2K decode.
    """

    def __init__(self, blocks: list[nn.Module], resample: nn.Module | None, resample_name: str) -> None:
        super().__init__()
        self.block = nn.ModuleList(blocks)
        if resample is not None:
            self.add_module(resample_name, resample)

    def steps(self) -> list[nn.Module]:
        """The modules to apply in order (looked up each time, so replaced submodules are honoured)."""
        return [*self.block, *(m for name, m in self.named_children() if name != "block")]


def build_levels(
    width: int,
    targets: Sequence[int],
    depth: int,
    block: Callable[[int, int], nn.Module],
    resamplers: Sequence[tuple[int, ...]],
    resample: Callable[..., nn.Module],
    resample_name: str,
) -> tuple[nn.ModuleList, int]:
    """The levels of an encoder (``targets`` = widths) or decoder (widths reversed), and the width they end at.

    Level ``i`` holds ``depth`` blocks made by ``block(c_in, c_out)`` ending at ``targets[i]``; the first
    ``len(resamplers)`` levels then end with ``resample(*resamplers[i])``, whose spec starts with its input and
    output widths.
    """
    levels = nn.ModuleList()
    for i, target in enumerate(targets):
        blocks = []
        for _ in range(depth):
            blocks.append(block(width, target))
            width = target
        resampler = None
        if i < len(resamplers):
            resampler = resample(*resamplers[i])
            width = resamplers[i][1]
        levels.append(Level(blocks, resampler, resample_name))
    return levels, width


def level_steps(levels: Iterable[Level]) -> Iterator[nn.Module]:
    """Every module of ``levels`` in order, for a ``for step in ...: h = step(h)`` loop that frees each input."""
    for level in levels:
        yield from level.steps()


class EncoderWalk(nn.Module):
    """An encoder's forward: ``conv_in``, the ``down`` levels, ``mid``, then norm-SiLU-``conv_out`` plus the
    shortcut that averages ``out_group`` channels of the deepest width into each output channel.

    Subclasses build those modules from their own layer kinds; the result is the moments, mean then log-variance.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for step in level_steps(self.down):
            h = step(h)
        h = self.mid(h)
        shortcut = group_mean(h, self.out_group)
        return add(self.conv_out(silu(self.norm_out(h))), shortcut)


class DecoderWalk(nn.Module):
    """A decoder's forward: ``conv_in`` plus the shortcut repeating each latent channel, ``mid``, the ``up``
    levels, then norm-SiLU-``conv_out``. Subclasses build those modules from their own layer kinds."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(add_repeated(self.conv_in(z), z))
        for step in level_steps(self.up):
            h = step(h)
        h = silu(self.norm_out(h))
        return self.conv_out(h)


# --- configs, posterior, sizes and the model shell --------------------------------------------------------


def is_power_of_two(n: int) -> bool:
    return n >= 1 and not n & (n - 1)


@dataclass(frozen=True, kw_only=True)
class VAEShape:
    """The fields both VAE configs have, what follows from them and how they are checked; each subclass gives
    the defaults of its released VAE (the latent facts from ``variants``) and its own checks.

    Keyword-only, so a subclass may default fields declared here without defaults, and a config is never built
    from a positional list whose order could drift.
    """

    in_channels: int = 3
    out_channels: int = 3
    latent_channels: int
    block_out_channels: tuple[int, ...]
    layers_per_block: int = 2
    spatial_compression: int
    scaling_factor: float  # carried for the sampler (raw latents times it on the way in); the VAE never applies it

    NAME = "VAE"

    def __post_init__(self) -> None:
        object.__setattr__(self, "block_out_channels", tuple(self.block_out_channels))
        problem = self.problem()
        if problem:
            raise ValueError(f"invalid {self.NAME} config: {problem}")

    def problem(self) -> str | None:
        """Why the config cannot build a VAE, or None: the first finding, the shared checks interleaved with
        each VAE's own (``temporal_problem``, ``widths_problem``, ``resample_problem``) in this fixed order."""
        return (
            self.compression_problem()
            or self.temporal_problem()
            or self.depth_problem()
            or self.widths_problem()
            or self.deepest_problem()
            or self.resample_problem()
        )

    def temporal_problem(self) -> str | None:
        """What is wrong with a time axis; none by default (the stage-1 VAE has no time axis)."""
        return None

    def widths_problem(self) -> str | None:
        """What the VAE's norms or shapes forbid among its channel counts."""
        raise NotImplementedError

    def resample_problem(self) -> str | None:
        """Which resampler cannot build its parameter-free shortcut from its widths."""
        raise NotImplementedError

    def compression_problem(self) -> str | None:
        if not is_power_of_two(self.spatial_compression):
            return f"spatial_compression {self.spatial_compression} is not a power of two"
        return None

    def depth_problem(self) -> str | None:
        chans = self.block_out_channels
        if self.num_resamples > len(chans) - 1:
            return f"{self.num_resamples} resampling steps need at least {self.num_resamples + 1} levels, got {chans}"
        if self.layers_per_block < 1:
            return f"layers_per_block must be at least 1, got {self.layers_per_block}"
        return None

    def deepest_problem(self) -> str | None:
        deepest = self.block_out_channels[-1]
        if deepest % (2 * self.latent_channels):
            return f"the deepest width {deepest} must divide by 2 x latent_channels ({2 * self.latent_channels})"
        return None

    @property
    def num_resamples(self) -> int:
        """Down- (encoder) or up-sampling (decoder) steps of 2x in space: log2 of the spatial compression."""
        return self.spatial_compression.bit_length() - 1

    @property
    def decoder_channels(self) -> tuple[int, ...]:
        """The decoder runs through the widths in reverse, deepest first."""
        return tuple(reversed(self.block_out_channels))

    @property
    def encoder_out_group(self) -> int:
        """Channels averaged into each of the encoder's ``2 x latent`` output shortcut channels."""
        return self.block_out_channels[-1] // (2 * self.latent_channels)

    @property
    def downsample_pairs(self) -> list[tuple[int, int]]:
        """(in, out) widths of the encoder's downsamplers, one after each of its first ``num_resamples`` levels."""
        return self._resampler_widths(self.block_out_channels)

    @property
    def upsample_pairs(self) -> list[tuple[int, int]]:
        """(in, out) widths of the decoder's upsamplers, at its first (deepest) ``num_resamples`` levels."""
        return self._resampler_widths(self.decoder_channels)

    def _resampler_widths(self, chans: tuple[int, ...]) -> list[tuple[int, int]]:
        return [(chans[i], chans[i + 1]) for i in range(self.num_resamples)]

    def with_(self: ConfigT, **changes) -> ConfigT:
        return replace(self, **changes)


@dataclass
class DiagonalGaussian:
    """The encoder's posterior; ``mean`` is what ComfyUI and the official pipelines use as the latent."""

    mean: torch.Tensor
    logvar: torch.Tensor

    @classmethod
    def from_moments(cls, moments: torch.Tensor) -> DiagonalGaussian:
        """Split ``[B, 2C, ...]`` into mean and log-variance, clamping the latter to [-30, 20] as the official."""
        mean, logvar = moments.chunk(2, dim=1)
        return cls(mean, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX))

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def mode(self) -> torch.Tensor:
        return self.mean

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(self.mean.shape, generator=generator, dtype=self.mean.dtype, device=self.mean.device)
        return self.mean + self.std * noise


def size_problem(width: int, height: int, factor: int) -> str | None:
    """Why an image of ``width x height`` cannot be encoded (sides must be multiples of ``factor``), or None."""
    if height % factor == 0 and width % factor == 0 and height > 0 and width > 0:
        return None

    def down(n: int) -> int:
        return n - n % factor

    def up(n: int) -> int:
        return down(n) if n % factor == 0 else down(n) + factor

    options = []
    if down(width) > 0 and down(height) > 0:
        options.append(f"crop to {down(width)}x{down(height)}")
    options.append(f"pad or resize to {up(max(width, 1))}x{up(max(height, 1))}")
    return (
        f"image size {width}x{height} (width x height) cannot be encoded: both sides must be multiples of "
        f"{factor}, as the VAE compresses {factor}x; nearest valid sizes: {' or '.join(options)}"
    )


def check_size(width: int, height: int, factor: int) -> None:
    """Raise ``ValueError`` naming the nearest valid sizes when ``width x height`` cannot be encoded."""
    problem = size_problem(width, height, factor)
    if problem:
        raise ValueError(problem)


class Autoencoder(nn.Module):
    """An encoder and a decoder built from one config: what both VAE models hold, and the encode step they share.

    Subclasses build the two halves (the checkpoints' ``encoder.*`` and ``decoder.*`` names) and check their
    own input layouts in ``encode`` and ``decode``.
    """

    def __init__(self, config: VAEShape, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.encoder = encoder
        self.decoder = decoder

    def posterior(self, x: torch.Tensor) -> DiagonalGaussian:
        """The encoder's posterior for pixels ``x`` (``[..., H, W]``), once the sides suit the compression."""
        check_size(x.shape[-1], x.shape[-2], self.config.spatial_compression)
        return DiagonalGaussian.from_moments(self.encoder(x))


# --- IMAGE side ----------------------------------------------------------------------------------------------


def resolve_precision(precision: Precision) -> torch.dtype | None:
    """``"fp32" | "bf16" | "fp16"`` (or a dtype, or None for the weights' own) to a dtype."""
    if precision is None or isinstance(precision, torch.dtype):
        return precision
    try:
        return PRECISIONS[precision]
    except KeyError:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}") from None


def first_weight(vae: nn.Module) -> torch.Tensor:
    """A parameter of ``vae``: its device and dtype are where and how its inputs must arrive."""
    return next(vae.parameters())


@contextlib.contextmanager
def working_precision(vae: nn.Module, precision: Precision) -> Iterator[torch.dtype]:
    """Run the VAE at ``precision``; yields the dtype its inputs must have.

    Same dtype as the weights (or None): plain. A half precision over wider weights: autocast, which is how the
    official pipeline decodes (fp32 weights, fp16 autocast: convolutions in fp16, norms and the residual stream
    in fp32). fp32 over half weights cannot be honoured without a second copy of the weights, so it is refused
    with the fix.
    """
    wanted = resolve_precision(precision)
    weights = first_weight(vae)
    if wanted is None or wanted == weights.dtype:
        yield weights.dtype
        return
    if wanted in HALF_DTYPES:
        with torch.autocast(weights.device.type, dtype=wanted):
            yield weights.dtype
        return
    raise ValueError(
        f"cannot run the VAE in {wanted} with {weights.dtype} weights; load it with dtype {wanted} instead"
    )


def batch_slices(batch: torch.Tensor, batch_size: int | None) -> Iterator[torch.Tensor]:
    """The batch in slices of ``batch_size`` (None: all at once). Slicing never changes a result."""
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    yield from batch.split(batch_size or max(batch.shape[0], 1))


def run_sliced(
    vae: nn.Module,
    batch: torch.Tensor,
    step: Callable[[torch.Tensor, int], torch.Tensor],
    precision: Precision,
    batch_size: int | None,
    output_device: Device,
) -> torch.Tensor:
    """``step(part, offset)`` over ``batch`` in slices, without autograd, at the working ``precision``.

    Each part arrives on the weights' device in the input dtype ``working_precision`` asks for, ``offset`` being
    its first index in the batch; each result moves to ``output_device`` (default: the batch's) as soon as it
    is done, and the results are concatenated.
    """
    weights = first_weight(vae)
    out_device = torch.device(output_device) if output_device is not None else batch.device
    results = []
    offset = 0
    with torch.no_grad(), working_precision(vae, precision) as input_dtype:
        for part in batch_slices(batch, batch_size):
            results.append(step(part.to(weights.device, input_dtype), offset).to(out_device))
            offset += part.shape[0]
    return torch.cat(results)


def to_image(decoded: torch.Tensor) -> torch.Tensor:
    """Decoder output ``[B, 3, H, W]`` (or one frame, ``[B, 3, 1, H, W]``) around [-1, 1] -> IMAGE
    ``[B, H, W, 3]`` float32 in 0..1."""
    if decoded.ndim == 5:
        decoded = decoded.squeeze(2)
    return decoded.float().div(2).add_(0.5).clamp_(0, 1).movedim(1, -1)


def from_image(images: torch.Tensor, factor: int) -> torch.Tensor:
    """IMAGE ``[B, H, W, C>=3]`` in 0..1 -> ``[B, 3, H, W]`` in [-1, 1]; extra channels (alpha) are dropped."""
    if images.ndim != 4 or images.shape[-1] < 3:
        raise ValueError(f"expected an IMAGE [B, H, W, 3], got shape {tuple(images.shape)}")
    check_size(images.shape[2], images.shape[1], factor)
    return images[..., :3].movedim(-1, 1) * 2 - 1


def encode_image(
    vae: Autoencoder,
    images: torch.Tensor,
    precision: Precision = None,
    batch_size: int | None = None,
    output_device: Device = None,
    generator: torch.Generator | None = None,
    sample: bool = False,
) -> torch.Tensor:
    """IMAGE ``[B, H, W, 3]`` (0..1, sides multiples of the VAE's compression) -> raw latent, float32, laid out as
    the VAE's ``encode`` gives it.

    The posterior mean by default, as ComfyUI's VAEEncode and stage 1's img2img use it; ``sample=True`` draws
    ``mean + std * noise`` as the official refiner does (``latent_dist.sample()``), the noise coming from
    ``generator`` (on its device; the global CPU generator if None), drawn in float32 for the whole batch at once
    so ``batch_size`` never changes the result. A side that is not a multiple of the compression raises
    ``ValueError`` naming the nearest valid sizes.
    """
    pixels = from_image(images, vae.config.spatial_compression)
    noise = None
    if sample:
        factor = vae.config.spatial_compression
        shape = (pixels.shape[0], vae.config.latent_channels, pixels.shape[2] // factor, pixels.shape[3] // factor)
        noise_device = generator.device if generator is not None else torch.device("cpu")
        noise = torch.randn(shape, generator=generator, device=noise_device, dtype=torch.float32)

    def step(part: torch.Tensor, offset: int) -> torch.Tensor:
        posterior = vae.encode(part)
        latent = posterior.mean.float()
        if noise is not None:  # a frame axis, where the VAE has one, holds no extra values: a view suffices
            eps = noise[offset : offset + part.shape[0]].to(latent.device).view_as(latent)
            latent = latent + torch.exp(0.5 * posterior.logvar.float()) * eps
        return latent

    return run_sliced(vae, pixels, step, precision, batch_size, output_device)


def decode_image(
    vae: Autoencoder,
    latents: torch.Tensor,
    precision: Precision = None,
    batch_size: int | None = None,
    output_device: Device = None,
    decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Raw latents, laid out as the VAE's ``decode`` takes them -> IMAGE ``[B, H, W, 3]`` (float32, 0..1).

    ``batch_size`` decodes that many images at a time (same result, less memory); ``output_device`` defaults to
    the latents' device, and each slice moves there as soon as it is done. ``decode`` stands in for
    ``vae.decode`` on each slice (the stage-1 VAE's opt-in tiled decode).
    """
    run = vae.decode if decode is None else decode

    def step(part: torch.Tensor, _offset: int) -> torch.Tensor:
        return to_image(run(part))

    return run_sliced(vae, latents, step, precision, batch_size, output_device)
