"""Checkpoint detection and loading for every DiT layout, on tiny weights written in the real file formats."""

from __future__ import annotations

import pytest
import torch
from dit_files import (
    TINY,
    TINY_DISTILLED,
    TINY_REFINER,
    random_state,
    to_layout,
    to_official_fp8,
)
from helpers import save

from hunyuan_core.checkpoints.files import TensorFile
from hunyuan_core.checkpoints.quantized import QuantizedWeights
from hunyuan_core.dit import keys as K
from hunyuan_core.dit.checkpoint import DiTCheckpointError, inspect_dit, load_dit

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_thread")]

H = TINY.hidden_size


def loaded_state(model) -> dict[str, torch.Tensor]:
    """Parameters as plain tensors, fp8 layers dequantized to their compute dtype."""
    out = {}
    for name, module in model.named_modules():
        if isinstance(module, QuantizedWeights):
            out[f"{name}.weight"] = module.dequantized_weight()
            if module.bias is not None:
                out[f"{name}.bias"] = module.bias
    for name, param in model.named_parameters():
        out.setdefault(name, param)
    return out


LAYOUT_CASES = [
    ("official.safetensors", K.OFFICIAL, ""),
    ("official_split.safetensors", K.OFFICIAL_SPLIT, ""),
    ("comfy_saved.safetensors", K.COMFY, "model.diffusion_model."),
    ("comfy_internal.safetensors", K.COMFY, ""),
    ("diffusers_transformer.safetensors", K.DIFFUSERS, ""),
    ("official.pt", K.OFFICIAL, ""),
    ("wrapped_split.safetensors", K.OFFICIAL_SPLIT, "module."),
]


@pytest.mark.parametrize("cfg", [TINY, TINY_DISTILLED, TINY_REFINER], ids=lambda c: c.variant)
@pytest.mark.parametrize(("filename", "layout", "prefix"), LAYOUT_CASES)
def test_every_layout_loads_identical_parameters(tmp_path, cfg, filename, layout, prefix):
    state = random_state(cfg, dtype=torch.bfloat16)
    path = save(to_layout(state, layout, H, prefix), tmp_path / filename)
    info = inspect_dit(path)
    assert info.layout == layout and info.prefix == prefix
    assert info.config == cfg
    assert info.weight_dtype == torch.bfloat16
    model = load_dit(path)
    got = loaded_state(model)
    assert set(got) == set(state)
    for name, tensor in state.items():
        assert got[name].dtype == torch.bfloat16, name
        assert torch.equal(got[name], tensor), name


def test_dtype_override_casts_on_load(tmp_path):
    state = random_state(TINY, dtype=torch.bfloat16)
    model = load_dit(save(state, tmp_path / "dit.safetensors"), dtype=torch.float32)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert torch.equal(model.final_layer.linear.weight, state["final_layer.linear.weight"].float())


@pytest.mark.parametrize("in_file_scales", [False, True], ids=["scale_file", "in_file_scales"])
def test_official_fp8_stays_fp8_and_dequantizes_exactly(tmp_path, in_file_scales):
    state = random_state(TINY_DISTILLED)
    split = to_layout(state, K.OFFICIAL_SPLIT, H)
    ckpt, scales, expected_split = to_official_fp8(split, in_file_scales)
    path = save(ckpt, tmp_path / "hunyuanimage2.1-distilled_fp8.safetensors")
    if not in_file_scales:
        save(scales, tmp_path / "hunyuanimage2.1-distilled_fp8_scale.safetensors")
    info = inspect_dit(path)
    assert info.weight_dtype == torch.float8_e4m3fn and info.config == TINY_DISTILLED
    assert info.fp8_scales == (
        "in the checkpoint" if in_file_scales else "hunyuanimage2.1-distilled_fp8_scale.safetensors"
    )
    model = load_dit(path)
    fp8_layers = [m for m in model.modules() if isinstance(m, QuantizedWeights)]
    assert len(fp8_layers) == 2 * 10 + 2 * 3  # fused layout: 10 linears per double block, 3 per single block
    assert all(m.weight.dtype == torch.float8_e4m3fn for m in fp8_layers)
    # Embedders, token refiner, ByT5 mapper and final layer stay in bf16.
    assert model.time_in.mlp[0].weight.dtype == torch.bfloat16
    assert model.txt_in.individual_token_refiner.blocks[0].self_attn_qkv.weight.dtype == torch.bfloat16
    got = loaded_state(model)
    for name in state:
        parts = [expected_split[k] for k in K.source_of(name, K.OFFICIAL_SPLIT).keys]
        want = parts[0] if len(parts) == 1 else torch.cat(parts)
        assert torch.equal(got[name].to(torch.bfloat16), want), name


def test_fp8_forward_matches_dequantized_bf16(tmp_path):
    state = random_state(TINY)
    ckpt, scales, expected = to_official_fp8(to_layout(state, K.OFFICIAL_SPLIT, H), in_file_scales=False)
    path = save(ckpt, tmp_path / "dit_fp8.safetensors")
    save(scales, tmp_path / "dit_fp8_scale.safetensors")
    fp8_model = load_dit(path)
    bf16_model = load_dit(save(expected, tmp_path / "dequantized.safetensors"))
    x, t = torch.randn(1, 64, 4, 3), torch.tensor([500.0])
    text, mask = torch.randn(1, 7, 48), torch.ones(1, 7, dtype=torch.long)
    with torch.no_grad():
        assert torch.equal(fp8_model(x, t, text, mask), bf16_model(x, t, text, mask))


def test_comfy_plain_fp8_cast_loads_with_unit_scale(tmp_path):
    state = random_state(TINY, dtype=torch.bfloat16)
    comfy = to_layout(state, K.COMFY, H, "model.diffusion_model.")
    for key, tensor in comfy.items():
        if ("double_blocks." in key or "single_blocks." in key) and key.endswith(".weight") and tensor.ndim == 2:
            comfy[key] = tensor.to(torch.float8_e4m3fn)
    info = inspect_dit(save(comfy, tmp_path / "hunyuanimage2.1_fp8_e4m3fn.safetensors"))
    assert info.fp8_scales == "none (plain fp8 cast)" and info.layout == K.COMFY
    model = load_dit(info.path)
    weight = model.double_blocks[0].img_attn_qkv.dequantized_weight()
    assert torch.equal(weight, state["double_blocks.0.img_attn_qkv.weight"].to(torch.float8_e4m3fn).to(torch.bfloat16))


def test_scaled_fp8_without_its_scale_file_is_refused(tmp_path):
    ckpt, _, _ = to_official_fp8(to_layout(random_state(TINY), K.OFFICIAL_SPLIT, H), in_file_scales=False)
    path = save(ckpt, tmp_path / "hunyuanimage2.1_fp8.safetensors")
    with pytest.raises(DiTCheckpointError, match=r"hunyuanimage2\.1_fp8_scale\.safetensors next to it"):
        inspect_dit(path)


def foreign_files() -> dict[str, tuple[dict[str, torch.Tensor], str]]:
    z = torch.zeros
    return {
        "vae.safetensors": (
            {"encoder.conv_in.weight": z(8, 3, 3, 3), "decoder.conv_in.weight": z(16, 64, 3, 3)},
            "appears to be a VAE",
        ),
        "qwen.safetensors": (
            {"model.embed_tokens.weight": z(10, 8), "model.layers.0.self_attn.q_proj.weight": z(8, 8)},
            "appears to be a text encoder (a decoder-only language model",
        ),
        "byt5.safetensors": (
            {"shared.weight": z(10, 8), "encoder.block.0.layer.0.SelfAttention.q.weight": z(8, 8)},
            "appears to be a text encoder (T5 / ByT5, width 8)",
        ),
        "sdxl.safetensors": (
            {
                "model.diffusion_model.input_blocks.0.0.weight": z(8, 4, 3, 3),
                "model.diffusion_model.output_blocks.0.0.in_layers.0.weight": z(8),
            },
            "appears to be a Stable Diffusion / SDXL UNet",
        ),
        "flux.safetensors": (
            {
                "double_blocks.0.img_attn.qkv.weight": z(24, 8),
                "img_in.weight": z(8, 64),
                "txt_in.weight": z(8, 16),
                "vector_in.in_layer.weight": z(8, 8),
            },
            "appears to be a Flux-style transformer",
        ),
    }


@pytest.mark.parametrize("name", list(foreign_files()))
def test_foreign_checkpoint_is_named(tmp_path, name):
    tensors, fragment = foreign_files()[name]
    path = save(tensors, tmp_path / name)
    with pytest.raises(DiTCheckpointError) as err:
        load_dit(path)
    assert fragment in str(err.value)
    assert "Expected a HunyuanImage-2.1 diffusion model" in str(err.value)


def test_truncated_file_is_named(tmp_path):
    path = save(random_state(TINY), tmp_path / "dit.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(DiTCheckpointError, match="is truncated: its header describes"):
        inspect_dit(path)


def test_not_a_checkpoint_at_all(tmp_path):
    path = tmp_path / "notes.safetensors"
    path.write_text("this is not a model")
    with pytest.raises(DiTCheckpointError, match="not a safetensors file"):
        inspect_dit(path)


def test_missing_blocks_are_reported(tmp_path):
    state = random_state(TINY)
    damaged = {k: v for k, v in state.items() if not k.startswith("double_blocks.0.")}
    with pytest.raises(DiTCheckpointError) as err:
        inspect_dit(save(damaged, tmp_path / "partial.safetensors"))
    message = str(err.value)
    assert "incomplete or inconsistent HunyuanImage-2.1 base DiT" in message
    assert "tensors missing (e.g. double_blocks.0." in message


def test_wrong_shape_is_reported(tmp_path):
    state = random_state(TINY)
    state["single_blocks.1.linear2.weight"] = torch.zeros(64, 10)
    with pytest.raises(DiTCheckpointError, match=r"unexpected shapes \(e\.g\. single_blocks\.1\.linear2\.weight"):
        inspect_dit(save(state, tmp_path / "bad_shape.safetensors"))


def test_pickled_code_is_never_executed(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"img_in.proj.weight": torch.zeros(1), "x": Payload()}, path)
    with pytest.raises(DiTCheckpointError, match="holds Python objects besides tensors; it was not opened") as info:
        inspect_dit(path)
    assert "weights_only=False" not in str(info.value)  # torch's own advice would run the payload


def test_a_checkpoint_in_torchs_old_format_is_read(tmp_path):
    """Files saved without the zip container cannot be memory-mapped; they are read whole instead of refused."""
    path = tmp_path / "old.pt"
    torch.save({"a": torch.arange(6.0)}, path, _use_new_zipfile_serialization=False)
    assert torch.equal(TensorFile(path).get("a"), torch.arange(6.0))


def test_quantize_on_load_keeps_block_linears_in_fp8(tmp_path):
    state = random_state(TINY, dtype=torch.bfloat16)
    model = load_dit(save(state, tmp_path / "dit.safetensors"), quantize_fp8=True)
    fp8 = {n for n, m in model.named_modules() if isinstance(m, QuantizedWeights)}
    assert fp8 and all(n.startswith(("double_blocks.", "single_blocks.")) for n in fp8)
    assert model.final_layer.linear.weight.dtype == torch.bfloat16
    weight = state["double_blocks.1.txt_mlp.fc2.weight"].float()
    got = model.double_blocks[1].txt_mlp.fc2.dequantized_weight().float()
    assert ((got - weight).abs().max() / weight.abs().max()).item() < 0.07  # e4m3 keeps 3 mantissa bits
