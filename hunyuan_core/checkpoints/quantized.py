"""Linear layers whose weights stay compact in memory (fp8 with a scale, or GGUF blocks) and are expanded to the
compute dtype per call, on whatever device the weight is on at that moment.

``QuantizedWeights`` holds the whole format logic (what the layer stores, how it loads, how a weight expands), with
no forward of its own. ``QuantizedLinear`` puts it on a plain ``nn.Module``; a host puts the same mixin on its own
streaming ``Linear`` (ComfyUI: a ``comfy.ops`` subclass built in ``nodes/``) and hands that class to the loaders as
``operations.QuantizedLinear``, so ComfyUI can keep such layers off the GPU and stream them per forward.

Formats:
- fp8 (the official FP8 path: weight-only, ``F.linear(x, w.to(bf16) * scale, bias)``; a fused layer made of parts
  with their own scales keeps one scale per output row);
- a GGML type (Q8_0 ... Q2_K): the weight is the file's block bytes, one byte row per output row, dequantized by
  ``gguf_quants`` on the weight's device.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from .fp8 import FP8_DTYPES, Fp8Weight
from .gguf_file import GGMLWeight
from .gguf_quants import block_of, dequantize

FP8 = "fp8"
QuantizedValue = Fp8Weight | GGMLWeight


def format_of(value: QuantizedValue) -> str:
    """``"fp8"`` or the GGML type's name, e.g. ``"Q4_K"``."""
    return FP8 if isinstance(value, Fp8Weight) else value.type_name


FP8_MAX = float(torch.finfo(torch.float8_e4m3fn).max)
MATMUL_MULTIPLE = 16  # fp8 GEMM kernels need both weight dimensions divisible by this


def fp8_matmul_available(device: torch.device) -> bool:
    """Whether ``torch._scaled_mm`` can run on ``device``: CUDA GPUs of compute capability 8.9+ (Ada, Hopper and
    later) and the CPU (slow there, but exact to its definition, which is what the tests check)."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 9)
    return device.type == "cpu"


def scaled_fp8_linear(
    x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor | None, bias: torch.Tensor | None, dtype: torch.dtype
) -> torch.Tensor | None:
    """``x @ (weight * scale).T + bias`` as one fp8 GEMM: ``x`` quantized to e4m3 with a per-tensor scale (its amax
    / 448), ``weight`` used as stored. None when the kernel cannot take this case (device, per-row weight scales,
    e5m2 weights, sizes), so the caller falls back to the weight-only path."""
    out_features, in_features = weight.shape
    if (
        weight.dtype != torch.float8_e4m3fn
        or scale is None
        or scale.numel() != 1
        or in_features % MATMUL_MULTIPLE
        or out_features % MATMUL_MULTIPLE
        or not fp8_matmul_available(x.device)
    ):
        return None
    rows = x.reshape(-1, in_features)
    x_scale = (rows.abs().amax().float() / FP8_MAX).clamp(min=1e-12)
    x_fp8 = (rows.float() / x_scale).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    w_scale = scale.to(x.device, torch.float32).reshape(())
    out = torch._scaled_mm(
        x_fp8, weight.t(), scale_a=x_scale, scale_b=w_scale, bias=None, out_dtype=dtype
    )  # weight.t() of a row-major weight is the column-major operand the kernel wants
    if bias is not None:
        out = out + bias
    return out.reshape(*x.shape[:-1], out_features)


class QuantizedWeights:
    """The compact-weight half of a linear layer: ``weight`` (fp8, or uint8 GGML block rows), ``weight_scale``
    (fp8 only: fp32, one value or one per output row) and ``bias`` (compute dtype), loaded through
    ``load_state_dict`` like any other layer, and ``expand`` to make the compute-dtype weight from them."""

    weight_format: str
    compute_dtype: torch.dtype
    fp8_matmul: bool = False  # opt-in fast path for fp8 layers (see ``linear``); off keeps the official arithmetic

    def setup_quantized(
        self, in_features: int, out_features: int, has_bias: bool, compute_dtype: torch.dtype, weight_format: str
    ) -> None:
        """Empty (meta) tensors of the right kinds and sizes; call from ``__init__`` after the base class's."""
        self.in_features, self.out_features = in_features, out_features
        self.compute_dtype, self.weight_format = compute_dtype, weight_format
        with torch.device("meta"):
            if weight_format == FP8:
                weight = torch.empty(out_features, in_features, dtype=torch.float8_e4m3fn)
            else:
                block = block_of(weight_format)
                weight = torch.empty(out_features, block.nbytes((1, in_features)), dtype=torch.uint8)
            self.weight = nn.Parameter(weight, requires_grad=False)
            bias = torch.empty(out_features, dtype=compute_dtype) if has_bias else None
            self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)
            scale = torch.ones((), dtype=torch.float32) if weight_format == FP8 else None
        self.register_buffer("weight_scale", scale)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):
        # Self-contained on purpose: the base class may be a host's lazy layer with its own idea of a weight.
        wanted = {"weight": self.weight, "bias": self.bias, "weight_scale": self.weight_scale}
        for name, current in wanted.items():
            key = prefix + name
            if current is None:
                if key in state_dict:
                    unexpected.append(key)
                continue
            if key not in state_dict:
                missing.append(key)
                continue
            value = state_dict[key]
            problem = self._refusal(name, value, current)
            if problem:
                errors.append(f"{type(self).__name__} {key}: {problem}")
                continue
            if name == "weight_scale":
                self.weight_scale = value.detach()
            else:
                setattr(self, name, nn.Parameter(value.detach(), requires_grad=False))

    def _refusal(self, name: str, value: torch.Tensor, current: torch.Tensor) -> str | None:
        if name == "weight_scale":
            rows = (self.out_features, 1)
            ok = value.dtype == torch.float32 and tuple(value.shape) in ((), rows)
            got = f"{value.dtype} {tuple(value.shape)}"
            return None if ok else f"needs a float32 scale of shape () or {rows}, got {got}"
        if name == "weight" and self.weight_format == FP8 and value.dtype not in FP8_DTYPES:
            return f"needs a float8 tensor, got {value.dtype}"
        if name == "weight" and self.weight_format != FP8 and value.dtype != torch.uint8:
            return f"needs the {self.weight_format} block bytes (uint8), got {value.dtype}"
        if tuple(value.shape) != tuple(current.shape):
            return f"shape {tuple(value.shape)} does not fit the layer's {tuple(current.shape)}"
        return None

    def expand(self, weight: torch.Tensor, scale: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
        """The ``dtype`` weight made from the stored one (and its scale), on ``weight``'s device."""
        if self.weight_format == FP8:
            scale = scale.to(weight.device, torch.float32)
            if scale.numel() == 1:  # the official expression: a bf16 weight times a float32 0-dim scale
                return weight.to(dtype) * scale.reshape(())
            # per-row scales (a fused layer of parts with their own): float32, in place, rounded once
            return weight.float().mul_(scale).to(dtype)
        return dequantize(weight, self.weight_format, (self.out_features, self.in_features), dtype)

    def dequantized_weight(self) -> torch.Tensor:
        """The full weight in the compute dtype, where it lies now (for tests and LoRA math)."""
        return self.expand(self.weight, self.weight_scale, self.compute_dtype)

    def linear(
        self, x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor | None, bias: torch.Tensor | None
    ) -> torch.Tensor:
        """``y = x @ W.T + bias`` in the compute dtype from the stored weight, all on ``x``'s device: the official
        weight-only path, or, for an fp8 layer with ``fp8_matmul`` set and a device that has the kernel, one fp8
        matmul with the input quantized per tensor (faster on Ada/Hopper GPUs; not the official arithmetic)."""
        dtype = self.compute_dtype
        bias = None if bias is None else bias.to(dtype)
        if self.fp8_matmul and self.weight_format == FP8:
            fast = scaled_fp8_linear(x, weight, scale, bias, dtype)
            if fast is not None:
                return fast
        return F.linear(x.to(dtype), self.expand(weight, scale, dtype), bias)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, {self.weight_format}, compute={self.compute_dtype}"


class QuantizedLinear(QuantizedWeights, nn.Module):
    """``y = x @ expand(weight).T + bias`` in ``compute_dtype``, on a plain module (outside ComfyUI)."""

    def __init__(
        self, in_features: int, out_features: int, bias: bool, compute_dtype: torch.dtype, weight_format: str
    ) -> None:
        nn.Module.__init__(self)
        self.setup_quantized(in_features, out_features, bias, compute_dtype, weight_format)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x, self.weight, self.weight_scale, self.bias)


class QuantizedEmbeddingWeights(QuantizedWeights):
    """A GGML-quantized embedding table: ``weight`` holds one byte row per token, and a lookup dequantizes only the
    rows it needs (a 152k-token table stays a third of its bf16 size and is never expanded whole)."""

    def setup_quantized_embedding(
        self, num_embeddings: int, embedding_dim: int, compute_dtype: torch.dtype, weight_format: str
    ) -> None:
        if weight_format == FP8:
            raise ValueError("fp8 embedding tables are expanded at load, not kept as a quantized embedding")
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.setup_quantized(embedding_dim, num_embeddings, False, compute_dtype, weight_format)

    def lookup(self, ids: torch.Tensor, weight: torch.Tensor, device: torch.device) -> torch.Tensor:
        """The compute-dtype vectors of ``ids``: their byte rows gathered where ``weight`` lies, moved to ``device``
        and dequantized there."""
        rows = weight[ids.reshape(-1).to(weight.device)].to(device)
        values = dequantize(rows, self.weight_format, (rows.shape[0], self.embedding_dim), self.compute_dtype)
        return values.reshape(*ids.shape, self.embedding_dim)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, {self.weight_format}, compute={self.compute_dtype}"


class QuantizedEmbedding(QuantizedEmbeddingWeights, nn.Module):
    """An embedding whose table stays GGML-quantized, on a plain module (outside ComfyUI)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, compute_dtype: torch.dtype, weight_format: str) -> None:
        nn.Module.__init__(self)
        self.setup_quantized_embedding(num_embeddings, embedding_dim, compute_dtype, weight_format)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lookup(ids, self.weight, ids.device)


def quantized_state(
    value: QuantizedValue, bias: torch.Tensor | None, compute_dtype: torch.dtype, device: torch.device | str
) -> dict[str, torch.Tensor]:
    """The state dict a quantized layer loads: the weight as stored (fp8, or GGML byte rows), an fp8 weight's scale
    in fp32 (a column of per-row scales when the fused layer's parts had their own), the bias in the compute dtype."""
    if isinstance(value, Fp8Weight):
        scale = value.scale.float()
        scale = scale.reshape(-1, 1) if scale.numel() > 1 else scale.reshape(())
        state = {"weight": value.weight.to(device), "weight_scale": scale.to(device)}
    else:
        state = {"weight": value.data.reshape(value.shape[0], -1).to(device)}
    if bias is not None:
        state["bias"] = bias.to(device, compute_dtype)
    return state


def swap_in_quantized(
    model: nn.Module,
    module_name: str,
    value: QuantizedValue,
    *,
    has_bias: bool,
    compute_dtype: torch.dtype,
    operations: SimpleNamespace | type = nn,
) -> nn.Module:
    """Replace the ``Linear`` (or, for GGML tables, the ``Embedding``) at ``module_name`` by an empty quantized layer
    for ``value``'s format, ready for ``load_state_dict``: the host's ``operations.QuantizedLinear`` /
    ``QuantizedEmbedding`` when it has them, else the plain ones here. The sizes come from the layer's attributes (a
    lazy layer has no weight yet)."""
    old = model.get_submodule(module_name)
    with torch.device("meta"):
        if isinstance(old, nn.Embedding):
            layer_class = getattr(operations, "QuantizedEmbedding", QuantizedEmbedding)
            layer = layer_class(old.num_embeddings, old.embedding_dim, compute_dtype, format_of(value))
        else:
            layer_class = getattr(operations, "QuantizedLinear", QuantizedLinear)
            layer = layer_class(old.in_features, old.out_features, has_bias, compute_dtype, format_of(value))
    parent, _, child = module_name.rpartition(".")
    setattr(model.get_submodule(parent), child, layer)
    return layer
