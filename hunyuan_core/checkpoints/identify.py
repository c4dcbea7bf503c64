"""Name what a checkpoint file appears to be, from its keys and shapes, for error messages.

Every loader in the core refuses files that are not what it expects; this module gives those refusals a useful
second half ("... it appears to be a VAE"); ``describe_foreign_vae`` names VAEs of other model families, which
both VAE loaders refuse.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

ShapeOf = Callable[[str], tuple[int, ...]]


def _first(keys: Iterable[str], pattern: str) -> str | None:
    rx = re.compile(pattern)
    return next((k for k in keys if rx.search(k)), None)


def describe_full_checkpoint(keys: list[str]) -> str | None:
    """Name an all-in-one checkpoint (diffusion model, text encoder and VAE in one file, as SD / SDXL / SD3 / Flux
    "checkpoints" ship), or None when ``keys`` are not one."""

    def has(pattern: str) -> bool:
        return _first(keys, pattern) is not None

    if not (has(r"(^|\.)diffusion_model\.") and has(r"(^|\.)first_stage_model\.")):
        return None
    if has(r"diffusion_model\.input_blocks\."):
        family = "SDXL" if has(r"conditioner\.embedders\.1\.") else "Stable Diffusion 1.x/2.x"
    elif has(r"diffusion_model\.joint_blocks\."):
        family = "Stable Diffusion 3"
    elif has(r"diffusion_model\.double_blocks\."):
        family = "Flux-style"
    else:
        family = "another model's"
    return (
        f"a full {family} checkpoint (diffusion model, text encoder and VAE in one file; it belongs in "
        "models/checkpoints, for a checkpoint loader)"
    )


def describe_checkpoint(keys: list[str], shape_of: ShapeOf | None = None) -> str:
    """A short description such as 'a VAE' or 'a text encoder (CLIP)'."""
    if not keys:
        return "an empty checkpoint"

    def has(pattern: str) -> bool:
        return _first(keys, pattern) is not None

    full = describe_full_checkpoint(keys)
    if full:
        return full
    if has(r"\.(lora_up|lora_down|lora_A|lora_B)\.weight$") or has(r"\.(hada_w1_a|lokr_w1|lokr_w2)$"):
        return "a LoRA (changes to a model, not a model): put it in models/loras and apply it with a LoRA loader"

    def width(pattern: str, dim: int) -> int | None:
        key = _first(keys, pattern)
        if key is None or shape_of is None:
            return None
        shape = shape_of(key)
        return shape[dim] if len(shape) > dim else None

    if has(r"individual_token_refiner\.") and has(r"double_blocks\.\d+\.") and not has(r"(^|\.)vector_in\."):
        return "a HunyuanImage-2.1 diffusion model (DiT)"
    if has(r"context_embedder\.token_refiner\.") and has(r"transformer_blocks\.\d+\."):
        return "a HunyuanImage-2.1 diffusion model (DiT, diffusers layout)"
    if has(r"(^|\.)decoder\.conv_in\.") and not has(r"(^|\.)encoder\."):
        return "a VAE decoder alone (no encoder weights; a decode-only export): pick the full VAE file"
    if has(r"(^|\.)decoder\.conv_in\.") or has(r"(^|\.)encoder\.down\.\d") or has(r"(^|\.)encoder\.down_blocks\.\d"):
        return "a VAE"
    if has(r"input_blocks\.\d+\.\d+\.") and has(r"output_blocks\."):
        return "a Stable Diffusion / SDXL UNet checkpoint"
    if has(r"(^|\.)text_model\.encoder\.layers\.\d+\.") or has(r"(^|\.)transformer\.resblocks\.\d+\."):
        return "a text encoder (CLIP)"
    if has(r"(^|\.)block\.\d+\.layer\.\d+\.SelfAttention\.") or has(r"(^|\.)shared\.weight$"):
        d_model = width(r"(^|\.)block\.0\.layer\.0\.SelfAttention\.q\.weight$", 1)
        if d_model == 4096:
            return "a text encoder (T5-XXL)"
        return f"a text encoder (T5 / ByT5{f', width {d_model}' if d_model else ''})"
    if has(r"(^|\.)layers\.\d+\.self_attn\.q_proj\.") or has(r"(^|\.)embed_tokens\.weight$"):
        return "a text encoder (a decoder-only language model such as Qwen2.5-VL or Llama)"
    if has(r"(^|\.)blocks\.\d+\.self_attn\.") and (has(r"(^|\.)text_embedding\.") or has(r"(^|\.)head\.modulation$")):
        return "a Wan video transformer"
    if has(r"double_blocks\.\d+\.") and has(r"(^|\.)vector_in\.") and has(r"individual_token_refiner"):
        return "a HunyuanVideo transformer"
    if has(r"double_blocks\.\d+\.") and (has(r"(^|\.)img_in\.weight$") or has(r"(^|\.)txt_in\.weight$")):
        return "a Flux-style transformer"
    if has(r"(^|\.)transformer_blocks\.\d+\."):
        return "a diffusers transformer of another model"
    return f"an unknown checkpoint ({len(keys)} tensors, e.g. {sorted(keys)[0]!r})"


def describe_foreign_vae(names: set[str], shape_of: ShapeOf, prefix: str) -> str | None:
    """Name a VAE of another model family (SD/SDXL, SD3/Flux, video VAEs), or None if nothing matches.

    ``names`` are the file's keys without ``prefix``; ``shape_of`` takes a full key.
    """

    def shape(name: str) -> tuple[int, ...] | None:
        return shape_of(prefix + name) if name in names else None

    conv3d = shape("decoder.conv_in.conv.weight")
    if conv3d is not None:
        latent = conv3d[1]
        if latent == 32:
            return (
                "the HunyuanImage-2.1 refiner VAE (32 latent channels, causal 3-D, 16x); load it as the refiner VAE "
                "with the HunyuanImage 2.1 Refiner VAE Loader"
            )
        return f"a causal 3-D video VAE such as HunyuanVideo's ({latent} latent channels)"
    conv_in = shape("decoder.conv_in.weight")
    if conv_in is None:
        return None
    latent = conv_in[1]
    if "encoder.down_blocks.0.resnets.0.conv1.weight" in names:
        layout = ", diffusers AutoencoderKL layout"
    else:
        # The DC-AE signature: a downsampler's conv emits 1/4 of the next level's width (blocks go into channels);
        # SD-style VAEs downsample with a strided conv that keeps the width.
        down, nxt = shape("encoder.down.0.downsample.conv.weight"), shape("encoder.down.1.block.0.conv1.weight")
        if down is None or nxt is None or nxt[1] == 4 * down[0]:
            return None
        layout = ""
    if latent == 4:
        return f"a Stable Diffusion 1.x/2.x or SDXL VAE (4 latent channels, 8x{layout})"
    if latent == 16:
        return f"a 16-channel VAE such as SD3's or Flux's (8x{layout})"
    return f"a VAE of another model ({latent} latent channels{layout})"
