"""The GGUF dequantization kernels against the ``gguf`` package's numpy reference, bit for bit in float32.

Blocks are random bytes with chosen float16 scales (zero, negative, subnormal, the largest finite) and whole blocks
of all-zero and all-one quant bytes (the extreme quants, and the K-quants' 6-bit scales 0 and 63); the legacy types
are also fed what ``gguf``'s own quantizer makes of real numbers. The comparison is on the float32 bit patterns,
so even the sign of a zero must agree.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf import quants as reference

from hunyuan_core.checkpoints import gguf_quants as gq
from hunyuan_core.checkpoints.errors import CheckpointError

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_thread")]

TYPES = list(gq.SUPPORTED_TYPES)
LEGACY_QUANTS = ["Q8_0", "Q5_0", "Q5_1", "Q4_0", "Q4_1"]  # the ones gguf can quantize itself
FLOATS = {"F32": np.float32, "F16": np.float16}  # and BF16, stored as the top half of float32

EDGE_VALUES = [0.0, -0.0, 1.0, -1.0, 65504.0, -65504.0, 2.0**-24, -(2.0**-24), 2.0**-14, -7.25, 1e-3, 3.0e4]
FLOAT_EDGES = [*EDGE_VALUES, np.inf, -np.inf]


def ggml(name: str) -> GGMLQuantizationType:
    return GGMLQuantizationType[name]


def unit(name: str) -> int:
    """The smallest row length used for ``name``: one block, and at least 32 elements for the float types."""
    return max(gq.block_of(name).block_size, 32)


def shapes(name: str) -> dict[str, tuple[int, ...]]:
    u = unit(name)
    return {"one block": (gq.block_of(name).block_size,), "many rows": (37, 3 * u), "2-D weight": (64, 8 * u),
            "3-D": (2, 3, 2 * u)}  # fmt: skip


def random_floats(rng: np.random.Generator, count: int, with_inf: bool) -> np.ndarray:
    """Magnitudes from 1e-6 to 1e4 with random signs, every tenth value an edge case."""
    values = rng.standard_normal(count) * 10.0 ** rng.uniform(-6, 4, count)
    edges = FLOAT_EDGES if with_inf else EDGE_VALUES
    pick = rng.random(count) < 0.1
    values[pick] = rng.choice(edges, int(pick.sum()))
    return values


def random_bytes(name: str, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Raw GGUF bytes of a ``name`` tensor of ``shape``, as the numpy reference takes them (rows of bytes)."""
    rng = np.random.default_rng(seed)
    block = gq.block_of(name)
    n_blocks = int(np.prod(shape)) // block.block_size
    if name in FLOATS:
        raw = random_floats(rng, n_blocks, with_inf=True).astype(FLOATS[name]).view(np.uint8)
    elif name == "BF16":
        raw = (random_floats(rng, n_blocks, with_inf=True).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
        raw = raw.view(np.uint8)
    else:
        blocks = rng.integers(0, 256, (n_blocks, block.type_size), dtype=np.uint8)
        blocks[0], blocks[-1] = 0x00, 0xFF  # extreme quants and 6-bit scales (their f16 fields are set below)
        for offset in block.scales_at:
            halves = random_floats(rng, n_blocks, with_inf=False).astype(np.float16)
            blocks[:, offset : offset + 2] = halves.view(np.uint8).reshape(n_blocks, 2)
        raw = blocks
    return raw.reshape(*shape[:-1], -1)


def reference_fp32(raw: np.ndarray, name: str) -> torch.Tensor:
    with np.errstate(over="ignore"):  # fp32 products of large scales may overflow to inf, in both
        return torch.from_numpy(np.ascontiguousarray(reference.dequantize(raw, ggml(name))))


def assert_same_bits(got: torch.Tensor, want: torch.Tensor) -> None:
    assert got.dtype == want.dtype == torch.float32 and got.shape == want.shape, (got.dtype, got.shape, want.shape)
    differ = got.contiguous().view(torch.int32) != want.view(torch.int32)
    if differ.any():
        where = tuple(int(i) for i in differ.nonzero()[0])
        pytest.fail(f"{int(differ.sum())} of {got.numel()} values differ; first at {where}: "
                    f"{got[where].item()!r} != {want[where].item()!r}")  # fmt: skip


def ours(raw: np.ndarray, name: str, shape: tuple[int, ...], **kwargs) -> torch.Tensor:
    return gq.dequantize(torch.from_numpy(raw), ggml(name), shape, **kwargs)


# --- bit-exact against the reference ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", TYPES)
def test_random_blocks_match_the_reference_bit_for_bit(name):
    for seed, (what, shape) in enumerate(shapes(name).items()):
        raw = random_bytes(name, shape, seed)
        got = ours(raw, name, shape)
        assert got.shape == shape, what
        assert_same_bits(got, reference_fp32(raw, name))


@pytest.mark.parametrize("name", [*LEGACY_QUANTS, "F16", "BF16"])
def test_what_gguf_quantizes_comes_back_as_gguf_dequantizes_it(name):
    weights = np.random.default_rng(5).standard_normal((48, 256)).astype(np.float32)
    weights[3] = 0.0  # an all-zero block: scale 0
    weights[4, :32] = np.linspace(-1e4, 1e4, 32)
    raw = reference.quantize(weights, ggml(name)).view(np.uint8)
    assert_same_bits(ours(raw, name, weights.shape), reference_fp32(raw, name))


@pytest.mark.parametrize("name", ["Q6_K", "Q4_K", "Q8_0", "BF16"])
def test_chunked_dequantization_is_the_same_as_one_pass(name, monkeypatch):
    shape = (9, 5 * unit(name))
    raw = random_bytes(name, shape, 11)
    monkeypatch.setitem(gq.CHUNK_ELEMENTS, "cpu", 3 * gq.block_of(name).block_size)  # uneven: a short last chunk
    assert_same_bits(ours(raw, name, shape), reference_fp32(raw, name))
    want = reference_fp32(raw, name).to(torch.bfloat16)
    assert torch.equal(ours(raw, name, shape, dtype=torch.bfloat16), want)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("name", TYPES)
def test_other_output_dtypes_are_the_float32_result_cast_once(name, dtype):
    shape = shapes(name)["many rows"]
    raw = random_bytes(name, shape, 3)
    got = ours(raw, name, shape, dtype=dtype)
    assert got.dtype == dtype
    assert torch.equal(got, reference_fp32(raw, name).to(dtype))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the CPU tests cover the same code")
def test_on_cuda_every_type_matches_the_reference():
    for name in TYPES:
        shape = shapes(name)["2-D weight"]
        raw = random_bytes(name, shape, 7)
        want = reference_fp32(raw, name)
        got = gq.dequantize(torch.from_numpy(raw).cuda(), ggml(name), shape)
        assert got.device.type == "cuda", name
        assert_same_bits(got.cpu(), want)
        assert torch.equal(gq.dequantize(torch.from_numpy(raw).cuda(), name, shape, torch.bfloat16).cpu(),
                           want.to(torch.bfloat16)), name  # fmt: skip


# --- what the function accepts ----------------------------------------------------------------------------------


def test_the_type_can_be_an_id_a_gguf_enum_or_a_name():
    shape = (2, 256)
    raw = random_bytes("Q4_K", shape, 1)
    want = reference_fp32(raw, "Q4_K")
    for given in (12, ggml("Q4_K"), "Q4_K", "q4_k"):
        assert_same_bits(gq.dequantize(torch.from_numpy(raw), given, shape), want)


def test_bytes_at_an_odd_offset_or_in_another_dtype_read_the_same():
    shape = (4, 64)
    raw = random_bytes("Q5_1", shape, 2)
    want = reference_fp32(raw, "Q5_1")
    padded = torch.zeros(raw.size + 1, dtype=torch.uint8)
    padded[1:] = torch.from_numpy(raw.reshape(-1))
    assert_same_bits(gq.dequantize(padded[1:], "Q5_1", shape), want)  # a slice of a file at any position
    halves = random_bytes("F16", shape, 2).view(np.float16)  # e.g. an F16 tensor handed over as float16
    assert_same_bits(gq.dequantize(torch.from_numpy(halves), "F16", shape), torch.from_numpy(halves.astype(np.float32)))


@pytest.mark.parametrize("name", ["F32", "F16", "Q8_0"])
def test_the_result_is_a_new_tensor_not_a_view_of_the_bytes(name):
    shape = (2, 32)
    data = torch.from_numpy(random_bytes(name, shape, 4).copy())
    before = data.clone()
    stored_dtype = {"F32": torch.float32, "F16": torch.float16}.get(name, torch.float32)
    out = gq.dequantize(data, name, shape, dtype=stored_dtype)
    out.zero_()
    assert torch.equal(data, before)


def test_the_block_table_agrees_with_gguf():
    assert TYPES == ["F32", "F16", "BF16", "Q8_0", "Q5_0", "Q5_1", "Q4_0", "Q4_1", "Q6_K", "Q5_K", "Q4_K", "Q3_K",
                     "Q2_K"]  # fmt: skip
    for type_id, block in gq.GGML_BLOCKS.items():
        assert GGML_QUANT_SIZES[GGMLQuantizationType(type_id)] == (block.block_size, block.type_size), block
        assert GGMLQuantizationType(type_id).name == block.name
    for member in GGMLQuantizationType:
        assert gq.GGML_TYPE_NAMES[int(member)] == member.name
    assert gq.block_of("Q4_K").bits_per_weight == 4.5
    assert gq.block_of("Q4_K").nbytes((3584, 3584)) == 3584 * 14 * 144


def test_an_empty_tensor_is_an_empty_result():
    out = gq.dequantize(torch.empty(0, dtype=torch.uint8), "Q4_K", (0, 256))
    assert out.shape == (0, 256) and out.dtype == torch.float32


# --- refusals ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("given", [ggml("IQ4_NL"), "TQ1_0", 34, "iq2_xs"])
def test_an_unsupported_type_is_named_with_the_supported_ones(given):
    with pytest.raises(gq.UnsupportedGGMLTypeError) as caught:
        gq.dequantize(torch.zeros(18, dtype=torch.uint8), given, (32,))
    message = str(caught.value)
    name = given.upper() if isinstance(given, str) else gq.GGML_TYPE_NAMES[int(given)]
    assert f"GGML type {name}" in message and "cannot be dequantized" in message
    assert "supported types: F32, F16, BF16, Q8_0, Q5_0, Q5_1, Q4_0, Q4_1, Q6_K, Q5_K, Q4_K, Q3_K, Q2_K" in message
    assert isinstance(caught.value, CheckpointError)  # loaders catch every checkpoint refusal at once


@pytest.mark.parametrize("given", [99, "Q9_9"])
def test_an_unknown_type_says_so(given):
    with pytest.raises(gq.UnsupportedGGMLTypeError, match=r"unknown GGML type .*supported types: F32"):
        gq.block_of(given)


@pytest.mark.parametrize("change", [-1, +1, -144])
def test_a_wrong_byte_count_for_the_shape_is_refused(change):
    shape = (3, 512)
    data = torch.zeros(3 * 2 * 144 + change, dtype=torch.uint8)
    with pytest.raises(gq.GGUFDataError) as caught:
        gq.dequantize(data, "Q4_K", shape)
    assert str(caught.value) == (
        f"Q4_K data for shape (3, 512) must be 864 bytes (6 blocks of 144), got {864 + change}: a truncated tensor, "
        "or a wrong type or shape for it"
    )


def test_a_row_that_is_not_whole_blocks_is_refused():
    with pytest.raises(gq.GGUFDataError, match=r"Q6_K tensor's last dimension must be a multiple of its block size "
                       r"256; shape \(4, 100\) is not"):  # fmt: skip
        gq.dequantize(torch.zeros(210, dtype=torch.uint8), "Q6_K", (4, 100))


def test_an_integer_output_dtype_is_refused():
    with pytest.raises(TypeError, match="floating-point"):
        gq.dequantize(torch.zeros(34, dtype=torch.uint8), "Q8_0", (32,), dtype=torch.int32)
