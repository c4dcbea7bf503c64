"""The layer classes the pack's loaders build with: ComfyUI's ``comfy.ops.manual_cast``, a streaming quantized
``Linear`` for fp8 and GGUF weights, and ``streamable`` for the few modules that hold their own parameters.

``StreamedQuantizedLinear`` is a ``manual_cast.Linear`` (so ComfyUI's partial loading treats it like its own cast
layers: what does not fit stays in RAM and is moved per forward) that carries the core's ``QuantizedWeights``: the
stored weight (fp8 + scale, or GGUF block bytes) is what moves to the GPU, and it is expanded to the compute dtype
there, right before the matmul. Weight patches (LoRA: ComfyUI's ``weight_function`` in low-VRAM mode, the pack
patcher's ``expanded_weight_patch`` otherwise, see ``quantized_patching``) apply to the expanded weight.

Modules that are not layers but own a parameter (the DiT's q/k RMSNorm scales, the refiner VAE's ``gamma``, the
text encoders' norms) become ``streamable(their class)``: a ``comfy.ops.CastWeightBiasOp`` that ComfyUI may leave
in RAM, whose parameters are moved to the input's device for the call. The core keeps their arithmetic.
"""

from __future__ import annotations

import functools

import comfy.model_management as mm
import comfy.ops
import torch
import torch.nn.functional as F

from ..hunyuan_core.checkpoints.quantized import QuantizedEmbeddingWeights, QuantizedWeights
from .quantized_patching import layer_patches


class StreamedQuantizedLinear(QuantizedWeights, comfy.ops.manual_cast.Linear):
    """A quantized linear layer ComfyUI can stream: weights move compact, expand on the compute device."""

    comfy_cast_weights = True

    def __init__(
        self, in_features: int, out_features: int, bias: bool, compute_dtype: torch.dtype, weight_format: str
    ) -> None:
        comfy.ops.manual_cast.Linear.__init__(
            self, in_features, out_features, bias=bias, device="meta", dtype=compute_dtype
        )
        self.setup_quantized(in_features, out_features, bias, compute_dtype, weight_format)

    def reset_parameters(self) -> None:
        return None

    def _moved(self, tensor: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
        if tensor is None:
            return None
        return mm.cast_to(tensor, None, device, non_blocking=mm.device_supports_non_blocking(device))

    def forward_comfy_cast_weights(self, input: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        device, dtype = input.device, self.compute_dtype
        weight, scale = self._moved(self.weight, device), self._moved(self.weight_scale, device)
        bias = self._moved(self.bias, device)
        if bias is not None and self.bias_function:
            bias = bias.to(dtype)
            for patch in self.bias_function:
                bias = patch(bias)
        patches = layer_patches(self)
        if not patches:
            return self.linear(input, weight, scale, bias)
        weight = self.expand(weight, scale, dtype)  # patches (LoRA) apply to the full weight
        for patch in patches:
            weight = patch(weight)
        return F.linear(input.to(dtype), weight, None if bias is None else bias.to(dtype))

    def forward(self, input: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        # Always through the expanding path: the stored weight is never usable by a plain matmul.
        return self.forward_comfy_cast_weights(input, *args, **kwargs)


class StreamedQuantizedEmbedding(QuantizedEmbeddingWeights, comfy.ops.manual_cast.Embedding):
    """A GGUF embedding table ComfyUI can stream: a lookup gathers the needed byte rows where the table lies and
    dequantizes only those on the compute device."""

    comfy_cast_weights = True

    def __init__(self, num_embeddings: int, embedding_dim: int, compute_dtype: torch.dtype, weight_format: str) -> None:
        comfy.ops.manual_cast.Embedding.__init__(
            self, num_embeddings, embedding_dim, device="meta", dtype=compute_dtype
        )
        self.setup_quantized_embedding(num_embeddings, embedding_dim, compute_dtype, weight_format)

    def reset_parameters(self) -> None:
        return None

    def forward_comfy_cast_weights(self, input: torch.Tensor, out_dtype: torch.dtype | None = None) -> torch.Tensor:
        patches = layer_patches(self)
        if patches:  # a weight patch needs the whole table: expand it once for this call
            table = self.expand(mm.cast_to(self.weight, None, input.device), None, self.compute_dtype)
            for patch in patches:
                table = patch(table)
            return F.embedding(input, table)
        return self.lookup(input, self.weight, input.device)

    def forward(self, input: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return self.forward_comfy_cast_weights(input)


def _device_of(args: tuple, kwargs: dict) -> torch.device | None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            return value.device
    return None


@functools.cache
def streamable(module_class: type[torch.nn.Module]) -> type[torch.nn.Module]:
    """``module_class`` as a ComfyUI cast op: same arithmetic, parameters fetched to the input's device per call
    when ComfyUI left them elsewhere (with ComfyUI's low-VRAM weight patches applied to ``weight``)."""

    def forward(self, *args, **kwargs):
        device = _device_of(args, kwargs)
        own = {name: p for name, p in self._parameters.items() if p is not None}
        patched = bool(self.weight_function) and "weight" in own
        if device is None or (not patched and all(p.device == device for p in own.values())):
            return module_class.forward(self, *args, **kwargs)
        saved = dict(self._parameters)
        try:
            for name, param in own.items():
                moved = mm.cast_to(param, None, device, non_blocking=mm.device_supports_non_blocking(device))
                if name == "weight":
                    for patch in self.weight_function:
                        moved = patch(moved)
                self._parameters[name] = moved
            return module_class.forward(self, *args, **kwargs)
        finally:
            self._parameters.update(saved)

    name = f"Streamed{module_class.__name__}"
    return type(name, (module_class, comfy.ops.CastWeightBiasOp), {"forward": forward, "__module__": __name__})


@functools.cache
def pack_operations() -> type:
    """``comfy.ops.manual_cast`` with ``QuantizedLinear``, ``QuantizedEmbedding`` and ``streamable`` added, built once
    per process."""
    extra = {
        "QuantizedLinear": StreamedQuantizedLinear,
        "QuantizedEmbedding": StreamedQuantizedEmbedding,
        "streamable": staticmethod(streamable),
    }
    return type("HunyuanImage21Ops", (comfy.ops.manual_cast,), extra)
