"""Tiny HunyuanImage-2.1 refiner VAE checkpoints written in every published layout, plus look-alikes to refuse."""

from __future__ import annotations

import functools

import torch
from helpers import FileLayout, cached_state

from hunyuan_core.refiner_vae import RefinerVAEConfig
from hunyuan_core.refiner_vae.checkpoint import DIFFUSERS, ORIGINAL, comfy_name, diffusers_name, expected_shapes

# The released VAE at 1/8 of every width: five levels, 16x in space, 4x in time (the last two downsamplers and
# the first two upsamplers temporal), widths (128, 256, 512, 1024, 1024) / 8 and 32 / 8 = 4 latent channels. So
# every channel ratio is the real one: downsampler shortcuts average 2, 2, 2 and 4 channels, upsampler shortcuts
# repeat 4, 2, 2 and 2 times, the encoder's output shortcut averages 16 channels and the decoder's input one
# repeats each latent channel 32 times. No ResnetBlock changes width (the resamplers do), as at full size.
TINY = RefinerVAEConfig(latent_channels=4, block_out_channels=(16, 32, 64, 128, 128), layers_per_block=2)
# More levels than resampling steps: ResnetBlocks that change width (32 -> 64 in the encoder, 32 -> 16 in the
# decoder), hence ``nin_shortcut``, absent at full size. 4x in space, 2x in time: one spatial and one temporal
# downsampler (the temporal one after the spatial one), one temporal and one spatial upsampler.
TINY_NIN = RefinerVAEConfig(
    latent_channels=4, block_out_channels=(16, 32, 32, 64), layers_per_block=1, spatial_compression=4,
    temporal_compression=2,
)  # fmt: skip


@cached_state
def random_state(cfg: RefinerVAEConfig, seed: int = 0, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Our (official) state dict with every tensor random, RMS ``gamma``s around 1, so nothing is an identity."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in expected_shapes(cfg).items():
        noise = torch.randn(shape, generator=gen)
        if name.endswith(".gamma"):
            tensor = 1.0 + 0.3 * noise
        elif len(shape) == 1:  # biases
            tensor = 0.3 * noise
        else:
            tensor = noise * torch.Size(shape[1:]).numel() ** -0.5
        state[name] = tensor.to(dtype)
    return state


def official_pt(
    state: dict[str, torch.Tensor], prefix: str = "", wrapped: bool = True
) -> dict[str, torch.Tensor] | dict[str, dict[str, torch.Tensor]]:
    """Tencent's ``vae_refiner/pytorch_model.pt``: fp32, official names, optionally prefixed and/or under
    ``state_dict`` (both forms are accepted, as the exact one of the release was not read)."""
    tensors = {prefix + name: tensor.float() for name, tensor in state.items()}
    return {"state_dict": tensors} if wrapped else tensors


def comfy_org(state: dict[str, torch.Tensor], wrapped_shortcuts: bool = False) -> dict[str, torch.Tensor]:
    """Comfy-Org's ``hunyuan_image_refiner_vae_fp16.safetensors``: official names, no prefix, fp16.

    ``wrapped_shortcuts`` spells the 1x1 shortcuts as ComfyUI's own module does (``nin_shortcut.conv.*``).
    """
    rename = comfy_name if wrapped_shortcuts else str
    return {rename(name): tensor.half() for name, tensor in state.items()}


def diffusers_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers ``AutoencoderKLHunyuanImageRefiner`` names (``vae/diffusion_pytorch_model.safetensors``)."""
    return {diffusers_name(name): tensor for name, tensor in state.items()}


def official_pt_with_training_state(state: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """The official file as a training run leaves it: under ``state_dict``, prefix ``vae.``, next to loss tensors."""
    data = official_pt(state, prefix="vae.")
    data["state_dict"]["loss.logvar"] = torch.zeros(())
    data["state_dict"]["loss.discriminator.main.0.weight"] = torch.zeros(4, 3, 4, 4)
    return data


# Every published layout, written from our state dict, with what inspecting it must report.
LAYOUTS = {
    "official_pt_vae_prefix": FileLayout(
        "vae_refiner/pytorch_model.pt", official_pt_with_training_state, ORIGINAL, "vae.", torch.float32
    ),
    "official_pt_bare": FileLayout(
        "pytorch_model.pt", functools.partial(official_pt, wrapped=False), ORIGINAL, "", torch.float32
    ),
    "comfy_org_fp16": FileLayout("hunyuan_image_refiner_vae_fp16.safetensors", comfy_org, ORIGINAL, "", torch.float16),
    "comfy_wrapped_shortcuts": FileLayout(
        "refiner_vae_comfy.safetensors",
        functools.partial(comfy_org, wrapped_shortcuts=True),
        ORIGINAL,
        "",
        torch.float16,
    ),
    "diffusers_file": FileLayout("diffusion_pytorch_model.safetensors", diffusers_layout, DIFFUSERS, "", torch.float32),
    "diffusers_folder": FileLayout(
        "vae/diffusion_pytorch_model.safetensors", diffusers_layout, DIFFUSERS, "", torch.float32, folder=True
    ),
}


def hunyuan_video_vae() -> dict[str, torch.Tensor]:
    """HunyuanVideo's first VAE in its original names: causal 3-D convs under the same names, GroupNorm layers
    (weight and bias, no ``gamma``), 16 latent channels. A few tensors are enough to tell it apart."""
    g = torch.Generator().manual_seed(3)

    def t(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=g) * 0.1

    return {
        "encoder.conv_in.conv.weight": t(32, 3, 3, 3, 3),
        "encoder.down.0.block.0.norm1.weight": t(32),
        "encoder.down.0.block.0.norm1.bias": t(32),
        "encoder.down.0.block.0.conv1.conv.weight": t(32, 32, 3, 3, 3),
        "encoder.conv_out.conv.weight": t(32, 64, 3, 3, 3),
        "decoder.conv_in.conv.weight": t(64, 16, 3, 3, 3),
        "decoder.norm_out.weight": t(32),
        "decoder.norm_out.bias": t(32),
        "decoder.conv_out.conv.weight": t(3, 32, 3, 3, 3),
    }


def to_diffusers_model(state: dict[str, torch.Tensor], cfg: RefinerVAEConfig):
    """A diffusers ``AutoencoderKLHunyuanImageRefiner`` for ``cfg`` holding ``state`` (loaded strictly)."""
    from diffusers import AutoencoderKLHunyuanImageRefiner

    model = AutoencoderKLHunyuanImageRefiner(
        in_channels=cfg.in_channels, out_channels=cfg.out_channels, latent_channels=cfg.latent_channels,
        block_out_channels=cfg.block_out_channels, layers_per_block=cfg.layers_per_block,
        spatial_compression_ratio=cfg.spatial_compression, temporal_compression_ratio=cfg.temporal_compression,
        scaling_factor=cfg.scaling_factor,
    )  # fmt: skip
    model.load_state_dict(diffusers_layout(state), strict=True)
    return model.eval()
