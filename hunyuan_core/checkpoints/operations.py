"""Give a model the host's layer classes where its builder could not: transformers' layers, and modules that own
parameters without being layers.

The pack's own models take ``operations`` when they are built. Hugging Face's text models build plain
``torch.nn.Linear`` / ``Embedding``; swapping those for ``operations``' classes on the meta build, before any
weight is loaded, lets ComfyUI cast, stream or lazily fill the text encoders the same way as the DiT. Norms that
hold a scale (the DiT's q/k norms, the refiner VAE's ``gamma``, transformers' RMSNorms) take the host's
``operations.streamable(their class)`` when the host offers one, so a host that keeps part of a model off its
device can move those scales per call too.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn


def _host_layer(layer: nn.Module, operations: SimpleNamespace) -> nn.Module:
    """An empty ``operations`` layer of the same kind and size as the plain ``layer`` (built on the meta device)."""
    dtype = layer.weight.dtype if isinstance(layer.weight, torch.Tensor) else None
    with torch.device("meta"):
        if type(layer) is nn.Linear:
            return operations.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None, dtype=dtype)
        return operations.Embedding(
            layer.num_embeddings, layer.embedding_dim, padding_idx=layer.padding_idx, dtype=dtype
        )


def adopt_operations(model: nn.Module, operations: SimpleNamespace) -> nn.Module:
    """Replace every plain ``nn.Linear`` and ``nn.Embedding`` of a meta-device ``model`` by ``operations``' class.

    A layer shared by several parents (a tied embedding) is replaced by one new layer everywhere, so it stays tied.
    With ``operations`` being ``torch.nn`` itself nothing changes.
    """
    if operations is nn:
        return model
    replaced: dict[int, nn.Module] = {}
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) not in (nn.Linear, nn.Embedding):
                continue
            if id(child) not in replaced:
                replaced[id(child)] = _host_layer(child, operations)
            setattr(parent, name, replaced[id(child)])
    return model


def adopt_streaming(model: nn.Module, operations: SimpleNamespace | type) -> nn.Module:
    """Give every module that owns parameters and is not already a host layer the host's streamable variant of its
    class (``operations.streamable``); nothing changes without one. The module's arithmetic stays its own."""
    make = getattr(operations, "streamable", None)
    if make is None:
        return model
    for module in model.modules():
        owns = any(p is not None for p in module._parameters.values())
        if owns and not hasattr(module, "comfy_cast_weights") and not hasattr(module, "weight_format"):
            module.__class__ = make(type(module))
    return model
