"""Tiny HunyuanImage-2.1 stage-1 VAE checkpoints written in every published layout, plus look-alikes to refuse."""

from __future__ import annotations

import torch
from helpers import FileLayout, cached_state

from hunyuan_core.vae import VAEConfig
from hunyuan_core.vae.checkpoint import DIFFUSERS, ORIGINAL, diffusers_name, expected_shapes

# Six levels and 32x like the real VAE, at widths GroupNorm(32) still accepts; 16 latent channels make the
# encoder's output shortcut average groups of 8 and the decoder's input shortcut repeat 8 times, as at full size.
TINY = VAEConfig(latent_channels=16, block_out_channels=(32, 32, 64, 64, 128, 128), layers_per_block=2)
# More levels than resampling steps: ResnetBlocks that change width, hence nin_shortcut (absent at full size).
TINY_NIN = VAEConfig(
    latent_channels=16, block_out_channels=(32, 64, 64, 128), layers_per_block=1, spatial_compression=4
)


@cached_state
def random_state(cfg: VAEConfig, seed: int = 0, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Our (official) state dict with every tensor random, GroupNorm scales included, so nothing is an identity."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in expected_shapes(cfg).items():
        fan_in = max(1, torch.Size(shape[1:]).numel())
        scale = 1.0 if len(shape) == 1 else fan_in**-0.5
        base = 1.0 if len(shape) == 1 and name.endswith("weight") else 0.0
        state[name] = (base + torch.randn(shape, generator=gen) * scale * (0.3 if len(shape) == 1 else 1.0)).to(dtype)
    return state


def official_ckpt(state: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """The official ``pytorch_model.ckpt``: ``{"state_dict": {"vae.<name>": ...}}``, 3x3 conv weights of the
    ResnetBlocks' first convolutions and of the stems stored 5-D with T=1 (the official loader squeezes them)."""
    out = {}
    for name, tensor in state.items():
        if tensor.ndim == 4 and (".conv1." in name or "conv_in" in name or "conv_out" in name):
            tensor = tensor.unsqueeze(2)
        out[f"vae.{name}"] = tensor
    return {"state_dict": out}


def comfy_org(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """Comfy-Org's ``hunyuan_image_2.1_vae_fp16.safetensors``: ComfyUI names (= official, no prefix), fp16."""
    return {prefix + name: tensor.half() for name, tensor in state.items()}


def diffusers_layout(state: dict[str, torch.Tensor], cfg: VAEConfig) -> dict[str, torch.Tensor]:
    """diffusers ``AutoencoderKLHunyuanImage`` names (``diffusion_pytorch_model.safetensors``)."""
    return {diffusers_name(name, cfg): tensor for name, tensor in state.items()}


# Every published layout, written from our state dict and config, with what inspecting it must report.
LAYOUTS = {
    "official_ckpt": FileLayout(
        "vae_2_1/pytorch_model.ckpt", lambda state, cfg: official_ckpt(state), ORIGINAL, "vae.", torch.float32
    ),
    "comfy_org_fp16": FileLayout(
        "hunyuan_image_2.1_vae_fp16.safetensors", lambda state, cfg: comfy_org(state), ORIGINAL, "", torch.float16
    ),
    "comfy_checkpoint_prefix": FileLayout(
        "with_prefix.safetensors",
        lambda state, cfg: comfy_org(state, "first_stage_model."),
        ORIGINAL,
        "first_stage_model.",
        torch.float16,
    ),
    "diffusers_file": FileLayout("diffusion_pytorch_model.safetensors", diffusers_layout, DIFFUSERS, "", torch.float32),
    "diffusers_folder": FileLayout(
        "vae/diffusion_pytorch_model.safetensors", diffusers_layout, DIFFUSERS, "", torch.float32, folder=True
    ),
}


def sd_vae_ldm(latent: int = 4) -> dict[str, torch.Tensor]:
    """An SD/SDXL-style KL VAE in the original LDM names (what ComfyUI saves): strided-conv downsampling that
    keeps the width, 4 latent channels, quant convs. Two levels of width 32 and 64 are enough to tell it apart."""
    g = torch.Generator().manual_seed(1)

    def t(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=g) * 0.1

    def resnet(prefix: str, c_in: int, c_out: int) -> dict[str, torch.Tensor]:
        out = {f"{prefix}.norm1.weight": t(c_in), f"{prefix}.norm1.bias": t(c_in),
               f"{prefix}.conv1.weight": t(c_out, c_in, 3, 3), f"{prefix}.conv1.bias": t(c_out),
               f"{prefix}.norm2.weight": t(c_out), f"{prefix}.norm2.bias": t(c_out),
               f"{prefix}.conv2.weight": t(c_out, c_out, 3, 3), f"{prefix}.conv2.bias": t(c_out)}  # fmt: skip
        if c_in != c_out:
            out[f"{prefix}.nin_shortcut.weight"] = t(c_out, c_in, 1, 1)
        return out

    sd = {"encoder.conv_in.weight": t(32, 3, 3, 3), "encoder.down.0.downsample.conv.weight": t(32, 32, 3, 3),
          "encoder.conv_out.weight": t(2 * latent, 64, 3, 3), "quant_conv.weight": t(2 * latent, 2 * latent, 1, 1),
          "post_quant_conv.weight": t(latent, latent, 1, 1), "decoder.conv_in.weight": t(64, latent, 3, 3),
          "decoder.up.1.upsample.conv.weight": t(64, 64, 3, 3), "decoder.conv_out.weight": t(3, 32, 3, 3)}  # fmt: skip
    sd |= resnet("encoder.down.0.block.0", 32, 32) | resnet("encoder.down.1.block.0", 32, 64)
    sd |= resnet("decoder.up.1.block.0", 64, 64) | resnet("decoder.up.0.block.0", 64, 32)
    return sd


def sd_vae_diffusers(latent: int = 4) -> dict[str, torch.Tensor]:
    """The same family in diffusers' ``AutoencoderKL`` names, built by diffusers itself."""
    from diffusers import AutoencoderKL

    torch.manual_seed(2)
    model = AutoencoderKL(
        block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=latent, norm_num_groups=32, layers_per_block=1,
    )  # fmt: skip
    return {k: v.contiguous() for k, v in model.state_dict().items()}
