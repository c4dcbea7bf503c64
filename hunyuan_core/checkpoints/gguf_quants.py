"""GGUF tensor data dequantized in plain torch, on whatever device its bytes are on.

A GGUF tensor is stored as rows of fixed-size blocks: a few float16 scales and packed integer quants per block.
Keeping the bytes resident and expanding one layer's weight right before use (on the compute device) is what lets
a quantized model run in a fraction of its bf16 memory, so every kernel here is a handful of whole-tensor ops
(no Python loop over blocks) that runs unchanged on CPU and CUDA, with no numpy on the way.

The results equal the ``gguf`` package's numpy dequantizer bit for bit in float32: each kernel forms the same float32
products in the same order (a block's scale products first, then one multiply and at most one add or subtract per
element). Another output dtype is that float32 result cast once, so it equals casting the reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .errors import CheckpointError

# Every GGML type id a file can name, so a refusal says "IQ4_NL" rather than "20". Only some are supported below.
GGML_TYPE_NAMES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 4: "Q4_2", 5: "Q4_3", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1",
    10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS",
    18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16",
    26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M", 30: "BF16", 31: "Q4_0_4_4", 32: "Q4_0_4_8", 33: "Q4_0_8_8",
    34: "TQ1_0", 35: "TQ2_0", 36: "IQ4_NL_4_4", 37: "IQ4_NL_4_8", 38: "IQ4_NL_8_8", 39: "MXFP4", 40: "NVFP4",
    41: "Q1_0",
}  # fmt: skip

QK_K = 256  # elements in one K-quant super-block


class GGUFDataError(CheckpointError):
    """GGUF tensor bytes that cannot be the tensor they are said to be (wrong length or shape for their type)."""


class UnsupportedGGMLTypeError(GGUFDataError):
    """A GGML type this pack cannot dequantize; the message names it and the types that are supported."""


@dataclass(frozen=True)
class GGMLBlock:
    """How one GGML type packs its elements: ``block_size`` elements in ``type_size`` bytes."""

    name: str
    type_id: int
    block_size: int
    type_size: int
    scales_at: tuple[int, ...] = ()  # byte offsets of the block's float16 scale (and min) fields, as the kernels read

    @property
    def bits_per_weight(self) -> float:
        return 8 * self.type_size / self.block_size

    def nbytes(self, shape: Sequence[int]) -> int:
        """Bytes of a tensor of ``shape`` (torch order: the last dimension is the contiguous, blocked one)."""
        shape = tuple(int(size) for size in shape)
        row = shape[-1] if shape else 1
        if row % self.block_size:
            raise GGUFDataError(
                f"a {self.name} tensor's last dimension must be a multiple of its block size {self.block_size}; "
                f"shape {shape} is not"
            )
        return math.prod(shape) // self.block_size * self.type_size


# The supported types (those of the HunyuanImage-2.1 GGUF releases). Bytes per block: an f16 scale or min is 2, the
# K-quants' packed 6-bit scales 12.
_SUPPORTED = (
    GGMLBlock("F32", 0, 1, 4),
    GGMLBlock("F16", 1, 1, 2),
    GGMLBlock("BF16", 30, 1, 2),
    GGMLBlock("Q8_0", 8, 32, 2 + 32, (0,)),
    GGMLBlock("Q5_0", 6, 32, 2 + 4 + 16, (0,)),
    GGMLBlock("Q5_1", 7, 32, 2 + 2 + 4 + 16, (0, 2)),
    GGMLBlock("Q4_0", 2, 32, 2 + 16, (0,)),
    GGMLBlock("Q4_1", 3, 32, 2 + 2 + 16, (0, 2)),
    GGMLBlock("Q6_K", 14, QK_K, QK_K // 2 + QK_K // 4 + QK_K // 16 + 2, (208,)),
    GGMLBlock("Q5_K", 13, QK_K, 2 + 2 + 12 + QK_K // 8 + QK_K // 2, (0, 2)),
    GGMLBlock("Q4_K", 12, QK_K, 2 + 2 + 12 + QK_K // 2, (0, 2)),
    GGMLBlock("Q3_K", 11, QK_K, QK_K // 8 + QK_K // 4 + 12 + 2, (108,)),
    GGMLBlock("Q2_K", 10, QK_K, QK_K // 16 + QK_K // 4 + 2 + 2, (80, 82)),
)
GGML_BLOCKS: dict[int, GGMLBlock] = {block.type_id: block for block in _SUPPORTED}
SUPPORTED_TYPES: tuple[str, ...] = tuple(block.name for block in GGML_BLOCKS.values())
_BY_NAME = {block.name: block for block in GGML_BLOCKS.values()}
_FLOAT_TYPES = {0: torch.float32, 1: torch.float16, 30: torch.bfloat16}


def block_of(ggml_type: int | str) -> GGMLBlock:
    """The block layout of ``ggml_type`` (an id, e.g. gguf's ``GGMLQuantizationType``, or a name like "Q4_K")."""
    if isinstance(ggml_type, str):
        name = ggml_type.upper()
        if name in _BY_NAME:
            return _BY_NAME[name]
        what = f"GGML type {name}" if name in GGML_TYPE_NAMES.values() else f"unknown GGML type {ggml_type!r}"
    else:
        type_id = int(ggml_type)
        if type_id in GGML_BLOCKS:
            return GGML_BLOCKS[type_id]
        name = GGML_TYPE_NAMES.get(type_id)
        what = f"GGML type {name} (id {type_id})" if name else f"unknown GGML type id {type_id}"
    raise UnsupportedGGMLTypeError(
        f"{what} cannot be dequantized by this pack; supported types: {', '.join(SUPPORTED_TYPES)}"
    )


# --- unpacking helpers: each returns uint8 with a new axis before the last, ordered as GGML orders the elements ---


def _nibbles(packed: torch.Tensor) -> torch.Tensor:
    """``(..., k)`` bytes -> ``(..., 2, k)``: all low nibbles, then all high nibbles."""
    return torch.stack((packed & 0x0F, packed >> 4), dim=-2)


def _crumbs(packed: torch.Tensor) -> torch.Tensor:
    """``(..., k)`` bytes -> ``(..., 4, k)``: bits 0-1 of every byte, then bits 2-3, 4-5, 6-7."""
    shifts = torch.arange(0, 8, 2, dtype=torch.uint8, device=packed.device).view(4, 1)
    return (packed.unsqueeze(-2) >> shifts) & 0x03


def _bit_planes(packed: torch.Tensor) -> torch.Tensor:
    """``(..., k)`` bytes -> ``(..., 8, k)``: bit 0 of every byte, then bit 1, ... (K-quants' high-bit masks)."""
    shifts = torch.arange(8, dtype=torch.uint8, device=packed.device).view(8, 1)
    return (packed.unsqueeze(-2) >> shifts) & 0x01


def _bits_little_endian(packed: torch.Tensor) -> torch.Tensor:
    """``(n, 4)`` bytes of a little-endian uint32 -> ``(n, 32)`` its bits, bit 0 first (Q5_0 / Q5_1's high bits)."""
    shifts = torch.arange(8, dtype=torch.uint8, device=packed.device)
    return ((packed.unsqueeze(-1) >> shifts) & 0x01).flatten(-2)


def _halves(blocks: torch.Tensor, start: int, count: int = 1) -> torch.Tensor:
    """``count`` float16 values at byte ``start`` of every block, as float32 ``(n, count)``."""
    return blocks[:, start : start + 2 * count].view(torch.float16).float()


def _signed(quants: torch.Tensor, offset: int) -> torch.Tensor:
    """Unsigned quants ``q`` (``q < 128``) as int8 ``q - offset``, in place: quants are centred on ``offset``."""
    return quants.view(torch.int8).sub_(offset)


def _k_scales_mins(packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Q4_K / Q5_K's 12 bytes -> eight 6-bit scales and eight 6-bit mins, each ``(n, 8)`` uint8.

    Bytes 0-3 hold scales 0-3 (low 6 bits) and the top 2 bits of scales 4-7; bytes 4-7 the same for the mins;
    bytes 8-11 the low 4 bits of scales 4-7 (low nibble) and of mins 4-7 (high nibble).
    """
    first, second, low = packed[:, 0:4], packed[:, 4:8], packed[:, 8:12]
    scales = torch.cat((first & 0x3F, (low & 0x0F) | ((first >> 2) & 0x30)), dim=-1)
    mins = torch.cat((second & 0x3F, (low >> 4) | ((second >> 2) & 0x30)), dim=-1)
    return scales, mins


# --- kernels: (blocks (n, type_size) uint8, out (n, block_size) float32) -> None, writing the result into out ---


def _q8_0(blocks: torch.Tensor, out: torch.Tensor) -> None:
    # d (f16), 32 int8 quants
    out.copy_(blocks[:, 2:].view(torch.int8)).mul_(_halves(blocks, 0))


def _q4_0(blocks: torch.Tensor, out: torch.Tensor) -> None:
    # d (f16), 16 bytes: element j in the low nibble of byte j, element j + 16 in its high nibble; q - 8
    quants = _signed(_nibbles(blocks[:, 2:]).flatten(1), 8)
    out.copy_(quants).mul_(_halves(blocks, 0))


def _q4_1(blocks: torch.Tensor, out: torch.Tensor) -> None:
    # d, m (f16), nibbles as Q4_0, unsigned: d * q + m
    scale_min = _halves(blocks, 0, 2)
    out.copy_(_nibbles(blocks[:, 4:]).flatten(1)).mul_(scale_min[:, 0:1]).add_(scale_min[:, 1:2])


def _five_bit(low_nibbles: torch.Tensor, high_bits: torch.Tensor) -> torch.Tensor:
    quants = _nibbles(low_nibbles).flatten(1)
    return quants.bitwise_or_(_bits_little_endian(high_bits).bitwise_left_shift_(4))


def _q5_0(blocks: torch.Tensor, out: torch.Tensor) -> None:
    # d (f16), 4 bytes: bit j = 5th bit of element j, nibbles as Q4_0; q - 16
    quants = _signed(_five_bit(blocks[:, 6:], blocks[:, 2:6]), 16)
    out.copy_(quants).mul_(_halves(blocks, 0))


def _q5_1(blocks: torch.Tensor, out: torch.Tensor) -> None:
    # d, m (f16), high bits and nibbles as Q5_0, unsigned: d * q + m
    scale_min = _halves(blocks, 0, 2)
    out.copy_(_five_bit(blocks[:, 8:], blocks[:, 4:8])).mul_(scale_min[:, 0:1]).add_(scale_min[:, 1:2])


def _q2_k(blocks: torch.Tensor, out: torch.Tensor) -> None:
    # 16 bytes of 4-bit scale | 4-bit min per 16 elements, 64 bytes of 2-bit quants, d, dmin (f16)
    n = blocks.shape[0]
    packed = blocks[:, 0:16]
    scale_min = _halves(blocks, 80, 2)
    scales = scale_min[:, 0:1] * (packed & 0x0F).float()
    mins = scale_min[:, 1:2] * (packed >> 4).float()
    quants = _crumbs(blocks[:, 16:80].reshape(n, 2, 32)).view(n, 16, 16)
    out.view(n, 16, 16).copy_(quants).mul_(scales.unsqueeze(-1)).sub_(mins.unsqueeze(-1))


def _q3_k(blocks: torch.Tensor, out: torch.Tensor) -> None:
    # 32 bytes high-bit mask, 64 bytes of 2-bit quants, 12 bytes of sixteen 6-bit scales, d (f16).
    # Scales: low 4 bits in the nibbles of bytes 0-7 (scale i + 8 in byte i's high nibble), top 2 bits in the
    # 2-bit fields of bytes 8-11 (scale 4k + b in bits 2k..2k+1 of byte 8 + b); stored + 32.
    # Quants: 2 low bits, minus 4 where the mask bit is clear.
    n = blocks.shape[0]
    packed = blocks[:, 96:108]
    scale_bits = _nibbles(packed[:, 0:8]).flatten(1).bitwise_or_(_crumbs(packed[:, 8:12]).flatten(1) << 4)
    scales = _halves(blocks, 108) * _signed(scale_bits, 32).float()
    quants = _crumbs(blocks[:, 32:96].reshape(n, 2, 32)).view(n, 16, 16)
    high = _bit_planes(blocks[:, 0:32]).view(n, 16, 16)
    quants = _signed(quants.bitwise_or_(high.bitwise_left_shift_(2)), 4)
    out.view(n, 16, 16).copy_(quants).mul_(scales.unsqueeze(-1))


def _k_block_scales(blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Q4_K / Q5_K: each 32-element group's scale and min, ``d * 6-bit scale`` and ``dmin * 6-bit min`` (float32)."""
    scale_min = _halves(blocks, 0, 2)
    packed_scales, packed_mins = _k_scales_mins(blocks[:, 4:16])
    return scale_min[:, 0:1] * packed_scales.float(), scale_min[:, 1:2] * packed_mins.float()


def _q4_k(blocks: torch.Tensor, out: torch.Tensor) -> None:
    # d, dmin (f16), 12 bytes of 6-bit scales and mins (one each per 32 elements), 128 bytes of nibbles: each 32
    # bytes hold 64 elements, low nibbles first
    n = blocks.shape[0]
    scales, mins = _k_block_scales(blocks)
    quants = _nibbles(blocks[:, 16:144].reshape(n, 4, 32)).view(n, 8, 32)
    out.view(n, 8, 32).copy_(quants).mul_(scales.unsqueeze(-1)).sub_(mins.unsqueeze(-1))


def _q5_k(blocks: torch.Tensor, out: torch.Tensor) -> None:
    # as Q4_K, with 32 bytes of 5th bits (bit s of byte j for element 32 s + j) before the nibbles
    n = blocks.shape[0]
    scales, mins = _k_block_scales(blocks)
    quants = _nibbles(blocks[:, 48:176].reshape(n, 4, 32)).view(n, 8, 32)
    quants.bitwise_or_(_bit_planes(blocks[:, 16:48]).bitwise_left_shift_(4))
    out.view(n, 8, 32).copy_(quants).mul_(scales.unsqueeze(-1)).sub_(mins.unsqueeze(-1))


def _q6_k(blocks: torch.Tensor, out: torch.Tensor) -> None:
    # 128 bytes of low nibbles (each 64 bytes: 128 elements, low nibbles first), 64 bytes of 2-bit high parts
    # (each 32 bytes: 128 elements), sixteen int8 scales (one per 16 elements), d (f16); q - 32
    n = blocks.shape[0]
    quants = _nibbles(blocks[:, 0:128].reshape(n, 2, 64)).view(n, QK_K)
    quants.bitwise_or_(_crumbs(blocks[:, 128:192].reshape(n, 2, 32)).view(n, QK_K).bitwise_left_shift_(4))
    scales = _halves(blocks, 208) * blocks[:, 192:208].view(torch.int8).float()
    out.view(n, 16, 16).copy_(_signed(quants, 32).view(n, 16, 16)).mul_(scales.unsqueeze(-1))


_KERNELS: dict[int, Callable[[torch.Tensor, torch.Tensor], None]] = {
    8: _q8_0, 6: _q5_0, 7: _q5_1, 2: _q4_0, 3: _q4_1, 14: _q6_k, 13: _q5_k, 12: _q4_k, 11: _q3_k, 10: _q2_k,
}  # fmt: skip

# Elements dequantized per step: bounds the float32 and uint8 temporaries (a few bytes per element) and, on the CPU,
# keeps them in cache; a GPU takes whole layers at once so each op is one large launch.
CHUNK_ELEMENTS = {"cpu": 1 << 20, "default": 1 << 26}


def _as_bytes(data: torch.Tensor) -> torch.Tensor:
    """``data`` as a flat uint8 tensor whose start suits float16 / float32 views (a copy only when it does not)."""
    raw = data.reshape(-1)
    if raw.dtype != torch.uint8:
        raw = raw.contiguous().view(torch.uint8)
    if raw.storage_offset() % 4 or raw.data_ptr() % 4:  # GGUF aligns tensor data to 32 bytes, so normally no copy
        raw = raw.clone()
    return raw


def dequantize(
    data: torch.Tensor, ggml_type: int | str, shape: Sequence[int], dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """A GGUF tensor's raw bytes as a ``dtype`` tensor of ``shape``, computed on ``data``'s device.

    ``data``: the tensor's bytes (uint8; another dtype is read as its bytes), e.g. a slice of a memory-mapped file.
    ``ggml_type``: a GGML type id (gguf's ``GGMLQuantizationType`` works) or name. ``shape``: torch order, i.e.
    GGUF's dimensions reversed; the last one is the blocked one. Always returns a new tensor, never a view of
    ``data``. Raises ``UnsupportedGGMLTypeError`` for a type not in ``SUPPORTED_TYPES`` and ``GGUFDataError`` when
    the byte count does not fit the shape.
    """
    block = block_of(ggml_type)
    if not dtype.is_floating_point:
        raise TypeError(f"dequantize makes floating-point tensors, not {dtype}")
    shape = tuple(int(size) for size in shape)
    want = block.nbytes(shape)
    if data.numel() * data.element_size() != want:
        blocks = want // block.type_size
        raise GGUFDataError(
            f"{block.name} data for shape {shape} must be {want} bytes ({blocks} blocks of {block.type_size}), "
            f"got {data.numel() * data.element_size()}: a truncated tensor, or a wrong type or shape for it"
        )
    raw = _as_bytes(data)

    stored = _FLOAT_TYPES.get(block.type_id)
    if stored is not None:
        values = raw.view(stored).view(shape)
        if dtype == stored:
            return values.clone()
        # through float32, so e.g. bf16 -> fp16 is exactly the reference's float32 cast
        return values.to(torch.float32) if dtype == torch.float32 else values.to(torch.float32).to(dtype)

    kernel = _KERNELS[block.type_id]
    blocks = raw.view(-1, block.type_size)
    n_blocks = blocks.shape[0]
    out = torch.empty((n_blocks, block.block_size), dtype=dtype, device=raw.device)
    chunk = CHUNK_ELEMENTS.get(raw.device.type, CHUNK_ELEMENTS["default"])
    step = max(1, chunk // block.block_size)
    scratch = None  # kernels work in float32: another dtype gets each chunk's result cast into it
    if dtype != torch.float32:
        scratch = torch.empty((min(step, n_blocks), block.block_size), dtype=torch.float32, device=raw.device)
    for start in range(0, n_blocks, step):  # over chunks of many blocks, each done by whole-tensor ops
        stop = min(start + step, n_blocks)
        if scratch is None:
            kernel(blocks[start:stop], out[start:stop])
        else:
            kernel(blocks[start:stop], scratch[: stop - start])
            out[start:stop].copy_(scratch[: stop - start])
    return out.view(shape)
