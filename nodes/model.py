"""The pack's DiT as ComfyUI's MODEL: a ``BaseModel`` whose diffusion model is the pack's own, faithful DiT.

ComfyUI's samplers, model patches (shift, caching, LoRA) and conditioning nodes then work on it as on any native
model, while every forward is the pack's. The model reads ComfyUI's CONDITIONING in the layout of ComfyUI's native
HunyuanImage-2.1 (Qwen states as the tensor, ``attention_mask`` when padded, ByT5 states under
``conditioning_byt5small``), so conditioning from either encoder drives it.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import comfy.conds
import comfy.latent_formats
import comfy.model_base
import comfy.patcher_extension
import comfy.supported_models_base
import torch
from torch import nn

from ..hunyuan_core.dit import HunyuanImageDiT
from ..hunyuan_core.dit.step_cache import ForwardCache, StepCache
from ..hunyuan_core.variants import GUIDANCE_EMBED_MULTIPLIER, TIMESTEP_MULTIPLIER, Variant, get_variant
from . import attention, management
from .finite_checks import check_dit_output
from .lora_keys import extend_host_key_map

log = logging.getLogger(__name__)

# Keys the pack's text encoder adds to each CONDITIONING entry, next to native's ``attention_mask`` and
# ``conditioning_byt5small``. ComfyUI passes unknown keys along untouched.
BYT5_MASK = "hy21_byt5_mask"  # only when the ByT5 states are padded
QUOTED_TEXT = "hy21_has_quoted_text"  # the official guidance's later CFG->APG switch
PROMPT = "hy21_prompt"  # the prompt as encoded: the refiner re-encodes it with its own template
# In transformer_options: the step-cache node's settings on a MODEL, a run's ``StepCache`` while it samples.
STEP_CACHE = "hy21_step_cache"


def meanflow_r(sigma: torch.Tensor, schedule: torch.Tensor | None) -> torch.Tensor | None:
    """MeanFlow's second sigma for a model evaluation at ``sigma``: the next sigma of the schedule below it (the end
    of the interval the sampler is in, for samplers that evaluate between schedule points too); None when unknown.
    """
    if schedule is None:
        return None
    # the largest schedule sigma below ``sigma`` (0 when none), without boolean indexing: no host sync on a GPU
    return torch.where(schedule < sigma.max(), schedule, torch.zeros_like(schedule)).max()


def step_index(sigma: torch.Tensor, schedule: torch.Tensor) -> int:
    """Which step of ``schedule`` (descending sigmas) an evaluation at ``sigma`` belongs to: ``i`` for any sigma in
    ``(schedule[i + 1], schedule[i]]``, so samplers that evaluate between schedule points count steps like Euler."""
    return max(int((schedule >= sigma.max()).sum().item()) - 1, 0)


def step_label(options: dict, timestep: torch.Tensor) -> str:
    """Where a model call is in the sampling, for messages: "step 3 of 8 (sigma 0.75)", or the sigma alone."""
    sigma = options.get("sigmas", timestep / TIMESTEP_MULTIPLIER).max()
    schedule = options.get("sample_sigmas")
    if schedule is None:
        return f"sigma {float(sigma):.4g}"
    return f"step {step_index(sigma, schedule) + 1} of {len(schedule) - 1} (sigma {float(sigma):.4g})"


def forward_cache(options: dict) -> ForwardCache | None:
    """The step cache one forward uses, from its ``transformer_options``; None when the model has no step-cache
    patch, outside a sampling run, or where the run's schedule is unknown. The forward's prompts are ComfyUI's cond
    uuids, one equal batch chunk each."""
    cache = options.get(STEP_CACHE)
    schedule = options.get("sample_sigmas")
    sigmas = options.get("sigmas")
    if not isinstance(cache, StepCache) or schedule is None or sigmas is None:
        return None
    keys = options.get("uuids") or options.get("cond_or_uncond") or [0]
    sigma = sigmas.max()
    return cache.at(float(sigma), step_index(sigma, schedule), len(schedule) - 1, keys)


class DiffusionModel(nn.Module):
    """The pack's DiT under ComfyUI's calling convention, its layers registered here under the official names.

    ``BaseModel`` calls ``diffusion_model(x, t, context=..., transformer_options=..., **extra_conds)`` with ``t`` =
    sigma * 1000. The DiT's layers are this module's own children (not under a ``dit.`` prefix), so weight patches
    and LoRA keys address ``diffusion_model.<official name>`` as in the official checkpoints.
    """

    def __init__(self, dit: HunyuanImageDiT, variant: Variant) -> None:
        super().__init__()
        object.__setattr__(self, "dit", dit)  # not a submodule: its children are registered below
        for name, child in dit.named_children():
            self.add_module(name, child)
        if list(dit.parameters(recurse=False)) or list(dit.buffers(recurse=False)):
            raise TypeError("the DiT holds tensors of its own; register them on the ComfyUI model as well")
        self.config = dit.config
        self.uses_meanflow = variant.meanflow and dit.config.meanflow

    @property
    def dtype(self) -> torch.dtype:
        return self.dit.compute_dtype

    def forward(
        self, x: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor, *args: Any,
        transformer_options: dict | None = None, **kwargs: Any,
    ) -> torch.Tensor:  # fmt: skip
        """Through ComfyUI's diffusion-model wrappers (step caches such as EasyCache hook in here), as ComfyUI's own
        models do; ``transformer_options`` goes by keyword, where those wrappers look for it."""
        options = transformer_options or {}
        wrappers = comfy.patcher_extension.get_all_wrappers(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, options)
        executor = comfy.patcher_extension.WrapperExecutor.new_class_executor(self._forward, self, wrappers)
        return executor.execute(x, timestep, context, *args, transformer_options=options, **kwargs)

    def _forward(
        self,
        x: torch.Tensor,
        timestep: torch.Tensor,
        context: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        txt_byt5: torch.Tensor | None = None,
        txt_byt5_mask: torch.Tensor | None = None,
        guidance: torch.Tensor | None = None,
        disable_time_r: bool = False,
        transformer_options: dict | None = None,
        **_: Any,
    ) -> torch.Tensor:
        options = transformer_options or {}
        batch = x.shape[0]
        text_mask = attention_mask if attention_mask is not None else _ones(context)
        byt5_mask = None
        if txt_byt5 is not None:
            byt5_mask = txt_byt5_mask if txt_byt5_mask is not None else _ones(txt_byt5)
        g = None
        if self.config.guidance_embed and guidance is not None:
            g = (guidance.float().reshape(-1) * GUIDANCE_EMBED_MULTIPLIER).expand(batch)
        r = None
        if self.uses_meanflow and not disable_time_r:
            sigma = options.get("sigmas", timestep / TIMESTEP_MULTIPLIER)
            found = meanflow_r(sigma, options.get("sample_sigmas"))
            if found is not None:
                r = (found.float() * TIMESTEP_MULTIPLIER).reshape(1).expand(batch).to(timestep.device)
        with attention.forward_options(options):  # an attention override in the options reaches the DiT's attention
            out = self.dit(
                x, timestep, context, text_mask, txt_byt5, byt5_mask, guidance=g, timestep_r=r,
                cache=forward_cache(options),
            )  # fmt: skip
        check_dit_output(out, lambda: step_label(options, timestep), self.dit.compute_dtype)  # no silent black image
        return out


def _ones(states: torch.Tensor) -> torch.Tensor:
    return torch.ones(states.shape[:2], dtype=torch.int64, device=states.device)


class PaddedText(comfy.conds.CONDRegular):
    """Token states or their mask, batched with other prompts of any length by zero-padding the token axis.

    The official pipeline runs the negative and the positive prompt in one forward, padded and masked; with this
    ComfyUI does the same instead of one forward per prompt (masks pad with 0: padding is never attended to).
    """

    def can_concat(self, other: comfy.conds.CONDRegular) -> bool:
        a, b = self.cond, other.cond
        return (
            isinstance(other, PaddedText) and a.ndim == b.ndim and a.shape[2:] == b.shape[2:] and a.device == b.device
        )

    def concat(self, others: list[comfy.conds.CONDRegular]) -> torch.Tensor:
        if not others:  # one prompt per forward (the distilled model): nothing to pad, nothing to copy
            return self.cond
        parts = [self.cond, *(o.cond for o in others)]
        length = max(p.shape[1] for p in parts)
        dtype = functools.reduce(torch.promote_types, (p.dtype for p in parts))
        pad = [torch.nn.functional.pad(p, (0, 0) * (p.ndim - 2) + (0, length - p.shape[1])) for p in parts]
        return torch.cat([p.to(dtype) for p in pad])


@functools.cache
def note_native_conditioning() -> None:
    """Said once: conditioning from ComfyUI's own text encoder is accepted, and where it is not the official one."""
    log.info(
        "HunyuanImage-2.1: this conditioning comes from ComfyUI's own text encoder, which differs from the official "
        "encoding in three ways (ASCII 'quotes' are not read as text to render, quoted text is not cut at 128 "
        "bytes, prompts are not cut at 1000 tokens); HunyuanImage 2.1 Text Encode gives the official one"
    )


def check_text_width(states: torch.Tensor, width: int) -> None:
    """Refuse conditioning from another model family before it reaches the DiT, naming the encoder to use."""
    if states.ndim != 3 or states.shape[-1] != width:
        raise ValueError(
            f"the conditioning holds text states of shape {tuple(states.shape)}, but HunyuanImage-2.1 reads "
            f"Qwen2.5-VL-7B states of width {width}: encode the prompt with the HunyuanImage 2.1 Text Encode node "
            "(or ComfyUI's Load CLIP with type hunyuan_image), not with another model's text encoder"
        )


def _model_config(variant: Variant) -> comfy.supported_models_base.BASE:
    """ComfyUI's description of the model: flow matching with the variant's official shift, multiplier 1000, the
    HunyuanImage latent format (process_in multiplies by the VAE's scaling factor)."""
    refiner = variant.name == "refiner"
    config = comfy.supported_models_base.BASE({"disable_unet_model_creation": True})
    config.sampling_settings = {"shift": variant.shift, "multiplier": TIMESTEP_MULTIPLIER}
    latent_format = comfy.latent_formats.HunyuanImage21Refiner if refiner else comfy.latent_formats.HunyuanImage21
    config.latent_format = latent_format()
    config.memory_usage_factor = 7.7  # ComfyUI's figure for this architecture (activation memory per latent pixel)
    return config


class HunyuanImage21Model(comfy.model_base.BaseModel):
    """ComfyUI's model object for the pack's DiT: conditioning in, the DiT's velocity out (as a denoised latent)."""

    def __init__(self, dit: HunyuanImageDiT, device: torch.device | None = None) -> None:
        variant = get_variant(dit.config.variant)
        super().__init__(_model_config(variant), comfy.model_base.ModelType.FLOW, device=device)
        self.variant = variant
        self.diffusion_model = DiffusionModel(dit, variant)

    def extra_conds(self, **kwargs: Any) -> dict[str, Any]:
        """Text states and masks always present (so the negative and positive prompts batch into one forward, as
        officially), ByT5 as an all-masked placeholder token when the prompt quotes nothing."""
        out = super().extra_conds(**kwargs)
        config = self.diffusion_model.config
        cross_attn = kwargs.get("cross_attn")
        device = kwargs.get("device")
        if cross_attn is not None and device is not None:
            # on the sampling device once, so the per-step batching of prompts runs there, not on the CPU
            kwargs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
            cross_attn = kwargs["cross_attn"]
        if cross_attn is not None:
            check_text_width(cross_attn, config.text_dim)
            if QUOTED_TEXT not in kwargs:
                note_native_conditioning()
            mask = kwargs.get("attention_mask")
            out["c_crossattn"] = PaddedText(cross_attn)
            out["attention_mask"] = PaddedText(_ones(cross_attn) if mask is None else mask.to(torch.int64))
            if config.byt5_dim is not None:
                byt5, byt5_mask = kwargs.get("conditioning_byt5small"), kwargs.get(BYT5_MASK)
                if byt5 is None or byt5.shape[1] == 0:
                    byt5 = cross_attn.new_zeros(cross_attn.shape[0], 1, config.byt5_dim)
                    byt5_mask = torch.zeros(cross_attn.shape[0], 1, dtype=torch.int64, device=cross_attn.device)
                out["txt_byt5"] = PaddedText(byt5)
                out["txt_byt5_mask"] = PaddedText(_ones(byt5) if byt5_mask is None else byt5_mask.to(torch.int64))
        if config.guidance_embed:
            scale = kwargs.get("guidance", self.variant.guidance_scale)  # official: 3.25 distilled, not 6.0
            out["guidance"] = comfy.conds.CONDRegular(torch.tensor([float(scale)], device=device))
        if not self.variant.meanflow:
            out["disable_time_r"] = comfy.conds.CONDConstant(True)
        return out


def wrap_dit(dit: HunyuanImageDiT) -> Any:
    """The DiT as ComfyUI's MODEL (a patcher over ``HunyuanImage21Model``), handed to its model management; ComfyUI's
    LoRA loaders know its LoRA names from here on (``lora_keys``), and its attention is ComfyUI's selected kernel
    (``attention``)."""
    extend_host_key_map()
    dit.attention = attention.host_attention_backend
    log.info("HunyuanImage-2.1 DiT attention: %s", attention.described())
    return management.patch(HunyuanImage21Model(dit), "diffusion")


def patched_shift(model: Any) -> float | None:
    """The shift of a model-sampling patch on ``model`` (ModelSamplingSD3 / AuraFlow ...), None when unpatched.

    Only a patch counts: ComfyUI's own HunyuanImage-2.1 model carries shift 5 for the distilled model, where the
    official value is 4, so an unpatched model keeps the official shift.
    """
    if "model_sampling" not in getattr(model, "object_patches", {}):
        return None
    shift = getattr(model.get_model_object("model_sampling"), "shift", None)
    return float(shift) if shift is not None else None


def dit_in(base_model: Any) -> HunyuanImageDiT | None:
    """The pack's DiT inside ComfyUI's model object (a MODEL's ``.model``), or None for any other model."""
    diffusion_model = getattr(base_model, "diffusion_model", None)
    return diffusion_model.dit if isinstance(diffusion_model, DiffusionModel) else None


def pack_dit(model: Any) -> HunyuanImageDiT | None:
    """The pack's DiT inside a MODEL, or None for any other model (e.g. ComfyUI's own HunyuanImage-2.1)."""
    return dit_in(getattr(model, "model", None))


def native_variant(model: Any) -> str | None:
    """The variant of ComfyUI's own HunyuanImage-2.1 MODEL (e.g. from Load Diffusion Model), read from the config
    ComfyUI detected from the file; None for any other model."""
    inner = getattr(model, "model", None)
    if not isinstance(inner, comfy.model_base.HunyuanImage21):
        return None
    if isinstance(inner, comfy.model_base.HunyuanImage21Refiner):
        return "refiner"
    return "distilled" if inner.model_config.unet_config.get("guidance_embed") else "base"


def model_variant(model: Any) -> str | None:
    """Which HunyuanImage-2.1 variant a MODEL holds: the pack's DiT or ComfyUI's own; None for other models."""
    dit = pack_dit(model)
    return dit.config.variant if dit is not None else native_variant(model)


def _described(model: Any) -> str:
    """What a MODEL that is not HunyuanImage-2.1 appears to be, for refusals."""
    inner = getattr(model, "model", None)
    if inner is None:
        return f"not a ComfyUI MODEL at all ({type(model).__name__})"
    return f"a {type(inner).__name__} model: load a HunyuanImage-2.1 file with the HunyuanImage 2.1 DiT Loader"


def require_pack_dit(model: Any, node: str) -> HunyuanImageDiT:
    """The pack's DiT inside ``model``; a clear refusal naming the loader to use for anything else."""
    dit = pack_dit(model)
    if dit is None:
        found = (
            _described(model)
            if native_variant(model) is None
            else (
                "ComfyUI's own HunyuanImage-2.1 model: load the file with the HunyuanImage 2.1 DiT Loader for this node"
            )
        )
        raise ValueError(f"{node} needs the pack's HunyuanImage-2.1 DiT; the connected MODEL is {found}")
    return dit


def stage1_variant(model: Any, node: str) -> str:
    """``base`` or ``distilled`` for a stage-1 HunyuanImage-2.1 MODEL (the pack's or ComfyUI's own); the refiner
    and other model families are refused, naming what to use instead."""
    variant = model_variant(model)
    if variant is None:
        raise ValueError(f"{node} samples HunyuanImage-2.1; the connected MODEL is {_described(model)}")
    if variant == "refiner":
        raise ValueError(
            f"the connected DiT is the refiner: it refines a finished image rather than sampling a latent; use it in "
            f"the HunyuanImage 2.1 Refiner node, and load the base or distilled DiT for {node}"
        )
    return variant
