"""The prompt enhancer from one file instead of a Hugging Face folder: the text encoder's own Qwen2.5-VL file when it
carries the LM head, and llama.cpp GGUFs (float, block-quantized, tied head). Each generates, token for token, what
transformers' ``generate`` generates with the same weights, the same chat text and Qwen2.5-VL-7B-Instruct's released
generation settings; a text encoder's file without the head is refused by name and not offered."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from qwen_gguf_files import language_model_state, llama_cpp_metadata, llama_cpp_tensors, write_llama_cpp_gguf
from safetensors.torch import save_file

from hunyuan_core.text.enhancer import PromptEnhancerError, carries_lm_head, load_prompt_enhancer
from hunyuan_core.text.reprompt import GenerationSettings, user_message
from hy21_host import find_comfyui
from hy21_host.tiny_models import write_tiny_enhancer

pytestmark = pytest.mark.parity

PROMPT = "一只狐狸 'in' the snow"
TOKENS = 20
HOST_TOKENIZER = find_comfyui() / "comfy" / "text_encoders" / "qwen25_tokenizer"
INSTRUCT_SETTINGS = GenerationSettings((151645, 151643), 1.05)  # Qwen2.5-VL-7B-Instruct's generation_config.json


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_tiny_enhancer(tmp_path_factory.mktemp("models") / "PromptEnhancer-tiny", seed=3, qwen_heads=True)


@pytest.fixture(scope="module")
def reference(folder):
    from transformers import Qwen2_5_VLForConditionalGeneration

    return Qwen2_5_VLForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()


def hf_state(reference) -> dict[str, torch.Tensor]:
    """The language model and head under the names Hugging Face releases and ComfyUI's repacks use."""
    return language_model_state(reference)


def generate_reference(folder: Path, model, weights: dict[str, torch.Tensor] | None = None) -> list[int]:
    """transformers' greedy ``generate`` (the folder's chat template and generation_config.json), optionally with
    the language model's weights replaced by ``weights`` (Hugging Face names)."""
    from transformers import AutoTokenizer

    if weights is not None:
        renamed = {k if k.startswith("lm_head") else k.replace("model.", "model.language_model.", 1): v
                   for k, v in weights.items()}  # fmt: skip
        missing, unexpected = model.load_state_dict(renamed, strict=False)
        assert not unexpected and all(k.startswith("model.visual.") for k in missing)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": user_message(PROMPT)}], tokenize=False, add_generation_prompt=True
    )
    ids = tokenizer([text], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=TOKENS, do_sample=False, temperature=None, top_p=None, top_k=None)
    return out[0, ids.input_ids.shape[1] :].tolist()


def generate_ours(path: Path) -> tuple[list[int], object]:
    """Our enhancer's tokens from one file, with the host ComfyUI's tokenizer as the nodes pass it."""
    enhancer = load_prompt_enhancer(path, dtype=torch.float32, tokenizer_dirs=[HOST_TOKENIZER])
    tokens: list[int] = []
    enhancer.generate(user_message(PROMPT), TOKENS, on_token=lambda count, token: tokens.append(token))
    return tokens, enhancer


def write_gguf(path: Path, reference, types: dict[str, str], tied: bool = False, template: str | None = None):
    config = reference.config.text_config
    state = hf_state(reference)
    if tied:
        del state["lm_head.weight"]
    tensors, expected = llama_cpp_tensors(state, config.num_hidden_layers, types)
    metadata = llama_cpp_metadata(config) | {"tokenizer.chat_template": template}
    write_llama_cpp_gguf(path, tensors, "qwen2vl", metadata)
    if tied:
        expected["lm_head.weight"] = expected["model.embed_tokens.weight"]
    return path, expected


def kinds(kind: str) -> dict[str, str]:
    names = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down", "token_embd", "output")
    return dict.fromkeys(names, kind)


def test_the_text_encoders_file_with_its_lm_head_generates_what_transformers_generates(folder, reference, tmp_path):
    want = generate_reference(folder, reference)
    file = tmp_path / "text_encoders" / "qwen_2.5_vl_7b.safetensors"
    file.parent.mkdir()
    save_file(hf_state(reference), str(file))
    got, enhancer = generate_ours(file)
    assert got == want and len(want) == TOKENS
    assert enhancer.settings == INSTRUCT_SETTINGS and enhancer.template is None  # Qwen2.5-VL's default rendering
    assert carries_lm_head(file)


def test_a_text_encoders_file_without_the_head_is_refused_and_not_offered(reference, tmp_path):
    file = tmp_path / "qwen_2.5_vl_7b_encoder_only.safetensors"
    save_file({k: v for k, v in hf_state(reference).items() if not k.startswith("lm_head")}, str(file))
    assert not carries_lm_head(file)
    with pytest.raises(PromptEnhancerError, match=re.escape("has no LM head (lm_head.weight)")):
        load_prompt_enhancer(file, dtype=torch.float32)


def test_a_file_with_a_generation_config_beside_it_uses_that(reference, tmp_path):
    file = tmp_path / "qwen.safetensors"
    save_file(hf_state(reference), str(file))
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": 151645}))
    _, enhancer = generate_ours(file)
    assert enhancer.settings == GenerationSettings((151645,), 1.0)


def test_a_float_gguf_generates_what_transformers_generates(folder, reference, tmp_path):
    from transformers import AutoTokenizer

    want = generate_reference(folder, reference)
    template = AutoTokenizer.from_pretrained(folder).chat_template
    path, _ = write_gguf(tmp_path / "PromptEnhancer-tiny-F32.gguf", reference, kinds("F32"), template=template)
    got, enhancer = generate_ours(path)
    assert got == want
    assert enhancer.template == template and enhancer.settings == INSTRUCT_SETTINGS
    assert carries_lm_head(path)


@pytest.mark.parametrize("tied", [False, True], ids=["own-head", "tied-head"])
def test_a_block_quantized_gguf_generates_what_transformers_generates_with_its_weights(
    folder, tmp_path, tied
):  # fmt: skip
    from transformers import Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
    path, expected = write_gguf(tmp_path / "PromptEnhancer-tiny-Q8_0.gguf", model, kinds("Q8_0"), tied=tied)
    want = generate_reference(folder, model, expected)
    got, enhancer = generate_ours(path)
    assert got == want
    assert type(enhancer.head).__name__ != "Linear" or enhancer.head.weight.dtype == torch.float32
    assert carries_lm_head(path)


def test_a_gguf_whose_head_is_in_a_type_the_pack_cannot_read_is_refused_by_name(folder, reference, tmp_path):
    path, _ = write_gguf(
        tmp_path / "PromptEnhancer-tiny-IQ4_NL-head.gguf", reference, kinds("Q8_0") | {"output": "IQ4_NL"}
    )
    with pytest.raises(PromptEnhancerError, match=re.escape("stores its LM head (output.weight) as GGML type IQ4_NL")):
        load_prompt_enhancer(path, dtype=torch.float32, tokenizer_dirs=[HOST_TOKENIZER])


def test_a_folder_without_generation_config_decodes_as_transformers_does(folder, tmp_path):
    from transformers import Qwen2_5_VLForConditionalGeneration

    bare = tmp_path / "no-generation-config"
    shutil.copytree(folder, bare)
    (bare / "generation_config.json").unlink()
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(bare, dtype=torch.float32).eval()
    got, enhancer = generate_ours(bare)
    assert got == generate_reference(bare, model)
    assert enhancer.settings.repetition_penalty == 1.0  # the Instruct release's 1.05 is only for single files
