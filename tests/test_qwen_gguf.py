"""llama.cpp GGUFs of Qwen2.5-VL-7B as the prompt encoder: they encode exactly as the same weights in safetensors, their
quantized linears stay quantized, and the wrong GGUFs are refused by name."""

from __future__ import annotations

import copy
import logging

import numpy as np
import pytest
import torch
from dit_files import TINY, random_state
from gguf_files import quantstack_tensors, write_gguf
from helpers import assert_close, save, truncate
from qwen_gguf_files import (
    F16_TYPES,
    MIXED_TYPES,
    language_model_state,
    llama_cpp_metadata,
    llama_cpp_tensors,
    write_llama_cpp_gguf,
)
from text_files import QWEN_TOKENIZER, tiny_qwen_vl

from hunyuan_core.checkpoints.quantized import QuantizedWeights
from hunyuan_core.text import STAGE1_TEMPLATE
from hunyuan_core.text.qwen import TextEncoderError, load_qwen_encoder

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_thread")]

PROMPT = 'A chalkboard menu that says "Soup of the day"'
LAYERS = 4  # two are used: the encoder stops at hidden_states[-3]
GGUF_NAME = "Qwen2.5-VL-7B-Instruct-Q4_K_M.gguf"
# Each linear layer of the encoder with the llama.cpp name of its weight's kind.
LINEARS = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}  # fmt: skip


@pytest.fixture(scope="module")
def qwen_256():
    """Hidden 256: Qwen2.5's 128-wide heads (a GGUF carries no config.json), and every weight row a whole K-quant
    super-block, so each layer can take any type."""
    return tiny_qwen_vl(hidden=256, heads=2, kv_heads=1, layers=LAYERS, seed=7)


@pytest.fixture(scope="module")
def text_config(qwen_256):
    return qwen_256.config.text_config


@pytest.fixture(scope="module")
def state(qwen_256) -> dict[str, torch.Tensor]:
    return language_model_state(qwen_256)


@pytest.fixture(scope="module")
def small_state(state) -> dict[str, torch.Tensor]:
    """The same model with a 16-token vocabulary and no LM head: enough for every refusal made before tokenizing."""
    small = {k: v for k, v in state.items() if k != "lm_head.weight"}
    small["model.embed_tokens.weight"] = small["model.embed_tokens.weight"][:16].clone()
    return small


@pytest.fixture(scope="module")
def written(tmp_path_factory, state, text_config):
    """Write each kind of file once: ``written(name)`` -> (GGUF path, safetensors twin path, the twin's tensors)."""
    files = {}

    def write(name: str):
        if name not in files:
            root = tmp_path_factory.mktemp(name)
            types = {"mixed": MIXED_TYPES, "f16": F16_TYPES}[name]
            tensors, expected = llama_cpp_tensors(state, LAYERS, types)
            gguf_path = write_llama_cpp_gguf(root / GGUF_NAME, tensors, "qwen2vl", llama_cpp_metadata(text_config))
            files[name] = (gguf_path, save(expected, root / "qwen_2.5_vl_7b_twin.safetensors"), expected)
        return files[name]

    return write


@pytest.mark.parametrize("name", ["mixed", "f16"])
def test_gguf_encodes_as_the_same_weights_in_safetensors(written, name):
    gguf_path, twin, expected = written(name)
    encoder = load_qwen_encoder(gguf_path, dtype=torch.float32, tokenizer_dirs=[QWEN_TOKENIZER])
    reference = load_qwen_encoder(twin, dtype=torch.float32, tokenizer_dirs=[QWEN_TOKENIZER])
    assert len(encoder.model.layers) == LAYERS - 2
    states = encoder.encode(PROMPT).states
    assert_close(states, reference.encode(PROMPT).states, 1e-6, min_scale=0.05)

    types = MIXED_TYPES if name == "mixed" else F16_TYPES
    for index, layer in enumerate(encoder.model.layers):
        for module_name, kind in LINEARS.items():
            module = layer.get_submodule(module_name)
            if name == "mixed":  # stays quantized: the file's blocks, in the file's type
                assert isinstance(module, QuantizedWeights), module_name
                assert module.weight_format == types[kind] and module.weight.dtype == torch.uint8, module_name
            else:
                assert not isinstance(module, QuantizedWeights), module_name
                want = expected[f"model.layers.{index}.{module_name}.weight"]
                assert torch.equal(module.weight, want), module_name
    embedding = encoder.model.embed_tokens  # a quantized table stays quantized too; a lookup expands its rows
    assert isinstance(embedding, QuantizedWeights) == (name == "mixed") and encoder.dtype == torch.float32
    ids = torch.tensor([[0, 151644, 77091, 5000]])
    assert torch.equal(embedding(ids), expected["model.embed_tokens.weight"][ids])
    bias = encoder.model.layers[0].self_attn.q_proj.bias
    assert torch.equal(bias, expected["model.layers.0.self_attn.q_proj.bias"])  # biases are F32 in llama.cpp's files


def test_gguf_encodes_as_transformers_with_its_weights(written, qwen_256):
    """transformers' own Qwen2.5-VL, given the file's weights, computes its M-RoPE positions for the prompt itself
    (three equal rows for text): the unpermuted q/k and the 1-D rope of the encoder reproduce it."""
    gguf_path, _, expected = written("mixed")
    encoder = load_qwen_encoder(gguf_path, dtype=torch.float32, tokenizer_dirs=[QWEN_TOKENIZER])
    model = copy.deepcopy(qwen_256).float()
    renamed = {k.replace("model.", "model.language_model.", 1): v for k, v in expected.items() if k != "lm_head.weight"}
    assert not model.load_state_dict(renamed, strict=False).unexpected_keys
    assert_close(encoder.encode(PROMPT).states, transformers_states(model, PROMPT), 1e-5, min_scale=0.05)


def transformers_states(model, prompt: str) -> torch.Tensor:
    """hidden_states[-3] of the whole ``Qwen2_5_VLForConditionalGeneration``, template tokens cropped."""
    from transformers import Qwen2TokenizerFast

    tokenizer = Qwen2TokenizerFast.from_pretrained(str(QWEN_TOKENIZER))
    ids = tokenizer(STAGE1_TEMPLATE.format(prompt), add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), output_hidden_states=True)
    return out.hidden_states[-3][:, STAGE1_TEMPLATE.crop :]


def test_qwen2_architecture_and_metadata_constants(tmp_path, state, text_config, caplog):
    """A plain 'qwen2' GGUF loads too (with a warning); rope base and norm epsilon come from the metadata."""
    tensors, _ = llama_cpp_tensors(state, LAYERS, MIXED_TYPES)
    metadata = llama_cpp_metadata(text_config, "qwen2") | {
        "qwen2.rope.freq_base": 500000.0,
        "qwen2.attention.layer_norm_rms_epsilon": 1e-5,
    }
    path = write_llama_cpp_gguf(tmp_path / "qwen2.5-vl-7b-q4_k_m.gguf", tensors, "qwen2", metadata)
    with caplog.at_level(logging.WARNING, logger="hunyuan_core.text.qwen"):
        encoder = load_qwen_encoder(path, dtype=torch.float32, tokenizer_dirs=[QWEN_TOKENIZER])
    assert "plain 'qwen2' GGUF" in caplog.text
    assert encoder.model.layers[0].input_layernorm.variance_epsilon == pytest.approx(1e-5, rel=1e-6)
    inv_freq = encoder.model.rotary_emb.inv_freq
    want = 1.0 / 500000.0 ** (torch.arange(0, 128, 2, dtype=torch.float64) / 128)
    assert torch.allclose(inv_freq.double(), want, rtol=1e-6)
    assert encoder.encode(PROMPT).states.isfinite().all()


def test_the_tokenizer_comes_from_the_host_not_the_gguf(written):
    """The GGUF carries llama.cpp's tokenizer metadata; the encoder still needs the host's Qwen2.5 tokenizer."""
    gguf_path, _, _ = written("mixed")
    with pytest.raises(TextEncoderError, match=r"no Qwen2\.5 tokenizer found"):
        load_qwen_encoder(gguf_path, dtype=torch.float32)


def small_file(tmp_path, small_state, text_config, metadata=None, types=None, drop=(), arch="qwen2vl"):
    """The small-vocabulary model as a llama.cpp GGUF (F32 unless ``types`` says otherwise)."""
    kinds = dict.fromkeys(MIXED_TYPES, "F32") | (types or {})
    tensors, _ = llama_cpp_tensors(small_state, LAYERS, kinds)
    tensors = {k: v for k, v in tensors.items() if k not in drop}
    meta = llama_cpp_metadata(text_config, arch) | (metadata or {})
    return write_llama_cpp_gguf(tmp_path / GGUF_NAME, tensors, arch, meta)


def foreign_gguf(tmp_path, arch: str):
    """A GGUF of another model: a HunyuanImage DiT (QuantStack's layout), a Llama, a T5 encoder, an mmproj."""
    if arch == "hyvid":
        tensors, _ = quantstack_tensors(random_state(TINY), "Q8_0")
        return write_gguf(tmp_path / "hunyuanimage-2.1-Q8_0.gguf", tensors, arch="hyvid")
    f32 = np.zeros((8, 32), dtype=np.float32)
    names = {
        "llama": ["token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_norm.weight", "output.weight"],
        "t5": ["token_embd.weight", "enc.blk.0.attn_q.weight", "enc.blk.0.attn_o.weight", "enc.output_norm.weight"],
        "clip": ["v.patch_embd.weight", "v.blk.0.attn_q.weight", "mm.0.weight", "mm.2.weight"],
    }[arch]
    return write_gguf(tmp_path / f"{arch}-model-Q8_0.gguf", {n: (f32, "F32") for n in names}, arch=arch)


@pytest.mark.parametrize(
    ("arch", "fragment"),
    [
        ("hyvid", "a HunyuanImage-2.1 diffusion model (DiT) (GGUF architecture 'hyvid')"),
        ("llama", "a llama.cpp GGUF of another language model (GGUF architecture 'llama')"),
        ("t5", "a text encoder (T5) (GGUF architecture 't5')"),
        ("clip", "the vision projector (mmproj) of a llama.cpp vision-language model"),
    ],
)
def test_a_gguf_of_another_model_is_named(tmp_path, arch, fragment):
    path = foreign_gguf(tmp_path, arch)
    with pytest.raises(TextEncoderError) as err:
        load_qwen_encoder(path, tokenizer_dirs=[QWEN_TOKENIZER])
    message = str(err.value)
    assert message.startswith(f"{path.name} is not a Qwen2.5-VL text encoder: it appears to be {fragment}")
    assert "architecture 'qwen2vl'" in message and "models/text_encoders" in message


def test_an_unsupported_ggml_type_is_named_with_the_supported_ones(tmp_path, small_state, text_config):
    path = small_file(tmp_path, small_state, text_config, types={"attn_k": "IQ4_NL", "attn_q": "Q8_0"})
    with pytest.raises(TextEncoderError) as err:
        load_qwen_encoder(path, tokenizer_dirs=[QWEN_TOKENIZER])
    message = str(err.value)
    assert message.startswith(f"{GGUF_NAME} is a Qwen2.5-VL GGUF (architecture 'qwen2vl') that stores 4 of the ")
    assert "GGML type IQ4_NL (e.g. blk.0.attn_k.weight)" in message
    assert "Supported: F32, F16, BF16, Q8_0" in message and "Q4_K_M" in message


@pytest.mark.parametrize("keep", [0.6, 0.9999], ids=["mid-file", "last bytes"])
def test_a_truncated_gguf_is_named(tmp_path, small_state, text_config, keep):
    """An interrupted download: the header is whole, the tensor data is cut short."""
    path = truncate(small_file(tmp_path, small_state, text_config), keep)
    with pytest.raises(TextEncoderError) as err:
        load_qwen_encoder(path, tokenizer_dirs=[QWEN_TOKENIZER])
    message = str(err.value)
    assert message.startswith(f"cannot read {GGUF_NAME} as the Qwen2.5-VL text encoder: {GGUF_NAME} is truncated")
    assert "download it again" in message


def test_a_gguf_cut_inside_its_header_is_named(tmp_path, small_state, text_config):
    path = small_file(tmp_path, small_state, text_config)
    truncate(path, 300 / path.stat().st_size)  # inside the metadata
    with pytest.raises(TextEncoderError, match=rf"^cannot read {GGUF_NAME} as the Qwen2\.5-VL text encoder: .*damaged"):
        load_qwen_encoder(path, tokenizer_dirs=[QWEN_TOKENIZER])


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("qwen2vl.embedding_length", 3584, "says qwen2vl.embedding_length = 3584, its tensors say hidden_size = 256"),
        ("qwen2vl.block_count", 28, "metadata says qwen2vl.block_count = 28, its tensors say num_hidden_layers = 4"),
        ("qwen2vl.attention.head_count_kv", 4, "its tensors say num_key_value_heads = 1"),
        ("qwen2vl.feed_forward_length", 18944, "its tensors say intermediate_size = 512"),
        ("qwen2vl.attention.head_count", 4, "its 4 attention heads are 64 wide (hidden 256), Qwen2.5's are 128"),
    ],
)  # fmt: skip
def test_metadata_that_contradicts_the_shapes_is_refused(tmp_path, small_state, text_config, key, value, fragment):
    path = small_file(tmp_path, small_state, text_config, metadata={key: value})
    with pytest.raises(TextEncoderError) as err:
        load_qwen_encoder(path, tokenizer_dirs=[QWEN_TOKENIZER])
    assert str(err.value).startswith(GGUF_NAME) and fragment in str(err.value)
    assert "Download a llama.cpp GGUF of Qwen2.5-VL-7B-Instruct again" in str(err.value)


def test_missing_tensors_are_named_in_llama_cpp_spelling(tmp_path, small_state, text_config):
    path = small_file(tmp_path, small_state, text_config, drop=("blk.1.ffn_up.weight",))
    expected = (
        f"{GGUF_NAME} is an incomplete or inconsistent Qwen2.5-VL text encoder: 1 tensors missing "
        "(e.g. blk.1.ffn_up.weight)"
    )
    with pytest.raises(TextEncoderError, match=expected.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        load_qwen_encoder(path, tokenizer_dirs=[QWEN_TOKENIZER])


def test_one_part_of_a_split_gguf_is_refused(tmp_path, small_state, text_config):
    path = small_file(tmp_path, small_state, text_config, metadata={"split.count": 3, "split.no": 0})
    with pytest.raises(TextEncoderError, match=r"is part 1 of a Qwen2\.5-VL GGUF split into 3 files.*--merge"):
        load_qwen_encoder(path, tokenizer_dirs=[QWEN_TOKENIZER])
