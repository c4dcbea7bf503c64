"""Read tensors from checkpoint files one at a time, without a second copy of the file in memory.

safetensors files are read with plain file reads (not mmap), so a tensor costs exactly its own bytes and the
file's pages never count against the process; ``.pt``/``.ckpt``/``.pth``/``.bin`` files are loaded with
``torch.load(weights_only=True)`` (data, never code). Both are reached through ``TensorFile``; ``open_checkpoint``
also opens ``.gguf`` files (``gguf_file.GGUFFile``, the same interface).
"""

from __future__ import annotations

import json
import math
import os
import pickle
import struct
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .errors import CheckpointError

if TYPE_CHECKING:
    from .gguf_file import GGUFFile

SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
MAX_HEADER = 100 * 1024 * 1024


class CheckpointFileError(CheckpointError):
    """The file cannot be read as a tensor checkpoint (wrong format, truncated, corrupt)."""


class TensorFile:
    """Uniform read access to the tensors of one checkpoint file: names, shapes, dtypes, and tensors."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointFileError(f"{self.path} does not exist or is not a file")
        self.size = self.path.stat().st_size
        self._meta: dict[str, tuple[torch.dtype, tuple[int, ...], int, int]] = {}
        self._tensors: dict[str, torch.Tensor] | None = None
        self.metadata: dict[str, str] = {}
        if self.path.suffix.lower() in PICKLE_SUFFIXES:
            self._tensors = _load_pickle(self.path)
        else:
            self._read_safetensors_header()

    def _read_safetensors_header(self) -> None:
        name = self.path.name
        with open(self.path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointFileError(
                    f"{name} is empty or truncated ({self.size} bytes; an interrupted download or copy): download it "
                    "again"
                )
            (length,) = struct.unpack("<Q", head)
            if length > min(MAX_HEADER, self.size - 8):
                raise CheckpointFileError(
                    f"{name} is not a safetensors file, or its header is cut off (header length {length}, file size "
                    f"{self.size}): download it again, or pick the model file itself"
                )
            try:
                header = json.loads(f.read(length))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise CheckpointFileError(
                    f"{name} has a corrupt safetensors header ({exc}): the file is damaged; download it again"
                ) from None
        data_start = 8 + length
        end = data_start
        for key, info in header.items():
            if key == "__metadata__":
                self.metadata = dict(info or {})
                continue
            try:
                dtype = SAFETENSORS_DTYPES[info["dtype"]]
                begin, stop = info["data_offsets"]
                shape = tuple(info["shape"])
            except (KeyError, TypeError, ValueError):
                raise CheckpointFileError(f"{name}: unsupported or corrupt entry for tensor {key!r}: {info}") from None
            if stop - begin != math.prod(shape) * dtype.itemsize:
                raise CheckpointFileError(f"{name}: tensor {key!r} has {stop - begin} bytes for shape {shape}")
            self._meta[key] = (dtype, shape, data_start + begin, stop - begin)
            end = max(end, data_start + stop)
        if end > self.size:
            raise CheckpointFileError(
                f"{name} is truncated: its header describes {end} bytes but the file has {self.size} "
                "(an interrupted download or copy); download it again"
            )

    def keys(self) -> list[str]:
        return list(self._tensors) if self._tensors is not None else list(self._meta)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __contains__(self, key: str) -> bool:
        return key in (self._tensors if self._tensors is not None else self._meta)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._tensors[key].shape) if self._tensors is not None else self._meta[key][1]

    def dtype(self, key: str) -> torch.dtype:
        return self._tensors[key].dtype if self._tensors is not None else self._meta[key][0]

    def get(self, key: str) -> torch.Tensor:
        """Read one tensor into its own memory."""
        if self._tensors is not None:
            return self._tensors[key]
        dtype, shape, offset, nbytes = self._meta[key]
        buffer = torch.empty(nbytes, dtype=torch.uint8)
        with open(self.path, "rb") as f:
            f.seek(offset)
            if f.readinto(memoryview(buffer.numpy())) != nbytes:
                raise CheckpointFileError(f"{self.path.name}: could not read tensor {key!r} (file truncated?)")
        return buffer.view(dtype).reshape(shape)

    def items(self) -> Iterator[tuple[str, torch.Tensor]]:
        for key in self.keys():
            yield key, self.get(key)


def open_checkpoint(
    path: str | os.PathLike,
    what: str,
    error: type[CheckpointError],
    folder_files: Sequence[str] = (),
    kind: str = "model",
) -> TensorFile | GGUFFile:
    """Open one checkpoint as ``what`` (e.g. "a HunyuanImage-2.1 VAE"); a folder is searched for ``folder_files``
    (diffusers' saved names, when given; ``kind`` names them, e.g. "VAE"). Every failure becomes ``error`` naming
    the file and what was expected, so each loader's callers catch one exception type.
    """
    path = Path(path)
    if folder_files and path.is_dir():
        found = next((path / n for n in folder_files if (path / n).is_file()), None)
        if found is None:
            raise error(f"no {kind} weights in folder {path} (looked for {', '.join(folder_files)}; expected {what})")
        path = found
    try:
        if path.suffix.lower() == ".gguf":
            from .gguf_file import GGUFFile  # imports this module

            return GGUFFile(path)
        return TensorFile(path)
    except CheckpointFileError as exc:  # each message already says what to do
        raise error(f"cannot read {path.name} as {what}: {exc}") from None


def _torch_load(path: Path) -> object:
    """``torch.load`` as data only; memory-mapped where the file is in torch's zip format, read whole where it is
    in the older format (which cannot be mapped)."""
    if zipfile.is_zipfile(path):
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return torch.load(path, map_location="cpu", weights_only=True)


def _load_pickle(path: Path) -> dict[str, torch.Tensor]:
    """A pickled checkpoint's tensors, found under the usual wrapper keys; data only (``weights_only=True``)."""
    try:
        obj = _torch_load(path)
    except pickle.UnpicklingError:  # weights_only met something other than tensors and plain containers
        raise CheckpointFileError(
            f"{path.name} is a pickle that holds Python objects besides tensors; it was not opened, since unpickling "
            "such objects can run code: use the .safetensors release of this file"
        ) from None
    except Exception as exc:  # torch raises many types for foreign or damaged files
        raise CheckpointFileError(
            f"{path.name} cannot be read as a PyTorch checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
            "it is truncated or damaged (an interrupted download?) or not a checkpoint at all: download it again"
        ) from None
    for wrapper in ("state_dict", "module", "model", "ema"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict):
        raise CheckpointFileError(
            f"{path.name} holds a {type(obj).__name__}, not a dict of tensors: it is not a model checkpoint; pick the "
            "model's weights file"
        )
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
