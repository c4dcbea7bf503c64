"""Read GGUF checkpoints (city96's / QuantStack's image-model files and llama.cpp's language models) one tensor at a
time, with the same interface as ``TensorFile``.

The header (metadata and tensor table) is parsed by the ``gguf`` package. Tensor bytes are then read with plain file
reads, like safetensors in ``files``: each tensor costs exactly its own bytes and the file's mapped pages never count
against the process, so loading a GGUF needs about its own size in RAM. Float types (F32, F16, BF16) come back as
ordinary tensors; block-quantized types come back as ``GGMLWeight`` (the raw bytes, the type and the shape), which
stay quantized in memory and are dequantized per layer at compute time.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import torch

from .files import CheckpointFileError
from .gguf_quants import GGML_BLOCKS, GGML_TYPE_NAMES, GGUFDataError, block_of, dequantize

FLOAT_TYPES = {0: torch.float32, 1: torch.float16, 30: torch.bfloat16}


class GGMLWeight(NamedTuple):
    """A block-quantized GGUF tensor: its bytes as rows (one row per output row of the weight), type and shape."""

    data: torch.Tensor  # uint8, [shape[:-1]..., bytes per row]
    ggml_type: int
    shape: tuple[int, ...]  # torch order: the last dimension is the blocked one

    @property
    def type_name(self) -> str:
        return block_of(self.ggml_type).name

    def dequantized(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return dequantize(self.data, self.ggml_type, self.shape, dtype)

    def rows(self, order: torch.Tensor | slice) -> GGMLWeight:
        """Rows of the first dimension (each row is whole blocks, so rows move as bytes without dequantizing)."""
        data = self.data.reshape(self.shape[0], -1)[order]
        return GGMLWeight(data.contiguous(), self.ggml_type, (data.shape[0], *self.shape[1:]))


def cat_rows(parts: list[GGMLWeight]) -> GGMLWeight:
    """Quantized tensors of one type stacked along the first dimension, as bytes (split q/k/v into a fused qkv)."""
    kinds = {p.ggml_type for p in parts}
    if len(kinds) != 1 or len({p.shape[1:] for p in parts}) != 1:
        names = ", ".join(f"{p.type_name} {p.shape}" for p in parts)
        raise GGUFDataError(f"cannot fuse quantized parts of different types or widths ({names})")
    data = torch.cat([p.data.reshape(p.shape[0], -1) for p in parts])
    return GGMLWeight(data, parts[0].ggml_type, (data.shape[0], *parts[0].shape[1:]))


def _type_name(type_id: int) -> str:
    return GGML_TYPE_NAMES.get(type_id, f"type id {type_id}")


class _Entry(NamedTuple):
    ggml_type: int
    shape: tuple[int, ...]
    offset: int
    nbytes: int


class GGUFFile:
    """Uniform read access to the tensors of one GGUF file: names, shapes, dtypes, tensors and the metadata strings.

    ``architecture`` is the file's ``general.architecture`` (e.g. "hyvid" for city96-converted HunyuanImage-2.1
    DiTs, "qwen2vl" for llama.cpp's Qwen2.5-VL), or None. ``shape`` is in torch order (GGUF lists dimensions
    innermost first); a ``comfy.gguf.orig_shape.<name>`` entry, written by city96's converter when it flattened a
    tensor to quantize it, restores the original shape.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointFileError(f"{self.path} does not exist or is not a file")
        self.size = self.path.stat().st_size
        self.metadata: dict[str, str] = {}
        self._entries: dict[str, _Entry] = {}
        self._read_header()

    def _read_header(self) -> None:
        from gguf import GGUFReader  # the header parser; tensor bytes are read below, never through its mmap

        name = self.path.name
        with open(self.path, "rb") as f:
            magic = f.read(4)
        if magic != b"GGUF":
            raise CheckpointFileError(f"{name} is not a GGUF file (it does not start with 'GGUF'; {self.size} bytes)")
        try:
            reader = GGUFReader(self.path, "r")
        except Exception as exc:  # the reader fails in many ways on a cut or damaged file, all of them fatal here
            text = f"{type(exc).__name__}: {exc}"
            if "GGMLQuantizationType" in text:  # a type id newer than the installed gguf package knows
                raise CheckpointFileError(f"{name} uses a GGML type this pack cannot read ({text})") from None
            raise CheckpointFileError(
                f"{name} is truncated or damaged ({self.size} bytes; the GGUF reader says {text}): an interrupted "
                "download or copy; download it again"
            ) from None
        try:
            for key, field in reader.fields.items():
                if key.startswith("comfy.gguf.orig_shape."):
                    continue
                value = _field_text(field)
                if value is not None:
                    self.metadata[key] = value
            original = {
                key.removeprefix("comfy.gguf.orig_shape."): tuple(int(field.parts[i][0]) for i in field.data)
                for key, field in reader.fields.items()
                if key.startswith("comfy.gguf.orig_shape.")
            }
            end = 0
            for tensor in reader.tensors:
                shape = tuple(int(d) for d in reversed(tensor.shape))
                type_id = int(tensor.tensor_type)
                stored = _stored_bytes(type_id, shape)
                if stored is not None and stored != int(tensor.n_bytes):
                    raise CheckpointFileError(f"{name}: tensor {tensor.name!r} has a wrong byte count for its shape")
                shape = original.get(tensor.name, shape)
                if math.prod(shape) != int(tensor.n_elements):
                    raise CheckpointFileError(f"{name}: tensor {tensor.name!r} has a wrong original shape {shape}")
                self._entries[tensor.name] = _Entry(type_id, shape, int(tensor.data_offset), int(tensor.n_bytes))
                end = max(end, int(tensor.data_offset) + int(tensor.n_bytes))
        finally:
            del reader  # closes the memory map
        if end > self.size:
            raise CheckpointFileError(
                f"{name} is truncated: its header describes {end} bytes but the file has {self.size} "
                "(an interrupted download or copy); download it again"
            )

    @property
    def architecture(self) -> str | None:
        return self.metadata.get("general.architecture")

    def keys(self) -> list[str]:
        return list(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def shape(self, key: str) -> tuple[int, ...]:
        return self._entries[key].shape

    def ggml_type(self, key: str) -> int:
        return self._entries[key].ggml_type

    def type_name(self, key: str) -> str:
        return _type_name(self._entries[key].ggml_type)

    def dtype(self, key: str) -> torch.dtype:
        """The torch dtype of a float tensor; ``torch.uint8`` (its bytes) for a block-quantized one."""
        return FLOAT_TYPES.get(self._entries[key].ggml_type, torch.uint8)

    def is_quantized(self, key: str) -> bool:
        return self._entries[key].ggml_type not in FLOAT_TYPES

    def type_counts(self) -> dict[str, int]:
        """How many tensors of each GGML type the file holds, e.g. ``{"Q4_K": 300, "F32": 200}``."""
        counts: dict[str, int] = {}
        for entry in self._entries.values():
            counts[_type_name(entry.ggml_type)] = counts.get(_type_name(entry.ggml_type), 0) + 1
        return dict(sorted(counts.items(), key=lambda item: -item[1]))

    def unsupported_types(self) -> dict[str, str]:
        """Tensors whose GGML type this pack cannot dequantize, by name: ``{tensor: type name}``."""
        return {k: _type_name(e.ggml_type) for k, e in self._entries.items() if e.ggml_type not in GGML_BLOCKS}

    def _bytes(self, key: str) -> torch.Tensor:
        entry = self._entries[key]
        buffer = torch.empty(entry.nbytes, dtype=torch.uint8)
        with open(self.path, "rb") as f:
            f.seek(entry.offset)
            if f.readinto(memoryview(buffer.numpy())) != entry.nbytes:
                raise CheckpointFileError(f"{self.path.name}: could not read tensor {key!r} (file truncated?)")
        return buffer

    def get(self, key: str) -> torch.Tensor | GGMLWeight:
        """Read one tensor into its own memory: a float tensor as it is stored, a quantized one as ``GGMLWeight``."""
        entry = self._entries[key]
        block = block_of(entry.ggml_type)  # names an unsupported type
        raw = self._bytes(key)
        stored = FLOAT_TYPES.get(entry.ggml_type)
        if stored is not None:
            return raw.view(stored).reshape(entry.shape)
        rows = entry.shape[0] if len(entry.shape) > 1 else 1
        data = raw.reshape(rows, -1)
        if data.shape[1] % block.type_size:
            raise GGUFDataError(f"{self.path.name}: tensor {key!r} rows are not whole {block.name} blocks")
        return GGMLWeight(data, entry.ggml_type, entry.shape)

    def items(self) -> Iterator[tuple[str, torch.Tensor | GGMLWeight]]:
        for key in self.keys():
            yield key, self.get(key)


def _stored_bytes(type_id: int, shape: tuple[int, ...]) -> int | None:
    block = GGML_BLOCKS.get(type_id)
    if block is None or (shape and shape[-1] % block.block_size):
        return None
    return math.prod(shape) // block.block_size * block.type_size


def _field_text(field) -> str | None:
    """A metadata value as text: strings and numbers (arrays are skipped; the pack reads none of them)."""
    from gguf import GGUFValueType

    if len(field.types) != 1:
        return None
    value = field.parts[field.data[-1]]
    if field.types[0] == GGUFValueType.STRING:
        return bytes(value).decode("utf-8", errors="replace")
    return str(value[0]) if len(value) else None
