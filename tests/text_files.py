"""Tiny Qwen2.5-VL and Glyph-ByT5 text encoders written in the real file layouts, for text-encoding tests."""

from __future__ import annotations

from pathlib import Path

import torch
from helpers import randomize, save

from hy21_host import find_comfyui

HOST_TEXT = find_comfyui() / "comfy" / "text_encoders"
QWEN_TOKENIZER = HOST_TEXT / "qwen25_tokenizer"
BYT5_TOKENIZER = HOST_TEXT / "byt5_tokenizer"
QWEN_VOCAB = 151936  # the real vocabulary: the real tokenizer's ids must all exist


def tiny_qwen_vl(hidden: int = 64, heads: int = 2, kv_heads: int = 1, layers: int = 4, seed: int = 0):
    """A full Qwen2_5_VLForConditionalGeneration (tiny vision tower included), as diffusers uses it."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    head_dim = hidden // heads
    section = head_dim // 2 // 4
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": QWEN_VOCAB, "hidden_size": hidden, "intermediate_size": 2 * hidden,
            "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
            "rope_scaling": {"type": "mrope", "mrope_section": [section, section, head_dim // 2 - 2 * section]},
            "rope_theta": 1_000_000.0, "rms_norm_eps": 1e-6, "max_position_embeddings": 4096,
        },
        vision_config={
            "depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": hidden,
        },
        vocab_size=QWEN_VOCAB,
    )  # fmt: skip
    config._attn_implementation = "sdpa"
    return randomize(Qwen2_5_VLForConditionalGeneration(config), seed, scale=0.05)


def save_qwen_folder(model, folder: Path) -> Path:
    """A Hugging Face folder: config, weights and the real Qwen2.5 tokenizer files."""
    from transformers import Qwen2TokenizerFast

    model.save_pretrained(folder)
    Qwen2TokenizerFast.from_pretrained(str(QWEN_TOKENIZER)).save_pretrained(folder)
    return folder


def qwen_single_file_state(model) -> dict[str, torch.Tensor]:
    """ComfyUI's single-file naming: ``model.layers.N...``, ``model.embed_tokens``, ``visual.*``, ``lm_head``."""
    out = {}
    for key, tensor in model.state_dict().items():
        key = key.replace("model.language_model.", "model.").replace("model.visual.", "visual.")
        out[key] = tensor.to(torch.bfloat16).contiguous()
    return out


def tiny_glyph_t5(width: int = 64, vocab: int = 1510, seed: int = 1):
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=vocab, d_model=width, d_kv=16, d_ff=2 * width, num_layers=2, num_heads=4,
        feed_forward_proj="gated-gelu", is_encoder_decoder=False, use_cache=False, dropout_rate=0.0,
    )  # fmt: skip
    return randomize(T5EncoderModel(config), seed, scale=0.05)


def save_glyph_comfy(model, path: Path) -> Path:
    """ComfyUI's ``byt5_small_glyphxl_fp16.safetensors`` layout: ``shared.weight`` + ``encoder.*``, fp16."""
    state = {
        k: v.to(torch.float16).contiguous() for k, v in model.state_dict().items() if k != "encoder.embed_tokens.weight"
    }
    return save(state, path)


def save_glyph_official(model, path: Path) -> Path:
    """Glyph-SDXL-v2's ``byt5_model.pt``: a pickled ``state_dict`` under ``module.text_tower.encoder.``, fp32."""
    state = {}
    for key, tensor in model.state_dict().items():
        if key == "shared.weight":
            continue
        state["module.text_tower.encoder." + key.removeprefix("encoder.")] = tensor.clone()
    return save({"state_dict": state}, path)
