"""The DiT's blocks, with the official module names (fused QKV layout of the released bf16 files)."""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from .attention import AttentionFn, key_attention_mask, key_masked_attention, prefix_attention, sdpa
from .layers import RMSNorm, TimestepEmbedder, apply_rope_, layer_norm, modulate


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


def gelu_tanh_(x: torch.Tensor) -> torch.Tensor:
    """``gelu_tanh`` over a fresh layer output, in place where nothing needs the input afterwards (no autograd):
    the same values without a second tensor as large as the MLP's hidden activations."""
    if x.requires_grad:
        return gelu_tanh(x)
    return torch.ops.aten.gelu_(x, approximate="tanh")


class Modulation(nn.Module):
    """SiLU -> Linear(H, factor*H) on the conditioning vector (key ``linear``)."""

    def __init__(self, hidden: int, factor: int, dtype=None, device=None, operations: SimpleNamespace = nn) -> None:
        super().__init__()
        self.factor = factor
        self.linear = operations.Linear(hidden, factor * hidden, dtype=dtype, device=device)

    def forward(self, vec: torch.Tensor) -> list[torch.Tensor]:
        return self.linear(F.silu(vec)).chunk(self.factor, dim=-1)


class Mlp(nn.Module):
    """fc1 -> activation -> fc2."""

    def __init__(self, dim: int, hidden: int, act, dtype=None, device=None, operations: SimpleNamespace = nn) -> None:
        super().__init__()
        self.fc1 = operations.Linear(dim, hidden, dtype=dtype, device=device)
        self.fc2 = operations.Linear(hidden, dim, dtype=dtype, device=device)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def modulated(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """A block's layer input: ``x`` normed and modulated, in the compute dtype (the modulation's). Only differs from
    ``modulate(layer_norm(x), ...)`` when the residual stream ``x`` is kept in float32 around fp16 layers."""
    return modulate(layer_norm(x), shift, scale).to(shift.dtype)


def add_gated(residual: torch.Tensor, gate: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``residual + gate * out``, multiplied in the residual stream's dtype (float32 around fp16 layers, where the
    product could overflow; the same dtype otherwise, so nothing changes), the residual added in place."""
    update = gate.unsqueeze(1).to(residual.dtype) * out
    update += residual
    return update


def split_heads(x: torch.Tensor, parts: int, heads: int) -> list[torch.Tensor]:
    """``[B, L, parts*heads*D]`` -> ``parts`` tensors ``[B, L, heads, D]``."""
    return list(x.unflatten(-1, (parts, heads, -1)).unbind(2))


class DoubleStreamBlock(nn.Module):
    """Separate image and text weights, one joint attention over [image, valid text]."""

    def __init__(self, hidden: int, heads: int, mlp_hidden: int, dtype=None, device=None, operations=nn) -> None:
        super().__init__()
        self.heads = heads
        head_dim = hidden // heads
        kw = {"dtype": dtype, "device": device}
        for stream in ("img", "txt"):
            setattr(self, f"{stream}_mod", Modulation(hidden, 6, operations=operations, **kw))
            setattr(self, f"{stream}_attn_qkv", operations.Linear(hidden, 3 * hidden, **kw))
            setattr(self, f"{stream}_attn_q_norm", RMSNorm(head_dim, **kw))
            setattr(self, f"{stream}_attn_k_norm", RMSNorm(head_dim, **kw))
            setattr(self, f"{stream}_attn_proj", operations.Linear(hidden, hidden, **kw))
            setattr(self, f"{stream}_mlp", Mlp(hidden, mlp_hidden, gelu_tanh_, operations=operations, **kw))

    def _qkv(self, stream: str, x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor):
        qkv = getattr(self, f"{stream}_attn_qkv")(modulated(x, shift, scale))
        q, k, v = split_heads(qkv, 3, self.heads)
        q = getattr(self, f"{stream}_attn_q_norm")(q)
        k = getattr(self, f"{stream}_attn_k_norm")(k)
        return q, k, v

    def image_input(self, img: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
        """The image stream's normed, modulated input to attention (a step cache's probe)."""
        shift, scale = self.img_mod(vec)[:2]
        return modulated(img, shift, scale)

    def forward(self, img, txt, vec, rope, valid, attn: AttentionFn = sdpa):
        i_shift1, i_scale1, i_gate1, i_shift2, i_scale2, i_gate2 = self.img_mod(vec)
        t_shift1, t_scale1, t_gate1, t_shift2, t_scale2, t_gate2 = self.txt_mod(vec)
        iq, ik, iv = self._qkv("img", img, i_shift1, i_scale1)
        tq, tk, tv = self._qkv("txt", txt, t_shift1, t_scale1)
        iq, ik = apply_rope_(iq, rope), apply_rope_(ik, rope)
        out = prefix_attention(torch.cat([iq, tq], 1), torch.cat([ik, tk], 1), torch.cat([iv, tv], 1), valid, attn)
        img_attn, txt_attn = out[:, : img.shape[1]], out[:, img.shape[1] :]
        img = add_gated(img, i_gate1, self.img_attn_proj(img_attn))
        img = add_gated(img, i_gate2, self.img_mlp(modulated(img, i_shift2, i_scale2)))
        txt = add_gated(txt, t_gate1, self.txt_attn_proj(txt_attn))
        txt = add_gated(txt, t_gate2, self.txt_mlp(modulated(txt, t_shift2, t_scale2)))
        return img, txt


class SingleStreamBlock(nn.Module):
    """One stream over [image, text]: fused ``linear1`` = [q, k, v, mlp], ``linear2`` = [attn, mlp] -> H."""

    def __init__(self, hidden: int, heads: int, mlp_hidden: int, dtype=None, device=None, operations=nn) -> None:
        super().__init__()
        self.heads = heads
        self.hidden = hidden
        self.mlp_hidden = mlp_hidden
        kw = {"dtype": dtype, "device": device}
        self.linear1 = operations.Linear(hidden, 3 * hidden + mlp_hidden, **kw)
        self.linear2 = operations.Linear(hidden + mlp_hidden, hidden, **kw)
        self.q_norm = RMSNorm(hidden // heads, **kw)
        self.k_norm = RMSNorm(hidden // heads, **kw)
        self.modulation = Modulation(hidden, 3, operations=operations, **kw)

    def layer_input(self, x: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
        """The normed, modulated input to ``linear1`` (a step cache's probe)."""
        shift, scale = self.modulation(vec)[:2]
        return modulated(x, shift, scale)

    def forward(self, x, vec, rope, valid, attn: AttentionFn = sdpa):
        """``rope`` rotates the whole joint sequence: the image tokens' rotations, then identity rows for the text."""
        shift, scale, gate = self.modulation(vec)
        fused = self.linear1(modulated(x, shift, scale))  # [q, k, v, mlp]
        q, k, v = split_heads(fused[..., : 3 * self.hidden], 3, self.heads)
        q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope_(q, rope), apply_rope_(k, rope)
        out = prefix_attention(q, k, v, valid, attn)
        mlp = gelu_tanh_(fused[..., 3 * self.hidden :])  # fused is read for the last time here
        return add_gated(x, gate, self.linear2(torch.cat([out, mlp], -1)))


class TokenRefinerBlock(nn.Module):
    """Self-attention over the MLLM tokens, gated by [gate_msa, gate_mlp] only (no shift, no scale)."""

    def __init__(self, hidden: int, heads: int, dtype=None, device=None, operations=nn) -> None:
        super().__init__()
        self.heads = heads
        kw = {"dtype": dtype, "device": device}
        self.norm1 = operations.LayerNorm(hidden, eps=1e-6, elementwise_affine=True, **kw)
        self.self_attn_qkv = operations.Linear(hidden, 3 * hidden, **kw)
        self.self_attn_proj = operations.Linear(hidden, hidden, **kw)
        self.norm2 = operations.LayerNorm(hidden, eps=1e-6, elementwise_affine=True, **kw)
        self.mlp = Mlp(hidden, 4 * hidden, F.silu, operations=operations, **kw)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), operations.Linear(hidden, 2 * hidden, **kw))

    def forward(self, x, c, mask, attn: AttentionFn = sdpa):
        """``mask``: the refiner's ``key_attention_mask`` (None: every text token is valid)."""
        gate_msa, gate_mlp = self.adaLN_modulation(c).chunk(2, dim=-1)
        q, k, v = split_heads(self.self_attn_qkv(self.norm1(x)), 3, self.heads)
        x = x + gate_msa.unsqueeze(1) * self.self_attn_proj(key_masked_attention(q, k, v, mask, attn))
        return x + gate_mlp.unsqueeze(1) * self.mlp(self.norm2(x))


class TextProjection(nn.Module):
    """Linear -> SiLU -> Linear for the pooled text (keys ``linear_1``, ``linear_2``)."""

    def __init__(self, dim: int, hidden: int, dtype=None, device=None, operations=nn) -> None:
        super().__init__()
        self.linear_1 = operations.Linear(dim, hidden, dtype=dtype, device=device)
        self.linear_2 = operations.Linear(hidden, hidden, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class _RefinerStack(nn.Module):
    def __init__(self, blocks: list[TokenRefinerBlock]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)


class TokenRefiner(nn.Module):
    """``txt_in``: per-token projection refined by self-attention, conditioned on t and the masked mean text."""

    def __init__(self, text_dim: int, hidden: int, heads: int, depth: int, dtype=None, device=None, operations=nn):
        super().__init__()
        kw = {"dtype": dtype, "device": device}
        self.input_embedder = operations.Linear(text_dim, hidden, **kw)
        self.t_embedder = TimestepEmbedder(hidden, operations=operations, **kw)
        self.c_embedder = TextProjection(text_dim, hidden, operations=operations, **kw)
        self.individual_token_refiner = _RefinerStack(
            [TokenRefinerBlock(hidden, heads, operations=operations, **kw) for _ in range(depth)]
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor, mask: torch.Tensor, attn: AttentionFn = sdpa):
        weights = mask.float().unsqueeze(-1)
        pooled = ((x.float() * weights).sum(dim=1) / weights.sum(dim=1)).to(x.dtype)
        c = self.t_embedder(t, x.dtype) + self.c_embedder(pooled)
        x = self.input_embedder(x)
        attention_mask = key_attention_mask(mask)
        for block in self.individual_token_refiner.blocks:
            x = block(x, c, attention_mask, attn)
        return x


class ByT5Mapper(nn.Module):
    """``byt5_in``: LayerNorm(eps 1e-5) -> fc1 -> GELU -> fc2 -> GELU -> fc3 (exact GELU, no residual)."""

    def __init__(self, dim: int, hidden: int, out: int, dtype=None, device=None, operations=nn) -> None:
        super().__init__()
        kw = {"dtype": dtype, "device": device}
        self.layernorm = operations.LayerNorm(dim, eps=1e-5, elementwise_affine=True, **kw)
        self.fc1 = operations.Linear(dim, hidden, **kw)
        self.fc2 = operations.Linear(hidden, hidden, **kw)
        self.fc3 = operations.Linear(hidden, out, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(F.gelu(self.fc2(F.gelu(self.fc1(self.layernorm(x))))))


class FinalLayer(nn.Module):
    """Modulated (order [shift, scale]) LayerNorm and a Linear to the output channels."""

    def __init__(self, hidden: int, out: int, dtype=None, device=None, operations=nn) -> None:
        super().__init__()
        kw = {"dtype": dtype, "device": device}
        self.linear = operations.Linear(hidden, out, **kw)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), operations.Linear(hidden, 2 * hidden, **kw))

    def forward(self, x: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(vec).chunk(2, dim=-1)
        return self.linear(modulated(x, shift, scale))
