"""Text-encoder files in every published layout, and the errors for the wrong ones."""

from __future__ import annotations

import pytest
import torch
from dit_files import TINY, random_state
from safetensors.torch import save_file
from text_files import (
    BYT5_TOKENIZER,
    QWEN_TOKENIZER,
    qwen_single_file_state,
    save_glyph_comfy,
    save_glyph_official,
    tiny_glyph_t5,
    tiny_qwen_vl,
)

from hunyuan_core.checkpoints.fp8 import quantize_fp8
from hunyuan_core.checkpoints.quantized import QuantizedWeights
from hunyuan_core.text.byt5 import load_glyph_encoder
from hunyuan_core.text.qwen import TextEncoderError, load_qwen_encoder

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_thread")]

PROMPT = 'A chalkboard menu that says "Soup of the day"'


@pytest.fixture(scope="module")
def qwen_128():
    """Qwen2.5 heads are 128 wide; single files carry no config, so the tiny model keeps that width."""
    return tiny_qwen_vl(hidden=128, heads=1, kv_heads=1, layers=4, seed=5)


def reference_states(model, prompt: str) -> torch.Tensor:
    """hidden_states[-3] of the full model, computed by transformers itself, template tokens cropped."""
    from transformers import Qwen2TokenizerFast

    from hunyuan_core.text import STAGE1_TEMPLATE

    tokenizer = Qwen2TokenizerFast.from_pretrained(str(QWEN_TOKENIZER))
    ids = torch.tensor([tokenizer(STAGE1_TEMPLATE.format(prompt), add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        out = model.float()(input_ids=ids, output_hidden_states=True)
    return out.hidden_states[-3][:, STAGE1_TEMPLATE.crop :]


def test_comfy_single_file_with_host_tokenizer(tmp_path, qwen_128):
    path = tmp_path / "qwen_2.5_vl_7b.safetensors"
    save_file(qwen_single_file_state(qwen_128), str(path))
    encoder = load_qwen_encoder(path, dtype=torch.float32, tokenizer_dirs=[QWEN_TOKENIZER])
    assert len(encoder.model.layers) == 2  # 4 layers in the file, the last two never used
    want = reference_states(qwen_128.to(torch.bfloat16), PROMPT)
    got = encoder.encode(PROMPT).states
    assert ((got - want).abs().max() / want.abs().max()).item() <= 1e-5


def test_comfy_scaled_fp8_file_stays_fp8(tmp_path, qwen_128):
    state = qwen_single_file_state(qwen_128)
    expected = dict(state)
    for key in list(state):
        if key.startswith("model.layers.") and key.endswith("proj.weight"):
            weight, scale = quantize_fp8(state[key])
            state[key], state[key.replace(".weight", ".scale_weight")] = weight, scale.reshape(())
            expected[key] = (weight.float() * scale).to(torch.bfloat16)
    state["scaled_fp8"] = torch.empty(0, dtype=torch.float8_e4m3fn)
    path = tmp_path / "qwen_2.5_vl_7b_fp8_scaled.safetensors"
    save_file(state, str(path))
    encoder = load_qwen_encoder(path, tokenizer_dirs=[QWEN_TOKENIZER])
    q_proj = encoder.model.layers[0].self_attn.q_proj
    assert isinstance(q_proj, QuantizedWeights) and q_proj.weight.dtype == torch.float8_e4m3fn
    assert torch.equal(q_proj.dequantized_weight(), expected["model.layers.0.self_attn.q_proj.weight"])
    assert encoder.encode(PROMPT).states.isfinite().all()


def test_single_file_without_any_tokenizer_is_refused(tmp_path, qwen_128):
    path = tmp_path / "qwen_2.5_vl_7b.safetensors"
    save_file(qwen_single_file_state(qwen_128), str(path))
    with pytest.raises(TextEncoderError, match=r"no Qwen2\.5 tokenizer found .* run inside ComfyUI"):
        load_qwen_encoder(path)


def test_wrong_tokenizer_is_refused(tmp_path, qwen_128):
    path = tmp_path / "qwen.safetensors"
    save_file(qwen_single_file_state(qwen_128), str(path))
    tok_dir = tmp_path / "gpt2ish"
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=bpe).save_pretrained(tok_dir)
    with pytest.raises(TextEncoderError, match=r"this is not Qwen2\.5's tokenizer"):
        load_qwen_encoder(path, tokenizer_dirs=[tok_dir])


def foreign(name: str, tmp_path) -> str:
    z = torch.zeros
    files = {
        "clip_l.safetensors": {"text_model.encoder.layers.0.self_attn.q_proj.weight": z(8, 8)},
        "t5xxl_fp16.safetensors": {
            "encoder.block.0.layer.0.SelfAttention.q.weight": z(8, 4096),
            "shared.weight": z(4, 4096),
        },
    }
    path = tmp_path / name
    save_file(files[name], str(path)) if name in files else save_file(random_state(TINY), str(path))
    return path


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("clip_l.safetensors", "appears to be a text encoder (CLIP)"),
        ("t5xxl_fp16.safetensors", "appears to be a text encoder (T5-XXL)"),
        ("hunyuanimage2.1.safetensors", "appears to be a HunyuanImage-2.1 diffusion model (DiT)"),
    ],
)
def test_wrong_file_as_mllm_is_named(tmp_path, name, fragment):
    with pytest.raises(TextEncoderError) as err:
        load_qwen_encoder(foreign(name, tmp_path), tokenizer_dirs=[QWEN_TOKENIZER])
    assert fragment in str(err.value) and "models/text_encoders" in str(err.value)


def test_glyph_layouts_load_the_same_weights(tmp_path):
    t5 = tiny_glyph_t5(width=64)
    comfy = load_glyph_encoder(save_glyph_comfy(t5, tmp_path / "byt5.safetensors"), expected_width=None)
    official = load_glyph_encoder(save_glyph_official(t5, tmp_path / "byt5_model.pt"), expected_width=None)
    for (name, a), (_, b) in zip(comfy.model.state_dict().items(), official.model.state_dict().items(), strict=True):
        assert a.dtype == b.dtype == torch.float32, name
        assert torch.equal(a, b.half().float()), name  # the ComfyUI file is fp16
    text = 'Text "Soup of the day". '
    assert comfy.encode(text).states.shape == (1, len(text.encode()) + 1, 64)


def test_glyph_of_the_wrong_width_is_refused(tmp_path):
    path = save_glyph_comfy(tiny_glyph_t5(width=64), tmp_path / "byt5_small.safetensors")
    expected = r"width 64, but HunyuanImage-2\.1 needs the Glyph-SDXL-v2 ByT5 encoder of width 1472"
    with pytest.raises(TextEncoderError, match=expected):
        load_glyph_encoder(path)


def test_glyph_tokens_come_from_the_glyph_lists(tmp_path):
    import json

    (tmp_path / "color_idx.json").write_text(json.dumps({"white": 0, "black": 1}))
    (tmp_path / "multilingual_10-lang_idx.json").write_text(json.dumps({"en-Arial": 0, "cn-Hei": 0, "en-Times": 1}))
    path = save_glyph_official(tiny_glyph_t5(width=64, vocab=384 + 5), tmp_path / "byt5_model.pt")
    encoder = load_glyph_encoder(path, tokenizer_dirs=[BYT5_TOKENIZER], expected_width=None)
    ids = encoder.tokenizer("<color-1><cn-font-0>", add_special_tokens=False)["input_ids"]
    assert ids == [384 + 1, 384 + 3]


def test_bf16_file_quantized_to_fp8_at_load_equals_the_same_fp8_file(tmp_path, qwen_128):
    """``quantize_fp8`` gives exactly the encoder of an fp8-scaled file made with the official quantization."""
    state = qwen_single_file_state(qwen_128)
    bf16 = tmp_path / "qwen_2.5_vl_7b.safetensors"
    save_file(state, str(bf16))
    scaled = dict(state)
    for key in list(state):
        if key.startswith("model.layers.") and key.endswith("proj.weight"):
            weight, scale = quantize_fp8(state[key])
            scaled[key], scaled[key.replace(".weight", ".scale_weight")] = weight, scale.reshape(())
    scaled["scaled_fp8"] = torch.empty(0, dtype=torch.float8_e4m3fn)
    fp8 = tmp_path / "qwen_2.5_vl_7b_fp8_scaled.safetensors"
    save_file(scaled, str(fp8))
    quantized = load_qwen_encoder(bf16, dtype=None, tokenizer_dirs=[QWEN_TOKENIZER], quantize_fp8=True)
    layers = [m for m in quantized.model.modules() if isinstance(m, QuantizedWeights)]
    assert len(layers) == 2 * 7 and all(m.weight.dtype == torch.float8_e4m3fn for m in layers)
    want = load_qwen_encoder(fp8, dtype=None, tokenizer_dirs=[QWEN_TOKENIZER]).encode(PROMPT).states
    assert torch.equal(quantized.encode(PROMPT).states, want)
