"""Build a model on the meta device and fill each parameter straight from a checkpoint reader.

Nothing is allocated until a tensor is read, and each tensor is moved into its parameter as it is read, so peak
memory stays close to the model's own size instead of twice it (model plus a loaded state dict). Every loader
fills through ``fill_parameters``: how a parameter is set is decided here, in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

import torch
from torch import nn

from .errors import CheckpointError
from .fp8 import Fp8Linear, Fp8Weight, swap_in_fp8

M = TypeVar("M", bound=nn.Module)
# A reader gives the tensor for one parameter name: plain, or an fp8 weight with its scale.
Reader = Callable[[str], "torch.Tensor | Fp8Weight"]


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


def _plain(value: torch.Tensor | Fp8Weight) -> torch.Tensor:
    return value.dequantized() if isinstance(value, Fp8Weight) else value


def set_parameter(module: nn.Module, leaf: str, tensor: torch.Tensor) -> None:
    """Put ``tensor`` in as the module's parameter ``leaf`` (frozen: these models are only run)."""
    setattr(module, leaf, nn.Parameter(tensor, requires_grad=False))


def fill_parameters(
    model: nn.Module,
    names: Iterable[str],
    read: Reader,
    *,
    dtype: torch.dtype,
    device: torch.device | str,
    error: type[CheckpointError],
    file_name: str,
) -> None:
    """Fill the parameters ``names`` of a meta-device ``model`` from ``read``, cast to ``dtype`` on ``device``.

    An fp8 ``Linear`` weight replaces its layer by an ``Fp8Linear`` (weight, scale and bias together); any other
    fp8 tensor is dequantized. Raises ``error`` if a parameter is still on the meta device afterwards.
    """
    for name in list(names):
        module_name, _, leaf = name.rpartition(".")
        module = model.get_submodule(module_name)
        if isinstance(module, Fp8Linear):
            continue  # filled together with its weight
        value = read(name)
        if isinstance(value, Fp8Weight) and isinstance(module, nn.Linear) and leaf == "weight":
            bias = _plain(read(f"{module_name}.bias")) if module.bias is not None else None
            swap_in_fp8(model, module_name, value, bias, dtype, device)
            continue
        set_parameter(module, leaf, _plain(value).to(device=device, dtype=dtype))
    left = [n for n, p in model.named_parameters() if p.is_meta]
    if left:
        raise error(f"{file_name}: parameters left unfilled after loading: {left[:5]}")


def build_and_fill(
    build: Callable[[], M],
    read: Reader,
    *,
    dtype: torch.dtype,
    device: torch.device | str,
    error: type[CheckpointError],
    file_name: str,
) -> M:
    """``build()`` on the meta device, then every state-dict entry filled from ``read``; returned in eval mode."""
    model = on_meta(build)
    fill_parameters(model, model.state_dict(), read, dtype=dtype, device=device, error=error, file_name=file_name)
    return model.eval()
