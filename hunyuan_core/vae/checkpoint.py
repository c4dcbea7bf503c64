"""The one place that decides what a stage-1 VAE checkpoint is, and loads it.

Two naming schemes exist. The official ``vae/vae_2_1/pytorch_model.ckpt`` (a pickled ``state_dict``, keys
prefixed ``vae.``, some conv weights stored 5-D with T=1) and Comfy-Org's ``hunyuan_image_2.1_vae_fp16.safetensors``
use the same module names (ComfyUI's ``hunyuan_video/vae.py`` reuses them): ``ORIGINAL``, which are also ours.
diffusers' ``AutoencoderKLHunyuanImage`` flattens each level into one list and renames a few leaves: ``DIFFUSERS``.
The config comes from shapes alone, so tiny test files take the same path as the 1.6 GB ones. Loading builds the
model on the meta device and fills each parameter straight from the file.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from ..identify import describe_checkpoint
from ..tensor_files import PICKLE_SUFFIXES, CheckpointFileError, TensorFile
from .config import VAEConfig
from .model import HunyuanImageVAE

log = logging.getLogger(__name__)

ORIGINAL = "original"
DIFFUSERS = "diffusers"
FOLDER_FILES = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.bin",
    "pytorch_model.ckpt",
    "pytorch_model.pt",
    "model.safetensors",
)
EXPECTED = (
    "Expected the HunyuanImage-2.1 stage-1 VAE (64 latent channels, 32x): the official vae_2_1/pytorch_model.ckpt, "
    "Comfy-Org's hunyuan_image_2.1_vae_fp16.safetensors or a diffusers AutoencoderKLHunyuanImage"
)

ShapeOf = Callable[[str], tuple[int, ...]]


class VAECheckpointError(ValueError):
    """The file is not a (complete) HunyuanImage-2.1 stage-1 VAE; the message says what it appears to be."""


@dataclass(frozen=True)
class VAECheckpointInfo:
    path: Path
    layout: str
    prefix: str
    config: VAEConfig
    weight_dtype: torch.dtype

    def describe(self) -> str:
        c = self.config
        return (
            f"HunyuanImage-2.1 stage-1 VAE, {self.layout} layout"
            + (f" (prefix {self.prefix!r})" if self.prefix else "")
            + f", {str(self.weight_dtype).replace('torch.', '')} weights, {c.latent_channels} latent channels, "
            f"{c.spatial_compression}x, widths {list(c.block_out_channels)}"
        )


# --- names -------------------------------------------------------------------------------------------------------

_MID = {"block_1": "resnets.0", "block_2": "resnets.1", "attn_1": "attentions.0"}
_LEAF = {"nin_shortcut": "conv_shortcut", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "proj"}


def _flat_index(config: VAEConfig, level: int, per_level: int) -> int:
    """Where a level starts in diffusers' flat list: each level's blocks, then its resampler if it has one."""
    return sum(per_level + (i < config.num_resamples) for i in range(level))


def diffusers_name(name: str, config: VAEConfig) -> str:
    """diffusers' name for one of our (= official) parameter names."""
    side, rest = name.split(".", 1)
    per_level = config.layers_per_block + (side == "decoder")
    flat = "down_blocks" if side == "encoder" else "up_blocks"
    if m := re.match(r"(down|up)\.(\d+)\.block\.(\d+)\.(.+)", rest):
        index = _flat_index(config, int(m[2]), per_level) + int(m[3])
        module, leaf = m[4].rsplit(".", 1)
        return f"{side}.{flat}.{index}.{_LEAF.get(module, module)}.{leaf}"
    if m := re.match(r"(down|up)\.(\d+)\.(downsample|upsample)\.(.+)", rest):
        return f"{side}.{flat}.{_flat_index(config, int(m[2]), per_level) + per_level}.{m[4]}"
    if m := re.match(r"mid\.(block_1|block_2|attn_1)\.(\w+)\.(\w+)", rest):
        return f"{side}.mid_block.{_MID[m[1]]}.{_LEAF.get(m[2], m[2])}.{m[3]}"
    return name  # conv_in, norm_out, conv_out


def expected_shapes(config: VAEConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter of the model for ``config``, by our name, without allocating anything."""
    with torch.device("meta"):
        model = HunyuanImageVAE(config)
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def _fit_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Stored shape -> model shape: official 5-D convs with T=1 lose T; Linear-style 1x1 attention gains 1x1."""
    if len(shape) == 5 and shape[2] == 1:
        return shape[:2] + shape[3:]
    if len(shape) == 2:
        return (*shape, 1, 1)
    return shape


def _fit(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.reshape(_fit_shape(tuple(tensor.shape)))


class _View:
    """The VAE's tensors in a file under our names, whatever the layout and prefix."""

    def __init__(self, file: TensorFile, layout: str, prefix: str, config: VAEConfig | None = None) -> None:
        self.file = file
        self.layout = layout
        self.prefix = prefix
        self.config = config

    def key(self, name: str) -> str:
        if self.layout == DIFFUSERS:
            if self.config is None:
                raise RuntimeError("diffusers names depend on the config; detect it first")
            name = diffusers_name(name, self.config)
        return self.prefix + name

    def has(self, name: str) -> bool:
        return self.key(name) in self.file

    def shape(self, name: str) -> tuple[int, ...]:
        return _fit_shape(self.file.shape(self.key(name)))

    def get(self, name: str) -> torch.Tensor:
        return _fit(self.file.get(self.key(name)))


# --- detection ---------------------------------------------------------------------------------------------------

_ANCHOR = re.compile(r"^(|.*\.)decoder\.conv_in\.weight$")


def _prefix(keys: list[str]) -> str | None:
    """What comes before ``decoder.conv_in.weight`` (``vae.`` in the official file, nothing in Comfy-Org's)."""
    return next((m[1] for k in keys if (m := _ANCHOR.match(k))), None)


def _indices(names: set[str], pattern: str) -> list[int]:
    return sorted({int(m[1]) for n in names if (m := re.match(pattern, n))})


def _layout(names: set[str]) -> str | None:
    if "encoder.down.0.block.0.conv1.weight" in names:
        return ORIGINAL
    if "encoder.down_blocks.0.conv1.weight" in names:
        return DIFFUSERS
    return None


def _foreign_vae(names: set[str], shape_of: ShapeOf, prefix: str) -> str | None:
    """Name a VAE of another model family (SD/SDXL, SD3/Flux, video VAEs), or None if nothing matches."""

    def shape(name: str) -> tuple[int, ...] | None:
        return shape_of(prefix + name) if name in names else None

    conv3d = shape("decoder.conv_in.conv.weight")
    if conv3d is not None:
        latent = conv3d[1]
        if latent == 32:
            return (
                "the HunyuanImage-2.1 refiner VAE (32 latent channels, causal 3-D, 16x); load it as the refiner VAE "
                "with the HunyuanImage 2.1 Refiner VAE Loader"
            )
        return f"a causal 3-D video VAE such as HunyuanVideo's ({latent} latent channels)"
    conv_in = shape("decoder.conv_in.weight")
    if conv_in is None:
        return None
    latent = conv_in[1]
    if "encoder.down_blocks.0.resnets.0.conv1.weight" in names:
        layout = ", diffusers AutoencoderKL layout"
    else:
        # The DC-AE signature: a downsampler's conv emits 1/4 of the next level's width (blocks go into channels);
        # SD-style VAEs downsample with a strided conv that keeps the width.
        down, nxt = shape("encoder.down.0.downsample.conv.weight"), shape("encoder.down.1.block.0.conv1.weight")
        if down is None or nxt is None or nxt[1] == 4 * down[0]:
            return None
        layout = ""
    if latent == 4:
        return f"a Stable Diffusion 1.x/2.x or SDXL VAE (4 latent channels, 8x{layout})"
    if latent == 16:
        return f"a 16-channel VAE such as SD3's or Flux's (8x{layout})"
    return f"a VAE of another model ({latent} latent channels{layout})"


def _not_ours(file: TensorFile, keys: list[str], what: str) -> VAECheckpointError:
    return VAECheckpointError(
        f"{file.path.name} is not a HunyuanImage-2.1 stage-1 VAE: it appears to be {what}. {EXPECTED}."
    )


def _resolve(file: TensorFile) -> _View:
    keys = file.keys()
    prefix = _prefix(keys)
    if prefix is None:
        prefix = next((m[1] for k in keys if (m := re.match(r"^(|.*\.)decoder\.conv_in\.conv\.weight$", k))), "")
    names = {k[len(prefix) :] for k in keys if k.startswith(prefix)}
    foreign = _foreign_vae(names, file.shape, prefix)
    if foreign:
        raise _not_ours(file, keys, foreign)
    layout = _layout(names)
    if layout is None or "decoder.conv_in.weight" not in names:
        raise _not_ours(file, keys, describe_checkpoint(keys, file.shape))
    return _View(file, layout, prefix)


def _levels_original(names: set[str], view: _View, side: str, stage: str) -> list[tuple[int, bool]]:
    """(width, resamples?) for each level of one side, from official names."""
    levels = []
    for i in _indices(names, rf"{side}\.{stage}\.(\d+)\."):
        last = max(_indices(names, rf"{side}\.{stage}\.{i}\.block\.(\d+)\."))
        width = view.shape(f"{side}.{stage}.{i}.block.{last}.conv2.weight")[0]
        resamples = f"{side}.{stage}.{i}.{'downsample' if stage == 'down' else 'upsample'}.conv.weight" in names
        levels.append((width, resamples))
    return levels


def _config_original(names: set[str], view: _View) -> VAEConfig:
    levels = _levels_original(names, view, "encoder", "down")
    return _config(view, [w for w, _ in levels], len(_indices(names, r"encoder\.down\.0\.block\.(\d+)\.")),
                   sum(r for _, r in levels))  # fmt: skip


def _config_diffusers(names: set[str], view: _View) -> VAEConfig:
    """Walk diffusers' flat encoder list: blocks up to each downsampler form a level, the rest split evenly."""
    flat = _indices(names, r"encoder\.down_blocks\.(\d+)\.")
    widths, runs, run = [], [], []
    for i in flat:
        prefix = f"encoder.down_blocks.{i}."
        if prefix + "conv1.weight" in names:
            run.append(view.file.shape(view.prefix + prefix + "conv2.weight")[0])
        elif prefix + "conv.weight" in names:
            runs.append(run)
            run = []
    if not runs or not runs[0]:
        raise KeyError("encoder.down_blocks: no downsampler after the first blocks")
    layers = len(runs[0])
    for r in runs:
        widths.append(r[-1])
    widths += [run[j + layers - 1] for j in range(0, len(run), layers)]
    return _config(view, widths, layers, len(runs))


def _config(view: _View, widths: list[int], layers: int, resamples: int) -> VAEConfig:
    """The rest of the config from the stem and head convolutions (these names are the same in every layout)."""
    raw = view.file.shape
    return VAEConfig(
        in_channels=raw(view.prefix + "encoder.conv_in.weight")[1],
        out_channels=raw(view.prefix + "decoder.conv_out.weight")[0],
        latent_channels=raw(view.prefix + "encoder.conv_out.weight")[0] // 2,
        block_out_channels=tuple(widths),
        layers_per_block=layers,
        spatial_compression=2**resamples,
    )


def _check_complete(view: _View) -> None:
    missing, wrong = [], []
    for name, shape in expected_shapes(view.config).items():
        if not view.has(name):
            missing.append(view.key(name))
        elif view.shape(name) != shape:
            wrong.append(f"{view.key(name)}: file {view.file.shape(view.key(name))}, expected {shape}")
    if missing or wrong:
        detail = []
        if missing:
            detail.append(f"{len(missing)} tensors missing (e.g. {', '.join(missing[:3])})")
        if wrong:
            detail.append(f"{len(wrong)} with unexpected shapes (e.g. {wrong[0]})")
        raise VAECheckpointError(
            f"{view.file.path.name} is an incomplete or inconsistent HunyuanImage-2.1 VAE ({view.layout} layout): "
            f"{'; '.join(detail)}. Re-download the file."
        )


def _open(path: str | Path) -> TensorFile:
    path = Path(path)
    if path.is_dir():
        found = next((path / n for n in FOLDER_FILES if (path / n).is_file()), None)
        if found is None:
            raise VAECheckpointError(f"no VAE weights in folder {path} (looked for {', '.join(FOLDER_FILES)})")
        path = found
    try:
        return TensorFile(path)
    except CheckpointFileError as exc:
        hint = ""
        if path.suffix.lower() in PICKLE_SUFFIXES and "truncated" not in str(exc):
            hint = " It appears to be truncated or damaged (an interrupted download?); download it again."
        raise VAECheckpointError(f"cannot read {path.name} as a HunyuanImage-2.1 VAE: {exc}.{hint}") from None


def _inspect(file: TensorFile) -> tuple[VAECheckpointInfo, _View]:
    view = _resolve(file)
    names = {k[len(view.prefix) :] for k in file if k.startswith(view.prefix)}
    try:
        detect = _config_original if view.layout == ORIGINAL else _config_diffusers
        view.config = detect(names, view)
    except (KeyError, IndexError, ValueError) as exc:
        raise VAECheckpointError(
            f"{file.path.name} looks like a HunyuanImage-2.1 VAE ({view.layout} layout) but its tensors do not "
            f"form one ({exc}); the file is incomplete or damaged"
        ) from None
    _check_complete(view)
    dtype = file.dtype(view.key("decoder.conv_in.weight"))
    return VAECheckpointInfo(file.path, view.layout, view.prefix, view.config, dtype), view


def inspect_vae(path: str | Path) -> VAECheckpointInfo:
    """Identify a VAE file (or diffusers ``vae`` folder) from keys and shapes; raise VAECheckpointError if it is not."""
    return _inspect(_open(path))[0]


def load_vae(
    path: str | Path,
    dtype: torch.dtype | None = None,
    device: torch.device | str = "cpu",
    operations: SimpleNamespace = nn,
) -> HunyuanImageVAE:
    """Load any supported stage-1 VAE file. ``dtype=None`` keeps the file's dtype (fp32 official, fp16 Comfy-Org)."""
    file = _open(path)
    info, view = _inspect(file)
    compute = dtype or info.weight_dtype
    with torch.device("meta"):
        model = HunyuanImageVAE(info.config, dtype=compute, operations=operations)
    for name in list(model.state_dict()):
        module_name, _, leaf = name.rpartition(".")
        tensor = view.get(name).to(device=device, dtype=compute)
        setattr(model.get_submodule(module_name), leaf, nn.Parameter(tensor, requires_grad=False))
    left = [n for n, p in model.named_parameters() if p.is_meta]
    if left:
        raise VAECheckpointError(f"{file.path.name}: parameters left unfilled after loading: {left[:5]}")
    log.info("loaded %s: %s", file.path.name, info.describe())
    return model.eval()
