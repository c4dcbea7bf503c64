"""How much memory a DiT step needs for its activations, from the model's own widths: to refuse sizes no device
can run and to say what a large size costs before it runs.

Weights can stream (ComfyUI keeps what does not fit in RAM and moves it per step); a step's activations cannot. The
peak is in a single-stream block, counted live tensor by tensor below; a whole forward measured on the CPU takes
``FORWARD_OVER_BLOCK`` times that count (the residual streams, RoPE tables and the output besides the block; see
``tests/test_memory_estimate.py``). PyTorch's SDPA keeps no token-by-token attention matrix here (CPU and GPU).
"""

from __future__ import annotations

import math

from .dit.config import DiTConfig
from .resolution import SPATIAL_COMPRESSION

GIB = 1024**3
FORWARD_OVER_BLOCK = 1.18  # measured: a forward's peak over the single-stream block's count (48^2: 1.184, 96^2: 1.186)


def single_block_stages(cfg: DiTConfig) -> dict[str, int]:
    """Live activation elements per token at the steps of ``SingleStreamBlock.forward`` that bound its peak.

    h = hidden, m = MLP width; ``linear1`` gives [q, k, v, mlp] (3h + m), q and k are normed and roped (new
    tensors), v and the mlp part stay views of linear1's output until the block returns (the GELU runs in place on
    the mlp part).
    """
    h, m = cfg.hidden_size, cfg.mlp_hidden
    return {
        "linear1 in": h + h,  # x, the modulated norm of x
        "linear1 out": h + h + (3 * h + m),
        "attention, cat": h + (3 * h + m) + 2 * h + h + (h + m),  # x, l1, q, k, attn, cat (gelu in place in l1)
        "linear2 in": h + (3 * h + m) + 2 * h + (h + m),  # attn freed once concatenated
        "linear2 out": h + (3 * h + m) + 2 * h + (h + m) + h,
    }


def _bytes_per_token(cfg: DiTConfig, dtype_bytes: int) -> float:
    return max(single_block_stages(cfg).values()) * dtype_bytes * FORWARD_OVER_BLOCK


def step_activation_bytes(cfg: DiTConfig, image_tokens: int, text_tokens: int, batch: int, dtype_bytes: int) -> int:
    """Peak activation bytes of one DiT forward of ``batch`` samples (the weights not counted); ``image_tokens`` is
    the latent's height x width (``resolution.latent_tokens`` of the image size)."""
    return int(batch * (image_tokens + text_tokens) * _bytes_per_token(cfg, dtype_bytes))


def largest_square(cfg: DiTConfig, budget: int, text_tokens: int, batch: int, dtype_bytes: int) -> int:
    """The side (pixels, a multiple of the VAE's 32) of the largest square image whose step fits ``budget`` bytes;
    0 when none does."""
    tokens = int(budget // (batch * _bytes_per_token(cfg, dtype_bytes))) - text_tokens
    return 0 if tokens <= 0 else math.isqrt(tokens) * SPATIAL_COMPRESSION


# Live full-resolution tensors of the VAE decoder's last level (its ResNet blocks at the output size), measured: the
# official stage-1 VAE decoding 384^2 and 512^2 in float32 on the CPU peaked at 2066 and 2157 bytes a pixel over
# the loaded model, 128 channels x 4 bytes x 4.0-4.2 tensors; 4.5 leaves room for the allocator.
VAE_DECODE_TENSORS = 4.5


def vae_decode_bytes(last_level_channels: int, width: int, height: int, dtype_bytes: int) -> int:
    """Peak bytes of decoding one ``width x height`` image in one piece (the weights not counted)."""
    return int(VAE_DECODE_TENSORS * last_level_channels * dtype_bytes * width * height)
