"""A tiny HunyuanImage-2.1 model set with random weights, in the real file formats under the real file names.

Lets the demo and the integration tests run the shipped workflows end to end through a real ComfyUI without the
~60 GB of real weights: every file goes through the same detection and loading code as the real one.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from hunyuan_core.variants import (
    BASE,
    DISTILLED,
    GLYPH_FILE,
    QWEN_FILE,
    REFINER,
    REFINER_VAE_FILE,
    STAGE1_VAE_FILE,
    ModelFile,
)

from .host import find_comfyui

log = logging.getLogger(__name__)

QWEN_VOCAB = 151936
QWEN_HIDDEN = 128  # one 128-wide head, as Qwen2.5 uses: single files carry no config
GLYPH_WIDTH = 1472  # the DiT's byt5_in width, as in the real model
# The prompt enhancer's Hugging Face folder, where the shipped enhanced workflow's loader looks (models/LLM/<name>/),
# and the generation settings Qwen2.5-VL-7B-Instruct and PromptEnhancer-7B ship in generation_config.json (greedy
# decoding reads the end tokens and the repetition penalty).
ENHANCER_FOLDER = Path("LLM", "PromptEnhancer-7B")
ENHANCER_GENERATION = {"bos_token_id": 151643, "pad_token_id": 151643, "eos_token_id": [151645, 151643],
                       "repetition_penalty": 1.05, "do_sample": True, "temperature": 0.1, "top_p": 0.001,
                       "top_k": 1}  # fmt: skip


def random_tensors(shapes: dict[str, torch.Size], seed: int, dtype: torch.dtype, scale: float = 0.05) -> dict:
    """``N(0, 1) * scale`` for each shape, drawn in order from one generator seeded with ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    return {k: (torch.randn(s, generator=gen) * scale).to(dtype) for k, s in shapes.items()}


def shapes_of(module: torch.nn.Module) -> dict[str, torch.Size]:
    """The shape of every tensor in ``module``'s state dict (a meta-device module is enough)."""
    return {k: v.shape for k, v in module.state_dict().items()}


def dit_state(variant: str, seed: int) -> dict[str, torch.Tensor]:
    from hunyuan_core.dit import DiTConfig, HunyuanImageDiT

    embedded = variant in ("distilled", "refiner")  # guidance embedding and time_r_in, as in the real files
    cfg = DiTConfig(
        variant=variant, hidden_size=64, num_heads=2, depth_double=1, depth_single=1, rope_axes=(16, 16),
        text_dim=QWEN_HIDDEN, byt5_dim=GLYPH_WIDTH, byt5_hidden=64, guidance_embed=embedded, meanflow=embedded,
    )  # fmt: skip
    if variant == "refiner":  # 128 channels in (noisy + condition), 3-D patch, RoPE over (t, h, w), no ByT5
        cfg = cfg.with_(in_channels=128, patch_dims=3, rope_axes=(4, 14, 14), byt5_dim=None)
    with torch.device("meta"):
        model = HunyuanImageDiT(cfg, dtype=torch.bfloat16)
    return random_tensors(shapes_of(model), seed, torch.bfloat16)


def qwen_state(seed: int) -> dict[str, torch.Tensor]:
    from transformers import Qwen2_5_VLTextConfig, Qwen2_5_VLTextModel

    config = Qwen2_5_VLTextConfig(
        vocab_size=QWEN_VOCAB, hidden_size=QWEN_HIDDEN, intermediate_size=256, num_hidden_layers=4,
        num_attention_heads=1, num_key_value_heads=1, rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]},
    )  # fmt: skip
    with torch.device("meta"):
        model = Qwen2_5_VLTextModel(config)
    shapes = {f"model.{k}": s for k, s in shapes_of(model).items() if not k.startswith("rotary_emb")}
    state = random_tensors(shapes, seed, torch.bfloat16)
    state["lm_head.weight"] = torch.zeros(8, QWEN_HIDDEN, dtype=torch.bfloat16)  # present in the real file
    return state


def glyph_state(seed: int) -> dict[str, torch.Tensor]:
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=1510, d_model=GLYPH_WIDTH, d_kv=16, d_ff=64, num_layers=2, num_heads=4,
        feed_forward_proj="gated-gelu", is_encoder_decoder=False, use_cache=False,
    )  # fmt: skip
    with torch.device("meta"):
        model = T5EncoderModel(config)
    shapes = {k: s for k, s in shapes_of(model).items() if k != "encoder.embed_tokens.weight"}
    state = random_tensors(shapes, seed, torch.float16)
    for key in state:  # T5 layer norms start at one, as trained ones roughly do
        if "layer_norm" in key:
            state[key] = torch.ones_like(state[key])
    return state


def vae_state(seed: int) -> dict[str, torch.Tensor]:
    from hunyuan_core.vae import HunyuanImageVAE, VAEConfig

    config = VAEConfig(block_out_channels=(32, 32, 32, 32, 128, 128), layers_per_block=1)
    with torch.device("meta"):
        model = HunyuanImageVAE(config, dtype=torch.float16)
    state = random_tensors(shapes_of(model), seed, torch.float16)
    for key in state:
        if ".norm" in key and key.endswith(".weight"):
            state[key] = torch.ones_like(state[key])
    return state


def refiner_vae_state(seed: int) -> dict[str, torch.Tensor]:
    """Comfy-Org's layout (``nin_shortcut.conv`` spelling, fp16) at 32 latent channels, so it packs to the DiT's 64."""
    from hunyuan_core.refiner_vae import RefinerVAEConfig
    from hunyuan_core.refiner_vae.checkpoint import comfy_name, expected_shapes

    config = RefinerVAEConfig(block_out_channels=(16, 32, 64, 64, 64), layers_per_block=1)
    shapes = {comfy_name(k): torch.Size(v) for k, v in expected_shapes(config).items()}
    state = random_tensors(shapes, seed, torch.float16)
    for key in state:
        if key.endswith(".gamma"):  # RMS norm gains around 1, as trained ones are, so activations stay in range
            state[key] = torch.ones_like(state[key])
    return state


def write_enhancer_folder(
    folder: Path, *, hidden: int, heads: int, kv_heads: int, intermediate: int, layers: int = 2,
    vocab: int = QWEN_VOCAB, std: float | None = None, seed: int = 0, dtype: torch.dtype = torch.bfloat16,
) -> Path:  # fmt: skip
    """A random Qwen2.5-VL causal LM laid out as its Hugging Face folder is downloaded: ``config.json`` and
    ``model.safetensors`` in ``dtype`` written by transformers (the vision tower included, as released, though the
    pack never reads it), ``generation_config.json``, and the Qwen tokenizer files of the ComfyUI in use.

    Norm gains are one, as trained ones roughly are; every other weight is drawn from N(0, ``std``), or with
    ``std`` None from N(0, 1 / fan-in) (vectors 0.02), so a wide model's logits stay in a trained model's range."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    half = hidden // heads // 2  # M-RoPE splits each head's rotary half into temporal, height and width sections
    text = {
        "vocab_size": vocab, "hidden_size": hidden, "intermediate_size": intermediate, "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": kv_heads, "tie_word_embeddings": False,
        "rope_scaling": {"type": "mrope", "mrope_section": [half // 4, 3 * half // 8, 3 * half // 8]},
    }  # fmt: skip
    vision = {"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": hidden,
              "fullatt_block_indexes": [0]}  # fmt: skip
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=False)
    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(config)
    model = model.to_empty(device="cpu").eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name and name.endswith(".weight"):
                param.fill_(1.0)
            else:
                scale = std if std is not None else param.shape[-1] ** -0.5 if param.ndim > 1 else 0.02
                param.copy_(torch.randn(param.shape, generator=gen) * scale)
    folder.mkdir(parents=True, exist_ok=True)
    model.to(dtype).save_pretrained(folder)
    (folder / "generation_config.json").write_text(json.dumps(ENHANCER_GENERATION, indent=2) + "\n")
    tokenizer = find_comfyui() / "comfy" / "text_encoders" / "qwen25_tokenizer"
    for file in sorted(tokenizer.iterdir()):
        shutil.copy(file, folder / file.name)
    return folder


def write_tiny_enhancer(
    folder: Path, seed: int = 20, dtype: torch.dtype = torch.bfloat16, qwen_heads: bool = False
) -> Path:
    """A tiny prompt enhancer folder (``write_enhancer_folder``, weights wide enough that greedy decoding picks
    varied tokens). ``qwen_heads``: Qwen2.5's 128-wide attention heads, which a copy of the weights in one file
    without config.json must have, instead of 32-wide ones."""
    return write_enhancer_folder(
        folder, hidden=256 if qwen_heads else 64, heads=2, kv_heads=1, intermediate=128, std=0.2, seed=seed,
        dtype=dtype,
    )  # fmt: skip


def model_path(models_dir: Path, file: ModelFile) -> Path:
    """Where ComfyUI looks for a released file: ``models_dir/<folder>/<name>``."""
    return models_dir / file.folder / file.name


def write_tiny_models(models_dir: Path, overwrite: bool = False) -> list[Path]:
    """Write the tiny set under ``models_dir/<folder>/<real file name>``, and the prompt enhancer's folder as
    ``models_dir/LLM/PromptEnhancer-7B/``; existing files (an enhancer folder with a config.json) are kept."""
    jobs = [
        (BASE.dit_file, lambda: dit_state(BASE.name, 0)),
        (DISTILLED.dit_file, lambda: dit_state(DISTILLED.name, 1)),
        (REFINER.dit_file, lambda: dit_state(REFINER.name, 5)),
        (QWEN_FILE, lambda: qwen_state(10)),
        (GLYPH_FILE, lambda: glyph_state(11)),
        (STAGE1_VAE_FILE, lambda: vae_state(12)),
        (REFINER_VAE_FILE, lambda: refiner_vae_state(13)),
    ]
    written = []
    for file, make in jobs:
        path = model_path(models_dir, file)
        if path.exists() and not overwrite:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(make(), str(path), metadata={"hy21_tiny_test_model": "random weights"})
        written.append(path)
        log.info("wrote tiny %s", path)
    enhancer = models_dir / ENHANCER_FOLDER
    if overwrite or not (enhancer / "config.json").exists():
        written.append(write_tiny_enhancer(enhancer))
        log.info("wrote tiny %s", enhancer)
    return written
