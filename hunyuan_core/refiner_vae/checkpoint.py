"""The one place that decides what a refiner VAE checkpoint is, and loads it.

Two naming schemes exist. Tencent's ``vae_refiner/pytorch_model.pt`` (an fp32 pickle: a bare state dict or one
under ``state_dict``, possibly with a prefix such as ``vae.``) and Comfy-Org's
``hunyuan_image_refiner_vae_fp16.safetensors`` use the official module names, which are also ours: ``ORIGINAL``.
ComfyUI wraps the ResnetBlocks' 1x1 shortcut in a module of its own, so files it saves may spell
``nin_shortcut.conv.weight`` for ``nin_shortcut.weight``; both are read. diffusers'
``AutoencoderKLHunyuanImageRefiner`` renames the containers (``down_blocks.{i}.resnets.{j}``, ``mid_block``,
``to_q``...): ``DIFFUSERS``. The config comes from shapes alone, so tiny test files take the same path as the
5 GB ones. Loading builds the model on the meta device and fills each parameter straight from the file.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from ..identify import describe_checkpoint
from ..tensor_files import PICKLE_SUFFIXES, CheckpointFileError, TensorFile
from ..vae.checkpoint import FOLDER_FILES, inspect_vae
from ..vae.checkpoint import _foreign_vae as _foreign_2d_vae  # names SD/SDXL/Flux VAEs; one place for that
from .config import RefinerVAEConfig
from .model import RefinerVAE

log = logging.getLogger(__name__)

ORIGINAL = "original"
DIFFUSERS = "diffusers"
EXPECTED = (
    "Expected the HunyuanImage-2.1 refiner VAE (32 latent channels, 16x, causal 3-D): Tencent's "
    "vae_refiner/pytorch_model.pt, Comfy-Org's hunyuan_image_refiner_vae_fp16.safetensors or a diffusers "
    "AutoencoderKLHunyuanImageRefiner (its vae folder)"
)
STAGE1_FIX = "load it with the HunyuanImage 2.1 VAE Loader (this loader is for the refiner's 16x VAE)"


class RefinerVAECheckpointError(ValueError):
    """The file is not a (complete) HunyuanImage-2.1 refiner VAE; the message says what it appears to be."""


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

_MID = {"block_1": "resnets.0", "block_2": "resnets.1", "attn_1": "attentions.0"}
_LEAF = {"nin_shortcut": "conv_shortcut", "q": "to_q", "k": "to_k", "v": "to_v"}


def diffusers_name(name: str) -> str:
    """diffusers' name for one of our (= official) parameter names; unlike the stage-1 VAE, config-independent."""
    side, rest = name.split(".", 1)
    if m := re.fullmatch(r"(down|up)\.(\d+)\.block\.(\d+)\.(\w+)\.(.+)", rest):
        return f"{side}.{m[1]}_blocks.{m[2]}.resnets.{m[3]}.{_LEAF.get(m[4], m[4])}.{m[5]}"
    if m := re.fullmatch(r"(down|up)\.(\d+)\.(downsample|upsample)\.(.+)", rest):
        return f"{side}.{m[1]}_blocks.{m[2]}.{m[3]}rs.0.{m[4]}"
    if m := re.fullmatch(r"mid\.(block_1|block_2|attn_1)\.(\w+)\.(.+)", rest):
        return f"{side}.mid_block.{_MID[m[1]]}.{_LEAF.get(m[2], m[2])}.{m[3]}"
    return name  # conv_in, norm_out, conv_out


def comfy_name(name: str) -> str:
    """ComfyUI's spelling of a name: its ResnetBlock shortcut is a module holding the ``Conv3d`` as ``conv``."""
    return name.replace(".nin_shortcut.", ".nin_shortcut.conv.")


def expected_shapes(config: RefinerVAEConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter of the model for ``config``, by our name, without allocating anything."""
    with torch.device("meta"):
        model = RefinerVAE(config)
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


class _View:
    """The refiner VAE's tensors in a file under our names, whatever the layout, prefix and shortcut spelling."""

    def __init__(self, file: TensorFile, layout: str, prefix: str, wrapped_shortcuts: bool) -> None:
        self.file = file
        self.layout = layout
        self.prefix = prefix
        self.wrapped_shortcuts = wrapped_shortcuts

    def key(self, name: str) -> str:
        if self.layout == DIFFUSERS:
            name = diffusers_name(name)
        elif self.wrapped_shortcuts:
            name = comfy_name(name)
        return self.prefix + name

    def has(self, name: str) -> bool:
        return self.key(name) in self.file

    def shape(self, name: str) -> tuple[int, ...]:
        return self.file.shape(self.key(name))

    def get(self, name: str) -> torch.Tensor:
        return self.file.get(self.key(name))


# --- detection ---------------------------------------------------------------------------------------------------

_ANCHOR = re.compile(r"^(|.*\.)decoder\.conv_in\.conv\.weight$")
_STAGE1_ANCHOR = re.compile(r"^(|.*\.)decoder\.conv_in\.weight$")


def _prefix(keys: list[str], anchor: re.Pattern) -> str | None:
    """What comes before the anchor key (``vae.`` in some official files, nothing in Comfy-Org's)."""
    return next((m[1] for k in keys if (m := anchor.match(k))), None)


def _not_ours(file: TensorFile, what: str) -> RefinerVAECheckpointError:
    return RefinerVAECheckpointError(
        f"{file.path.name} is not a HunyuanImage-2.1 refiner VAE: it appears to be {what}. {EXPECTED}."
    )


def _damaged(file: TensorFile, layout: str, detail: str) -> RefinerVAECheckpointError:
    return RefinerVAECheckpointError(
        f"{file.path.name} looks like a HunyuanImage-2.1 refiner VAE ({layout} layout) but its tensors do not form "
        f"one ({detail}); the file is incomplete or damaged. Re-download it."
    )


def _what_else(file: TensorFile, keys: list[str]) -> str:
    """Name a file without the refiner's anchor: the stage-1 VAE, another 2-D VAE, or whatever ``identify`` says."""
    prefix = _prefix(keys, _STAGE1_ANCHOR)
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
    names = {k[len(prefix) :] for k in keys if k.startswith(prefix)}
    foreign = _foreign_2d_vae(names, file.shape, prefix)
    if foreign:
        return foreign
    latent = file.shape(prefix + "decoder.conv_in.weight")[1]
    if latent == 64:
        return f"the HunyuanImage-2.1 stage-1 VAE (64 latent channels, apparently incomplete); {STAGE1_FIX}"
    return f"a 2-D VAE of another model ({latent} latent channels)"


def _resolve(file: TensorFile) -> _View:
    keys = file.keys()
    prefix = _prefix(keys, _ANCHOR)
    if prefix is None:
        raise _not_ours(file, _what_else(file, keys))
    names = {k[len(prefix) :] for k in keys if k.startswith(prefix)}
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
        raise _damaged(file, "unknown", "no first encoder ResnetBlock under official or diffusers names")
    wrapped = layout == ORIGINAL and any(".nin_shortcut.conv." in n for n in names)
    return _View(file, layout, prefix, wrapped)


def _count(view: _View, pattern: str) -> int:
    """How many consecutive indices ``i`` from 0 have ``pattern.format(i)`` in the file."""
    n = 0
    while view.has(pattern.format(n)):
        n += 1
    return n


def _detect_config(view: _View) -> RefinerVAEConfig:
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


def _check_complete(view: _View, config: RefinerVAEConfig) -> None:
    missing, wrong = [], []
    for name, shape in expected_shapes(config).items():
        if not view.has(name):
            missing.append(view.key(name))
        elif view.shape(name) != shape:
            wrong.append(f"{view.key(name)}: file {view.shape(name)}, expected {shape}")
    if missing or wrong:
        detail = []
        if missing:
            detail.append(f"{len(missing)} tensors missing (e.g. {', '.join(missing[:3])})")
        if wrong:
            detail.append(f"{len(wrong)} with unexpected shapes (e.g. {wrong[0]})")
        raise RefinerVAECheckpointError(
            f"{view.file.path.name} is an incomplete or inconsistent HunyuanImage-2.1 refiner VAE ({view.layout} "
            f"layout): {'; '.join(detail)}. Re-download the file."
        )


def _open(path: str | Path) -> TensorFile:
    path = Path(path)
    if path.is_dir():
        found = next((path / n for n in FOLDER_FILES if (path / n).is_file()), None)
        if found is None:
            raise RefinerVAECheckpointError(f"no VAE weights in folder {path} (looked for {', '.join(FOLDER_FILES)})")
        path = found
    try:
        return TensorFile(path)
    except CheckpointFileError as exc:
        hint = ""
        if path.suffix.lower() in PICKLE_SUFFIXES and "truncated" not in str(exc):
            hint = " It appears to be truncated or damaged (an interrupted download?); download it again."
        raise RefinerVAECheckpointError(
            f"cannot read {path.name} as a HunyuanImage-2.1 refiner VAE: {exc}.{hint}"
        ) from None


def _inspect(file: TensorFile) -> tuple[RefinerVAECheckpointInfo, _View]:
    view = _resolve(file)
    try:
        config = _detect_config(view)
    except (KeyError, IndexError, ValueError) as exc:
        raise _damaged(file, view.layout, str(exc)) from None
    _check_complete(view, config)
    dtype = view.file.dtype(view.key("decoder.conv_in.conv.weight"))
    info = RefinerVAECheckpointInfo(file.path, view.layout, view.prefix, config, dtype, view.wrapped_shortcuts)
    return info, view


def inspect_refiner_vae(path: str | Path) -> RefinerVAECheckpointInfo:
    """Identify a refiner VAE file (or diffusers ``vae`` folder) from keys and shapes; raise if it is not one."""
    return _inspect(_open(path))[0]


def load_refiner_vae(
    path: str | Path,
    dtype: torch.dtype | None = None,
    device: torch.device | str = "cpu",
    operations: SimpleNamespace = nn,
) -> RefinerVAE:
    """Load any supported refiner VAE file. ``dtype=None`` keeps the file's dtype (fp32 official, fp16 Comfy-Org)."""
    file = _open(path)
    info, view = _inspect(file)
    compute = dtype or info.weight_dtype
    with torch.device("meta"):
        model = RefinerVAE(info.config, dtype=compute, operations=operations)
    for name in list(model.state_dict()):
        module_name, _, leaf = name.rpartition(".")
        tensor = view.get(name).to(device=device, dtype=compute)
        setattr(model.get_submodule(module_name), leaf, nn.Parameter(tensor, requires_grad=False))
    left = [n for n, p in model.named_parameters() if p.is_meta]
    if left:
        raise RefinerVAECheckpointError(f"{file.path.name}: parameters left unfilled after loading: {left[:5]}")
    log.info("loaded %s: %s", file.path.name, info.describe())
    return model.eval()
