"""The one place that decides what a stage-1 VAE checkpoint is, and loads it.

Two naming schemes exist. The official ``vae/vae_2_1/pytorch_model.ckpt`` (a pickled ``state_dict``, keys
prefixed ``vae.``, some conv weights stored 5-D with T=1) and Comfy-Org's ``hunyuan_image_2.1_vae_fp16.safetensors``
use the same module names (ComfyUI's ``hunyuan_video/vae.py`` reuses them): ``ORIGINAL``, which are also ours.
diffusers' ``AutoencoderKLHunyuanImage`` flattens each level into one list and renames a few leaves: ``DIFFUSERS``.
The config comes from shapes alone, so tiny test files take the same path as the 1.6 GB ones. Loading builds the
model on the meta device and fills each parameter straight from the file (``checkpoints.meta``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from ..checkpoints.errors import CheckpointError
from ..checkpoints.files import TensorFile
from ..checkpoints.identify import describe_checkpoint, describe_foreign_vae, describe_full_checkpoint
from ..checkpoints.meta import meta_shapes
from ..checkpoints.vae_layouts import (
    DIFFUSERS,
    FOLDER_FILES,
    LEAF_NAMES,
    ORIGINAL,
    VAEFormat,
    VAELoader,
    diffusers_mid_name,
)
from ..checkpoints.views import NamedView, names_under, prefix_before
from ..variants import STAGE1_VAE_FILE
from .config import VAEConfig
from .model import HunyuanImageVAE

__all__ = [
    "DIFFUSERS",
    "FOLDER_FILES",
    "ORIGINAL",
    "VAECheckpointError",
    "VAECheckpointInfo",
    "diffusers_name",
    "expected_shapes",
    "inspect_vae",
    "load_vae",
]

MODEL = "HunyuanImage-2.1 stage-1 VAE"
WHAT = f"a {MODEL}"
EXPECTED = (
    f"Expected the HunyuanImage-2.1 stage-1 VAE (64 latent channels, 32x): the official {STAGE1_VAE_FILE.official}, "
    f"Comfy-Org's {STAGE1_VAE_FILE.name} or a diffusers AutoencoderKLHunyuanImage"
)


class VAECheckpointError(CheckpointError):
    """The file is not a (complete) HunyuanImage-2.1 stage-1 VAE; the message says what it appears to be."""


FORMAT = VAEFormat(MODEL, VAECheckpointError, "decoder.conv_in.weight", STAGE1_VAE_FILE.name, STAGE1_VAE_FILE.folder)


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

_LEAF = {**LEAF_NAMES, "proj_out": "proj"}  # stage 1's attention output is a 1x1 conv named ``proj`` in diffusers


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
    return diffusers_mid_name(side, rest, _LEAF) or name  # conv_in, norm_out, conv_out keep their names


def expected_shapes(config: VAEConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter of the model for ``config``, by our name, without allocating anything."""
    return meta_shapes(lambda: HunyuanImageVAE(config))


def _fit_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Stored shape -> model shape: official 5-D convs with T=1 lose T; Linear-style 1x1 attention gains 1x1."""
    if len(shape) == 5 and shape[2] == 1:
        return shape[:2] + shape[3:]
    if len(shape) == 2:
        return (*shape, 1, 1)
    return shape


def _view(file: TensorFile, layout: str, prefix: str, config: VAEConfig | None = None) -> NamedView:
    """The file under our names; diffusers names depend on the config, so that view needs it."""
    rename = partial(diffusers_name, config=config) if layout == DIFFUSERS and config is not None else str
    return NamedView(file, prefix, rename, _fit_shape)


# --- detection ---------------------------------------------------------------------------------------------------

_ANCHOR = re.compile(r"^(|.*\.)decoder\.conv_in\.weight$")
_ANCHOR_3D = re.compile(r"^(|.*\.)decoder\.conv_in\.conv\.weight$")


def _indices(names: set[str], pattern: str) -> list[int]:
    return sorted({int(m[1]) for n in names if (m := re.match(pattern, n))})


def _layout(names: set[str]) -> str | None:
    if "encoder.down.0.block.0.conv1.weight" in names:
        return ORIGINAL
    if "encoder.down_blocks.0.conv1.weight" in names:
        return DIFFUSERS
    return None


def _not_ours(file: TensorFile, what: str) -> VAECheckpointError:
    return VAECheckpointError(f"{file.path.name} is not {WHAT}: it appears to be {what}. {EXPECTED}.")


def _resolve(file: TensorFile) -> tuple[str, str, set[str]]:
    """(layout, prefix, names without the prefix) of a stage-1 VAE file; refuse anything else, naming it."""
    keys = file.keys()
    full = describe_full_checkpoint(keys)
    if full:  # its VAE part would be found below, and named as if the file were only a VAE
        raise _not_ours(file, full)
    prefix = prefix_before(keys, _ANCHOR)
    if prefix is None:
        prefix = prefix_before(keys, _ANCHOR_3D) or ""
    names = names_under(keys, prefix)
    foreign = describe_foreign_vae(names, file.shape, prefix)
    if foreign:
        raise _not_ours(file, foreign)
    layout = _layout(names)
    if layout is None or "decoder.conv_in.weight" not in names:
        raise _not_ours(file, describe_checkpoint(keys, file.shape))
    return layout, prefix, names


def _levels_original(names: set[str], view: NamedView, side: str, stage: str) -> list[tuple[int, bool]]:
    """(width, resamples?) for each level of one side, from official names."""
    levels = []
    for i in _indices(names, rf"{side}\.{stage}\.(\d+)\."):
        last = max(_indices(names, rf"{side}\.{stage}\.{i}\.block\.(\d+)\."))
        width = view.shape(f"{side}.{stage}.{i}.block.{last}.conv2.weight")[0]
        resamples = f"{side}.{stage}.{i}.{'downsample' if stage == 'down' else 'upsample'}.conv.weight" in names
        levels.append((width, resamples))
    return levels


def _config_original(names: set[str], view: NamedView) -> VAEConfig:
    levels = _levels_original(names, view, "encoder", "down")
    return _config(view, [w for w, _ in levels], len(_indices(names, r"encoder\.down\.0\.block\.(\d+)\.")),
                   sum(r for _, r in levels))  # fmt: skip


def _config_diffusers(names: set[str], view: NamedView) -> VAEConfig:
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


def _config(view: NamedView, widths: list[int], layers: int, resamples: int) -> VAEConfig:
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


def _inspect(file: TensorFile) -> tuple[VAECheckpointInfo, NamedView]:
    layout, prefix, names = _resolve(file)
    detect = _config_original if layout == ORIGINAL else _config_diffusers
    config, view, dtype = FORMAT.checked(
        file, layout, lambda: detect(names, _view(file, layout, prefix)), partial(_view, file, layout, prefix),
        expected_shapes,
    )  # fmt: skip
    return VAECheckpointInfo(file.path, layout, prefix, config, dtype), view


# The public pair, written once for both VAEs (``checkpoints.vae_layouts.VAELoader``):
# inspect(path) -> info; load(path, dtype=None, device="cpu", operations=nn) -> model.
LOADER: VAELoader[VAECheckpointInfo, HunyuanImageVAE] = VAELoader(FORMAT, _inspect, HunyuanImageVAE)
inspect_vae = LOADER.inspect
load_vae = LOADER.load
