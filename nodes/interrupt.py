"""Cancel that reaches inside long node work: ComfyUI's interrupt checked at every layer of a model, and between the
modules a loader reads.

ComfyUI's samplers check its interrupt flag between steps; anything else (text encoding, VAE decode and encode, the
refiner's VAE) ran to the end of its node after the user pressed Cancel. Every module of a model that owns weights
(each linear, convolution and norm) gets a forward pre-hook that raises ComfyUI's interrupt, so a cancel takes
effect before the next layer runs: one flag read per layer, nothing next to the layer's own work
(``bench/bench_interrupt.py`` measures the latency). The DiT is left to the sampler's per-step check (hooks inside
its blocks would split a compiled graph).
"""

from __future__ import annotations

import comfy.model_management as mm
from torch import nn

from ..hunyuan_core.checkpoints.meta import add_load_check

MARK = "hy21_interruptible"


def _check_interrupt(*_) -> None:
    mm.throw_exception_if_processing_interrupted()


def interrupt_points(model: nn.Module) -> list[nn.Module]:
    """The modules the interrupt is checked before: every module that owns a parameter or a buffer."""
    return [
        module
        for module in model.modules()
        if next(module.parameters(recurse=False), None) is not None
        or next(module.buffers(recurse=False), None) is not None
    ]


def check_loads() -> None:
    """Cancel reaches model loading too: checked before each module a pack loader reads."""
    add_load_check(_check_interrupt)


def make_interruptible(model: nn.Module) -> nn.Module:
    """Check ComfyUI's interrupt before each weighted layer of ``model`` (once per model)."""
    if getattr(model, MARK, False):
        return model
    for module in interrupt_points(model):
        module.register_forward_pre_hook(_check_interrupt)
    object.__setattr__(model, MARK, True)
    return model
