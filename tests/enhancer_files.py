"""A tiny random Qwen2.5-VL causal LM folder in the Hugging Face layout, as a prompt enhancer is downloaded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from hy21_host import find_comfyui

# The Qwen2.5-VL-7B-Instruct release's generation settings: end tokens and the repetition penalty that greedy search
# applies (its sampling settings do not apply to greedy decoding).
GENERATION = {"bos_token_id": 151643, "eos_token_id": [151645, 151643], "repetition_penalty": 1.05,
              "do_sample": True, "temperature": 0.1, "top_p": 0.001, "top_k": 1}  # fmt: skip


def write_tiny_enhancer(folder: Path, seed: int = 0, qwen_heads: bool = False) -> Path:
    """config.json, safetensors (vision tower included, as released), generation_config.json and the host ComfyUI's
    Qwen tokenizer files, written by transformers itself. ``qwen_heads``: Qwen2.5's 128-wide attention heads (2 of
    them), which a file without config.json must have, instead of 4 heads of 16."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    hidden, heads, sections = (256, 2, [16, 24, 24]) if qwen_heads else (64, 4, [2, 3, 3])
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": 151936, "hidden_size": hidden, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": heads, "num_key_value_heads": heads // 2, "rope_scaling": {"type": "mrope",
            "mrope_section": sections}, "max_position_embeddings": 4096, "tie_word_embeddings": False,
        },
        vision_config={"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                       "out_hidden_size": hidden, "fullatt_block_indexes": [0]},
        tie_word_embeddings=False,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    (folder / "generation_config.json").write_text(json.dumps(GENERATION))
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        shutil.copy(find_comfyui() / "comfy" / "text_encoders" / "qwen25_tokenizer" / name, folder / name)
    return folder
