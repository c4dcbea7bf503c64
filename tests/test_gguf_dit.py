"""GGUF DiT files in QuantStack's layout load through the DiT loader, stay quantized, and compute exactly what a model
built from the same weights dequantized by the ``gguf`` package computes; bad GGUF files are refused by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from dit_files import TINY_DISTILLED, TINY_REFINER, random_state, to_layout
from gguf_files import quantstack_tensors, write_gguf
from helpers import assert_close, save

from hunyuan_core.checkpoints import gguf_quants as gq
from hunyuan_core.checkpoints.gguf_file import GGUFFile
from hunyuan_core.checkpoints.quantized import QuantizedWeights
from hunyuan_core.dit import keys as K
from hunyuan_core.dit.checkpoint import DiTCheckpointError, inspect_dit, load_dit

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_thread")]

# Rows of 256 so every type, K-quants included, quantizes the block linears (as in the 3584-wide release).
WIDE = TINY_DISTILLED.with_(hidden_size=256, num_heads=2, rope_axes=(64, 64))
QUANT_TYPES = ["Q8_0", "Q5_0", "Q5_1", "Q4_0", "Q4_1", "Q6_K", "Q5_K", "Q4_K", "Q3_K", "Q2_K"]


def dit_inputs(cfg, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    inputs = dict(
        x=torch.randn(1, cfg.in_channels, 2, 3, generator=g), t=torch.tensor([700.0]),
        text=torch.randn(1, 5, cfg.text_dim, generator=g), text_mask=torch.tensor([[1, 1, 1, 1, 0]]),
    )  # fmt: skip
    if cfg.patch_dims == 3:
        inputs["x"] = torch.randn(1, cfg.in_channels, 1, 2, 3, generator=g)
    if cfg.byt5_dim:
        inputs.update(byt5=torch.randn(1, 4, cfg.byt5_dim, generator=g), byt5_mask=torch.tensor([[1, 1, 0, 0]]))
    if cfg.guidance_embed:
        inputs["guidance"] = torch.tensor([3250.0])
    if cfg.meanflow:
        inputs["timestep_r"] = torch.tensor([500.0])
    return inputs


def forward(model: torch.nn.Module, cfg) -> torch.Tensor:
    with torch.no_grad():
        return model(**dit_inputs(cfg))


def gguf_and_reference(tmp_path: Path, cfg, type_name: str, **kw) -> tuple[Path, Path]:
    tensors, expected = quantstack_tensors(random_state(cfg), type_name, **kw)
    path = write_gguf(tmp_path / f"hunyuanimage2.1-{type_name}.gguf", tensors)
    return path, save(expected, tmp_path / f"reference-{type_name}.safetensors")


@pytest.mark.parametrize("type_name", QUANT_TYPES)
def test_quantized_gguf_forward_equals_dequantized_model(tmp_path, type_name):
    path, reference = gguf_and_reference(tmp_path, WIDE, type_name)
    info = inspect_dit(path)
    assert (info.variant, info.layout, info.compute_dtype) == ("distilled", K.OFFICIAL, torch.bfloat16)
    assert info.weight_format == f"GGUF {type_name}" and type_name in info.describe()
    model = load_dit(path, dtype=torch.float32)
    quantized = {n for n, m in model.named_modules() if isinstance(m, QuantizedWeights)}
    assert quantized and all(model.get_submodule(n).weight.dtype == torch.uint8 for n in quantized)
    assert "double_blocks.0.img_attn_qkv" in quantized and "single_blocks.1.linear2" in quantized
    left_alone = ("txt_in.", "img_in.", "time_in.", "guidance_in.", "final_layer.", "byt5_in.")
    assert not any(n.startswith(left_alone) for n in quantized)  # BF16 in QuantStack's files
    want = forward(load_dit(reference, dtype=torch.float32), WIDE)
    assert_close(forward(model, WIDE), want, 1e-6)


@pytest.mark.parametrize("type_name", ["BF16", "F16"])
def test_float_gguf_loads_as_plain_layers(tmp_path, type_name):
    path, reference = gguf_and_reference(tmp_path, WIDE, type_name)
    model = load_dit(path, dtype=torch.float32)
    assert not any(isinstance(m, QuantizedWeights) for m in model.modules())
    assert torch.equal(forward(model, WIDE), forward(load_dit(reference, dtype=torch.float32), WIDE))


def test_mixed_k_m_file_keeps_each_tensors_type(tmp_path):
    """A _K_M file mixes types (e.g. Q6_K for some layers): each layer keeps its own."""
    mixed = {"double_blocks.0.img_mlp.fc2.weight": "Q6_K", "single_blocks.0.linear2.weight": "Q5_K"}
    path, reference = gguf_and_reference(tmp_path, WIDE, "Q4_K", types=mixed)
    model = load_dit(path, dtype=torch.float32)
    assert model.double_blocks[0].img_mlp.fc2.weight_format == "Q6_K"
    assert model.single_blocks[0].linear2.weight_format == "Q5_K"
    assert model.double_blocks[0].img_mlp.fc1.weight_format == "Q4_K"
    assert_close(forward(model, WIDE), forward(load_dit(reference, dtype=torch.float32), WIDE), 1e-6)
    assert inspect_dit(path).gguf_types == {"F32": 75, "Q4_K": 26, "BF16": 25, "Q6_K": 1, "Q5_K": 1}


def test_bf16_compute_matches_bf16_model_of_dequantized_weights(tmp_path):
    path, reference = gguf_and_reference(tmp_path, WIDE, "Q4_K")
    got = forward(load_dit(path), WIDE)
    want = forward(load_dit(reference, dtype=torch.bfloat16), WIDE)
    assert torch.equal(got, want)


def test_refiner_gguf_with_5d_patch_embedding(tmp_path):
    cfg = TINY_REFINER.with_(hidden_size=256, num_heads=2, rope_axes=(16, 56, 56))
    path, reference = gguf_and_reference(tmp_path, cfg, "Q8_0")
    assert GGUFFile(path).shape("img_in.proj.weight") == (256, 128, 1, 1, 1)
    info = inspect_dit(path)
    assert info.variant == "refiner"
    assert_close(
        forward(load_dit(path, dtype=torch.float32), cfg), forward(load_dit(reference, dtype=torch.float32), cfg), 1e-6
    )


@pytest.mark.parametrize("layout", [K.OFFICIAL_SPLIT, K.COMFY, K.DIFFUSERS])
def test_other_layouts_in_gguf_fuse_quantized_parts_as_bytes(tmp_path, layout):
    """Split q/k/v (and diffusers' swapped final modulation) quantized separately are fused row-wise, exactly."""
    state = to_layout(random_state(WIDE), layout, WIDE.hidden_size)
    tensors, expected = quantstack_tensors(state, "Q8_0")
    path = write_gguf(tmp_path / "split.gguf", tensors)
    reference = save(expected, tmp_path / "split_reference.safetensors")
    assert inspect_dit(path).layout == layout
    model = load_dit(path, dtype=torch.float32)
    assert isinstance(model.double_blocks[0].img_attn_qkv, QuantizedWeights)
    assert_close(forward(model, WIDE), forward(load_dit(reference, dtype=torch.float32), WIDE), 1e-6)


def test_full_width_reduced_depth_q4_k(tmp_path):
    cfg = WIDE.with_(hidden_size=3584, num_heads=28, depth_double=1, depth_single=1, text_dim=3584, byt5_dim=1472,
                     byt5_hidden=2048)  # fmt: skip
    path, reference = gguf_and_reference(tmp_path, cfg, "Q4_K")
    model = load_dit(path, dtype=torch.float32)
    assert model.single_blocks[0].linear1.weight.shape == (3 * 3584 + 14336, 3584 // 256 * 144)
    assert_close(forward(model, cfg), forward(load_dit(reference, dtype=torch.float32), cfg), 1e-6)


# --- refusals ------------------------------------------------------------------------------------------------------


def small_gguf(tmp_path: Path, names: dict[str, tuple[int, ...]], arch: str | None, name: str) -> Path:
    tensors = {k: (np.full(shape, 0.5, dtype=np.float32), "F32") for k, shape in names.items()}
    return write_gguf(tmp_path / name, tensors, arch=arch)


def test_flux_gguf_is_named(tmp_path):
    names = {"double_blocks.0.img_attn.qkv.weight": (96, 32), "img_in.weight": (32, 64), "txt_in.weight": (32, 40)}
    path = small_gguf(tmp_path, names, "flux", "flux1-dev-Q4_K_S.gguf")
    with pytest.raises(DiTCheckpointError, match=r"Flux-style transformer \(GGUF architecture 'flux'\)"):
        inspect_dit(path)


def test_wan_gguf_is_named(tmp_path):
    names = {"blocks.0.self_attn.q.weight": (32, 32), "blocks.0.self_attn.norm_q.weight": (32,),
             "text_embedding.0.weight": (32, 64), "head.modulation": (1, 2, 32)}  # fmt: skip
    path = small_gguf(tmp_path, names, "wan", "wan2.1-t2v-14b-Q4_K_M.gguf")
    with pytest.raises(DiTCheckpointError, match=r"Wan video transformer \(GGUF architecture 'wan'\)"):
        inspect_dit(path)


def test_unsupported_quant_type_is_named(tmp_path):
    tensors, _ = quantstack_tensors(random_state(WIDE), "Q8_0")
    assert 23 not in gq.GGML_BLOCKS  # IQ4_XS: 256 elements in 136 bytes, a type the pack does not dequantize
    raw = np.random.default_rng(0).integers(0, 256, (768, 136), dtype=np.uint8)
    tensors["double_blocks.0.img_attn_qkv.weight"] = (raw, "IQ4_XS")
    path = write_gguf(tmp_path / "hunyuanimage2.1-IQ4_XS.gguf", tensors)
    with pytest.raises(DiTCheckpointError, match=r"GGML type IQ4_XS .*Supported: F32, F16, BF16, Q8_0"):
        inspect_dit(path)


def test_truncated_gguf_says_download_again(tmp_path):
    path, _ = gguf_and_reference(tmp_path, WIDE, "Q4_0")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(DiTCheckpointError, match=r"truncated.*download it again"):
        inspect_dit(path)


def test_file_that_is_not_gguf_is_named(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"PK\x03\x04" + bytes(200))
    with pytest.raises(DiTCheckpointError, match=r"model\.gguf.*is not a GGUF file"):
        inspect_dit(path)


def test_quantized_rows_never_pass_through_float(tmp_path):
    """The weight kept in memory is the file's bytes, untouched."""
    tensors, _ = quantstack_tensors(random_state(WIDE), "Q4_K")
    path = write_gguf(tmp_path / "bytes.gguf", tensors)
    model = load_dit(path, dtype=torch.float32)
    raw, _ = tensors["double_blocks.1.txt_mlp.fc1.weight"]
    assert np.array_equal(model.double_blocks[1].txt_mlp.fc1.weight.numpy(), raw)
