"""The one place that decides what a refiner VAE checkpoint is, and loads it.

Two naming schemes exist. Tencent's ``vae_refiner/pytorch_model.pt`` (an fp32 pickle: a bare state dict or one
under ``state_dict``, possibly with a prefix such as ``vae.``) and Comfy-Org's
``hunyuan_image_refiner_vae_fp16.safetensors`` use the official module names, which are also ours: ``ORIGINAL``.
ComfyUI wraps the ResnetBlocks' 1x1 shortcut in a module of its own, so files it saves may spell
``nin_shortcut.conv.weight`` for ``nin_shortcut.weight``; both are read. diffusers'
``AutoencoderKLHunyuanImageRefiner`` renames the containers (``down_blocks.{i}.resnets.{j}``, ``mid_block``,
``to_q``...): ``DIFFUSERS``. The config comes from shapes alone, so tiny test files take the same path as the
5 GB ones. Loading builds the model on the meta device and fills each parameter straight from the file
(``checkpoints.meta``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from ..checkpoints.complete import damaged
from ..checkpoints.errors import CheckpointError
from ..checkpoints.files import TensorFile
from ..checkpoints.identify import describe_checkpoint, describe_foreign_vae, describe_full_checkpoint
from ..checkpoints.meta import meta_shapes
from ..checkpoints.vae_layouts import DIFFUSERS, LEAF_NAMES, ORIGINAL, VAEFormat, VAELoader, diffusers_mid_name
from ..checkpoints.views import NamedView, names_under, prefix_before
from ..vae.checkpoint import inspect_vae
from ..variants import REFINER_VAE_FILE
from .config import RefinerVAEConfig
from .model import RefinerVAE

__all__ = [
    "DIFFUSERS",
    "ORIGINAL",
    "RefinerVAECheckpointError",
    "RefinerVAECheckpointInfo",
    "comfy_name",
    "diffusers_name",
    "expected_shapes",
    "inspect_refiner_vae",
    "load_refiner_vae",
]

MODEL = "HunyuanImage-2.1 refiner VAE"
WHAT = f"a {MODEL}"
EXPECTED = (
    f"Expected the {MODEL} (32 latent channels, 16x, causal 3-D): Tencent's {REFINER_VAE_FILE.official}, "
    f"Comfy-Org's {REFINER_VAE_FILE.name} or a diffusers AutoencoderKLHunyuanImageRefiner (its vae folder)"
)
STAGE1_FIX = "load it with the HunyuanImage 2.1 VAE Loader (this loader is for the refiner's 16x VAE)"


class RefinerVAECheckpointError(CheckpointError):
    """The file is not a (complete) HunyuanImage-2.1 refiner VAE; the message says what it appears to be."""


FORMAT = VAEFormat(
    MODEL, RefinerVAECheckpointError, "decoder.conv_in.conv.weight", REFINER_VAE_FILE.name, REFINER_VAE_FILE.folder
)


@dataclass(frozen=True)
class RefinerVAECheckpointInfo:
    path: Path
    layout: str
    prefix: str
    config: RefinerVAEConfig
    weight_dtype: torch.dtype
    wrapped_shortcuts: bool = False  # ComfyUI's ``nin_shortcut.conv.*`` spelling

    def describe(self) -> str:
        c = self.config
        return (
            f"HunyuanImage-2.1 refiner VAE, {self.layout} layout"
            + (f" (prefix {self.prefix!r})" if self.prefix else "")
            + (", ComfyUI shortcut names" if self.wrapped_shortcuts else "")
            + f", {str(self.weight_dtype).replace('torch.', '')} weights, {c.latent_channels} latent channels, "
            f"{c.spatial_compression}x spatial / {c.temporal_compression}x temporal, "
            f"widths {list(c.block_out_channels)}"
        )


# --- names -------------------------------------------------------------------------------------------------------


def diffusers_name(name: str) -> str:
    """diffusers' name for one of our (= official) parameter names; unlike the stage-1 VAE, config-independent."""
    side, rest = name.split(".", 1)
    if m := re.fullmatch(r"(down|up)\.(\d+)\.block\.(\d+)\.(\w+)\.(.+)", rest):
        return f"{side}.{m[1]}_blocks.{m[2]}.resnets.{m[3]}.{LEAF_NAMES.get(m[4], m[4])}.{m[5]}"
    if m := re.fullmatch(r"(down|up)\.(\d+)\.(downsample|upsample)\.(.+)", rest):
        return f"{side}.{m[1]}_blocks.{m[2]}.{m[3]}rs.0.{m[4]}"
    return diffusers_mid_name(side, rest) or name  # conv_in, norm_out, conv_out keep their names


def comfy_name(name: str) -> str:
    """ComfyUI's spelling of a name: its ResnetBlock shortcut is a module holding the ``Conv3d`` as ``conv``."""
    return name.replace(".nin_shortcut.", ".nin_shortcut.conv.")


def expected_shapes(config: RefinerVAEConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter of the model for ``config``, by our name, without allocating anything."""
    return meta_shapes(lambda: RefinerVAE(config))


# --- detection ---------------------------------------------------------------------------------------------------

_ANCHOR = re.compile(r"^(|.*\.)decoder\.conv_in\.conv\.weight$")
_STAGE1_ANCHOR = re.compile(r"^(|.*\.)decoder\.conv_in\.weight$")


def _not_ours(file: TensorFile, what: str) -> RefinerVAECheckpointError:
    return RefinerVAECheckpointError(f"{file.path.name} is not {WHAT}: it appears to be {what}. {EXPECTED}.")


def _what_else(file: TensorFile, keys: list[str]) -> str:
    """Name a file without the refiner's anchor: the stage-1 VAE, another 2-D VAE, or whatever ``identify`` says."""
    full = describe_full_checkpoint(keys)
    if full:
        return full
    prefix = prefix_before(keys, _STAGE1_ANCHOR)
    if prefix is None:
        return describe_checkpoint(keys, file.shape)
    try:
        stage1 = inspect_vae(file.path)
    except ValueError:  # VAECheckpointError and anything else the stage-1 loader refuses with: not a stage-1 VAE
        stage1 = None
    if stage1 is not None:
        c = stage1.config
        what = f"{c.latent_channels} latent channels, {c.spatial_compression}x"
        return f"the HunyuanImage-2.1 stage-1 VAE ({what}); {STAGE1_FIX}"
    foreign = describe_foreign_vae(names_under(keys, prefix), file.shape, prefix)
    if foreign:
        return foreign
    latent = file.shape(prefix + "decoder.conv_in.weight")[1]
    if latent == 64:
        return f"the HunyuanImage-2.1 stage-1 VAE (64 latent channels, apparently incomplete); {STAGE1_FIX}"
    return f"a 2-D VAE of another model ({latent} latent channels)"


def _resolve(file: TensorFile) -> tuple[NamedView, str, bool]:
    """(view under our names, layout, ComfyUI shortcut spelling?) of a refiner VAE file; refuse anything else."""
    keys = file.keys()
    prefix = prefix_before(keys, _ANCHOR)
    if prefix is None:
        raise _not_ours(file, _what_else(file, keys))
    names = names_under(keys, prefix)
    anchor = file.shape(prefix + "decoder.conv_in.conv.weight")
    latent = anchor[1] if len(anchor) == 5 else None
    if latent is None:
        raise _not_ours(file, f"a VAE whose decoder.conv_in.conv.weight is {len(anchor)}-D (not a 3-D convolution)")
    if not any(n.endswith(".gamma") for n in names):
        # The refiner's family (HunyuanVideo-1.5's VAE design) normalises with RMS ``gamma``s; HunyuanVideo's
        # first VAE and other causal video VAEs use GroupNorm weight/bias pairs under the same conv names.
        raise _not_ours(
            file, f"a causal 3-D video VAE with GroupNorm layers, such as HunyuanVideo's ({latent} latent channels)"
        )
    if "encoder.down.0.block.0.conv1.conv.weight" in names:
        layout = ORIGINAL
    elif "encoder.down_blocks.0.resnets.0.conv1.conv.weight" in names:
        layout = DIFFUSERS
    else:
        raise damaged(
            RefinerVAECheckpointError, file_name=file.path.name, what=f"{WHAT} (unknown layout)",
            detail="no first encoder ResnetBlock under official or diffusers names", fix=FORMAT.fix,
        )  # fmt: skip
    wrapped = layout == ORIGINAL and any(".nin_shortcut.conv." in n for n in names)
    rename = diffusers_name if layout == DIFFUSERS else comfy_name if wrapped else str
    return NamedView(file, prefix, rename), layout, wrapped


def _count(view: NamedView, pattern: str) -> int:
    """How many consecutive indices ``i`` from 0 have ``pattern.format(i)`` in the file."""
    n = 0
    while view.has(pattern.format(n)):
        n += 1
    return n


def _detect_config(view: NamedView) -> RefinerVAEConfig:
    """Levels, widths, blocks and resampling from the encoder's shapes; the rest from the stem and head convs."""
    levels = _count(view, "encoder.down.{}.block.0.conv1.conv.weight")
    layers = _count(view, "encoder.down.0.block.{}.conv1.conv.weight")
    widths = [view.shape(f"encoder.down.{i}.block.{layers - 1}.conv2.conv.weight")[0] for i in range(levels)]
    resamples = _count(view, "encoder.down.{}.downsample.conv.conv.weight")
    if any(view.has(f"encoder.down.{i}.downsample.conv.conv.weight") for i in range(resamples, levels)):
        raise ValueError("downsamplers are not all at the first levels")
    temporal = []
    for i in range(resamples):
        emitted = view.shape(f"encoder.down.{i}.downsample.conv.conv.weight")[0]
        fold = widths[i + 1] // emitted if widths[i + 1] % emitted == 0 else None
        if fold not in (4, 8):
            raise ValueError(f"downsampler {i} emits {emitted} channels for a next width of {widths[i + 1]}")
        temporal.append(fold == 8)
    steps = sum(temporal)
    if temporal != [i >= resamples - steps for i in range(resamples)]:
        raise ValueError(f"temporal downsamplers {temporal} are not the last ones")
    return RefinerVAEConfig(
        in_channels=view.shape("encoder.conv_in.conv.weight")[1],
        out_channels=view.shape("decoder.conv_out.conv.weight")[0],
        latent_channels=view.shape("encoder.conv_out.conv.weight")[0] // 2,
        block_out_channels=tuple(widths),
        layers_per_block=layers,
        spatial_compression=2**resamples,
        temporal_compression=2**steps,
    )


def _inspect(file: TensorFile) -> tuple[RefinerVAECheckpointInfo, NamedView]:
    view, layout, wrapped = _resolve(file)
    config, view, dtype = FORMAT.checked(file, layout, lambda: _detect_config(view), lambda _: view, expected_shapes)
    return RefinerVAECheckpointInfo(file.path, layout, view.prefix, config, dtype, wrapped), view


# The public pair, written once for both VAEs (``checkpoints.vae_layouts.VAELoader``):
# inspect(path) -> info; load(path, dtype=None, device="cpu", operations=nn) -> model.
LOADER: VAELoader[RefinerVAECheckpointInfo, RefinerVAE] = VAELoader(FORMAT, _inspect, RefinerVAE)
inspect_refiner_vae = LOADER.inspect
load_refiner_vae = LOADER.load
