"""Build a model on the meta device and load each module's tensors straight from a checkpoint reader.

Nothing is allocated until a tensor is read, and each tensor becomes its parameter as it is read, so peak memory
stays close to the model's own size instead of twice it (model plus a loaded state dict).

Every tensor reaches its layer through ``load_state_dict(..., assign=True)``, one module at a time, the way
ComfyUI's own loaders hand weights over. That is the one contract every ``comfy.ops`` implementation honours: an
eager layer takes the tensor as its parameter, and a lazy one (current ComfyUI with dynamic VRAM builds ``Linear``
and ``Embedding`` holding ``None`` until ``_load_from_state_dict``) receives it there. The names a model needs come
from its plain ``torch.nn`` build, since a lazy layer's ``state_dict()`` lists nothing before it is loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import SimpleNamespace
from typing import TypeVar

import torch
from torch import nn

from .errors import CheckpointError
from .finite import non_finite_problem
from .fp8 import Fp8Weight
from .gguf_file import GGMLWeight
from .operations import adopt_streaming
from .quantized import QuantizedValue, quantized_state, swap_in_quantized

M = TypeVar("M", bound=nn.Module)
# A reader gives the tensor for one parameter name: plain, an fp8 weight with its scale, or GGUF block bytes.
Reader = Callable[[str], "torch.Tensor | QuantizedValue"]


def on_meta(build: Callable[[], M]) -> M:
    """``build()`` with every parameter on the meta device: shapes only, no memory."""
    with torch.device("meta"):
        return build()


def state_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Every state-dict entry of ``model`` with its shape."""
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def parameter_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Every parameter of ``model`` once (tied ones under their first name) with its shape."""
    return {name: tuple(p.shape) for name, p in model.named_parameters()}


def meta_shapes(build: Callable[[], nn.Module]) -> dict[str, tuple[int, ...]]:
    """The state-dict shapes of the model ``build()`` makes, without allocating anything."""
    return state_shapes(on_meta(build))


def _plain(value: torch.Tensor | QuantizedValue) -> torch.Tensor:
    return value.dequantized() if isinstance(value, (Fp8Weight, GGMLWeight)) else value


def _by_module(names: Iterable[str]) -> dict[str, list[str]]:
    """Tensor names grouped by the module that owns them: ``{"a.b": ["weight", "bias"]}``."""
    groups: dict[str, list[str]] = {}
    for name in names:
        module_name, _, leaf = name.rpartition(".")
        groups.setdefault(module_name, []).append(leaf)
    return groups


def _joined(module_name: str, leaf: str) -> str:
    return f"{module_name}.{leaf}" if module_name else leaf


def load_module(module: nn.Module, state: Mapping[str, torch.Tensor], where: str) -> None:
    """``module.load_state_dict(state, assign=True)`` for the module's own tensors; raises ValueError naming the
    tensors the module did not take (its children's missing keys are not its business)."""
    try:
        missing, unexpected = module.load_state_dict(dict(state), strict=False, assign=True)
    except RuntimeError as exc:  # shape mismatches: torch collects them and raises once
        raise ValueError(f"{where}: {exc}") from None
    refused = [k for k in state if k in missing] + list(unexpected)
    if refused:
        raise ValueError(f"{where}: the layer did not take {', '.join(refused)}")


def unfilled(model: nn.Module, names: Iterable[str]) -> list[str]:
    """Tensors ``model`` still lacks: an expected name holding ``None`` (a lazy layer never given its tensor) or
    a meta tensor, and any parameter left on the meta device."""
    names = list(names)
    left = []
    for name in names:
        module_name, _, leaf = name.rpartition(".")
        value = getattr(model.get_submodule(module_name), leaf, None)
        if not isinstance(value, torch.Tensor) or value.is_meta:
            left.append(name)
    known = set(names)
    left += [n for n, p in model.named_parameters() if p.is_meta and n not in known]
    return left


# Called before each module is read (a host registers its cancel check here: a 17B load is minutes from a disk).
LOAD_CHECKS: list[Callable[[], None]] = []


def add_load_check(check: Callable[[], None]) -> None:
    """Have ``check`` called before each module a loader reads (once per callable); it may raise to stop the load."""
    if check not in LOAD_CHECKS:
        LOAD_CHECKS.append(check)


def load_weights(
    model: nn.Module,
    names: Iterable[str],
    read: Reader,
    *,
    dtype: torch.dtype,
    device: torch.device | str,
    error: type[CheckpointError],
    file_name: str,
    operations: SimpleNamespace | type = nn,
) -> None:
    """Load the tensors ``names`` into a meta-device ``model`` from ``read``, cast to ``dtype`` on ``device``.

    Streams one module at a time through ``load_state_dict(assign=True)``. A quantized ``Linear`` weight (fp8 with
    its scale, or GGUF blocks) replaces its layer by a quantized one (``operations.QuantizedLinear`` where the host
    has it) that keeps the weight compact, and so does a GGUF embedding table (``QuantizedEmbedding``); any other
    quantized tensor (norms, convs, fp8 tables) is expanded. Raises
    ``error`` when a tensor holds NaN or infinity (or its cast to ``dtype`` overflows), when a layer refuses a tensor
    or a needed tensor is still missing afterwards. The model comes back
    frozen (these models are only run).
    """
    names = list(names)
    for module_name, leaves in _by_module(names).items():
        for check in LOAD_CHECKS:
            check()
        module = model.get_submodule(module_name)
        values = {leaf: read(_joined(module_name, leaf)) for leaf in leaves}
        weight = values.get("weight")
        linear = isinstance(weight, (Fp8Weight, GGMLWeight)) and isinstance(module, nn.Linear)
        table = isinstance(weight, GGMLWeight) and isinstance(module, nn.Embedding) and len(values) == 1
        if linear or table:
            bias = _plain(values["bias"]) if "bias" in values else None
            module = swap_in_quantized(
                model, module_name, weight, has_bias=bias is not None, compute_dtype=dtype, operations=operations
            )
            state = quantized_state(weight, bias, dtype, device)
        else:
            state = {leaf: _plain(v).to(device=device, dtype=dtype) for leaf, v in values.items()}
        for leaf, tensor in state.items():
            stored = values.get(leaf)
            problem = non_finite_problem(
                _joined(module_name, leaf), stored if isinstance(stored, torch.Tensor) else tensor, tensor
            )
            if problem:
                raise error(f"{file_name}: {problem}")
        try:
            load_module(module, state, module_name or "the model")
        except ValueError as exc:
            raise error(f"{file_name}: {exc}") from None
    model.requires_grad_(False)
    adopt_streaming(model, operations)
    left = unfilled(model, names)
    if left:
        raise error(
            f"{file_name}: {len(left)} tensors left unfilled after loading (e.g. {', '.join(left[:3])}): the "
            "model's layers did not take them"
        )


def build_and_load(
    build: Callable[[SimpleNamespace], M],
    operations: SimpleNamespace,
    read: Reader,
    *,
    dtype: torch.dtype,
    device: torch.device | str,
    error: type[CheckpointError],
    file_name: str,
) -> M:
    """``build(operations)`` on the meta device, then every tensor of the plain ``torch.nn`` build loaded from
    ``read``; returned in eval mode."""
    names = meta_shapes(lambda: build(nn))
    model = on_meta(lambda: build(operations))
    load_weights(
        model, names, read, dtype=dtype, device=device, error=error, file_name=file_name, operations=operations
    )
    return model.eval()
