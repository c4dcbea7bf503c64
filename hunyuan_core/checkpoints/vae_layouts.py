"""Checkpoint naming shared by HunyuanImage-2.1's two VAEs (stage 1 and refiner), written once.

Both are released under the official module names (``encoder.down.{i}.block.{j}``, ``mid.block_1``,
``mid.attn_1``), which this package's modules also use: ``ORIGINAL``. diffusers renames the containers
(``down_blocks``, ``mid_block.resnets.0``, ``attentions.0``) and a few leaves (``to_q``, ``conv_shortcut``):
``DIFFUSERS``. Both loaders accept a diffusers ``vae`` folder and look for the same saved file names in it, and
both go the same way from a file to a model (``VAEFormat``): detect the config from shapes, check the file holds
every tensor, then build on the meta device and fill from the file. Their public ``inspect``/``load`` pair, with
the same arguments for both, is ``VAELoader``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Generic, TypeVar

import torch
from torch import nn

from .complete import detect_or_damaged, redownload, require_complete
from .errors import CheckpointError
from .files import TensorFile, open_checkpoint
from .meta import build_and_load
from .views import NamedView

log = logging.getLogger(__name__)

ConfigT = TypeVar("ConfigT")
M = TypeVar("M", bound=nn.Module)
InfoT = TypeVar("InfoT")  # a loader's info dataclass; it has ``weight_dtype``

ORIGINAL = "original"
DIFFUSERS = "diffusers"
FOLDER_FILES = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.bin",
    "pytorch_model.ckpt",
    "pytorch_model.pt",
    "model.safetensors",
)

MID_NAMES = {"block_1": "resnets.0", "block_2": "resnets.1", "attn_1": "attentions.0"}
LEAF_NAMES = {"nin_shortcut": "conv_shortcut", "q": "to_q", "k": "to_k", "v": "to_v"}


def diffusers_mid_name(side: str, rest: str, leaves: Mapping[str, str] = LEAF_NAMES) -> str | None:
    """diffusers' name for a mid-block parameter (``rest`` follows ``encoder.``/``decoder.``), else None."""
    if m := re.fullmatch(r"mid\.(block_1|block_2|attn_1)\.(\w+)\.(.+)", rest):
        return f"{side}.mid_block.{MID_NAMES[m[1]]}.{leaves.get(m[2], m[2])}.{m[3]}"
    return None


@dataclass(frozen=True)
class VAEFormat(Generic[ConfigT]):
    """One VAE's checkpoint facts (its name, error class, anchor tensor, released file) and the steps both share."""

    model: str  # e.g. "HunyuanImage-2.1 stage-1 VAE"
    error: type[CheckpointError]
    anchor: str  # a tensor every layout has under our name; its dtype is the file's weight dtype
    file_name: str  # the released file to fetch again when one is damaged
    folder: str  # the ComfyUI models folder it goes in

    @property
    def what(self) -> str:
        return f"a {self.model}"

    @property
    def fix(self) -> str:
        return redownload([self.file_name], self.folder)

    def open(self, path: str | os.PathLike) -> TensorFile:
        """The file, or the weights file of a diffusers ``vae`` folder."""
        return open_checkpoint(path, self.what, self.error, FOLDER_FILES, "VAE")

    def checked(
        self,
        file: TensorFile,
        layout: str,
        detect: Callable[[], ConfigT],
        view_of: Callable[[ConfigT], NamedView],
        expected: Callable[[ConfigT], Mapping[str, tuple[int, ...]]],
    ) -> tuple[ConfigT, NamedView, torch.dtype]:
        """(config, view, weight dtype) of an identified file: detected from shapes, then checked complete."""
        name = file.path.name
        config = detect_or_damaged(
            detect, error=self.error, file_name=name, what=f"{self.what} ({layout} layout)", fix=self.fix
        )
        view = view_of(config)
        require_complete(
            expected(config), view.has, view.shape, key=view.key, error=self.error, file_name=name,
            what=f"{self.model} ({layout} layout)", fix=self.fix,
        )  # fmt: skip
        return config, view, file.dtype(view.key(self.anchor))


@dataclass(frozen=True)
class VAELoader(Generic[InfoT, M]):
    """The public ``inspect``/``load`` pair of one VAE checkpoint module.

    Both VAEs take the same arguments and the same steps from a path to a model, so the pair is written once and
    each module binds it (``load_vae = LOADER.load``); only ``inspect_file`` (identify and check an opened file)
    and the model class differ.
    """

    format: VAEFormat
    inspect_file: Callable[[TensorFile], tuple[InfoT, NamedView]]
    model: Callable[..., M]  # called as model(config, dtype=..., operations=...)

    def inspect(self, path: str | os.PathLike) -> InfoT:
        """Identify a VAE file (or diffusers ``vae`` folder) from keys and shapes; raise the VAE's error if it is
        not one."""
        return self.inspect_file(self.format.open(path))[0]

    def load(
        self,
        path: str | os.PathLike,
        dtype: torch.dtype | None = None,
        device: torch.device | str = "cpu",
        operations: SimpleNamespace = nn,
    ) -> M:
        """Load any supported file of this VAE: built on the meta device, then filled from the file.

        ``dtype=None`` keeps the file's dtype (fp32 in Tencent's files, fp16 in Comfy-Org's).
        """
        info, view = self.inspect_file(self.format.open(path))
        compute = dtype or info.weight_dtype
        model = build_and_load(
            lambda ops: self.model(info.config, dtype=compute, operations=ops), operations, view.get, dtype=compute,
            device=device, error=self.format.error, file_name=view.file.path.name,
        )  # fmt: skip
        log.info("loaded %s: %s", info.path.name, info.describe())
        return model
