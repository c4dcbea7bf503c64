"""The official guidance as ComfyUI's GUIDER, and the one sampling path of the pack's sampler node.

``HunyuanGuider`` is a ``comfy.samplers.CFGGuider`` whose prediction runs the pack's guidance kinds (the official
CFG->APG mix with its switch step and quoted-text rule, CFG, APG, the distilled embedding) on the velocities
ComfyUI's model machinery returns, so ``SamplerCustomAdvanced`` with ComfyUI's ``euler`` reproduces the pack's own
loop, and every model patch, wrapper and inpainting mask of ComfyUI applies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import comfy.sampler_helpers
import comfy.samplers
import comfy.utils
import node_helpers
import torch

from ..hunyuan_core.sampling import Guidance, Schedule, custom_schedule
from ..hunyuan_core.sampling.guidance import TwoPassRun
from .model import QUOTED_TEXT, step_index


def has_quoted_text(conditioning: list | None) -> bool:
    """Whether a CONDITIONING's prompt quotes text: the pack's flag, else (ComfyUI's own encoder) ByT5 states."""
    for _, extra in conditioning or ():
        flag = extra.get(QUOTED_TEXT)
        if flag is None:
            byt5 = extra.get("conditioning_byt5small")
            flag = byt5 is not None and byt5.shape[1] > 0
        if flag:
            return True
    return False


def _velocity(x: torch.Tensor, denoised: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """A flow model's velocity from ComfyUI's denoised prediction (``denoised = x - sigma * v``)."""
    return (x - denoised) / sigma.reshape(-1, *([1] * (x.ndim - 1)))


class HunyuanGuider(comfy.samplers.CFGGuider):
    """ComfyUI's guider running one of the pack's guidance kinds. ``offset`` is the first step's index in the full
    official schedule (img2img with denoise < 1), which the official CFG->APG switch counts in."""

    def __init__(self, model_patcher: Any, guidance: Guidance, offset: int = 0) -> None:
        super().__init__(model_patcher)
        self.guidance = guidance
        self.offset = offset
        self.run = None
        self.quoted = False

    def set_conds(self, positive: list, negative: list | None) -> None:
        self.quoted = has_quoted_text(positive)
        if self.guidance.embedded:
            positive = node_helpers.conditioning_set_values(positive, {"guidance": self.guidance.scale})
        conds = {"positive": positive}
        if self.guidance.needs_uncond:
            if negative is None:
                raise ValueError(f"{self.guidance} needs a negative conditioning")
            conds["negative"] = negative
        self.inner_set_conds(conds)

    def schedule(self, sigmas: torch.Tensor) -> Schedule:
        """The sigmas as a core schedule placed ``offset`` steps into the full one."""
        values = custom_schedule(sigmas.detach().float().cpu()).sigmas
        return Schedule(values, self.offset + values.numel() - 1)

    def sample(self, noise, latent_image, sampler, sigmas, *args: Any, **kwargs: Any) -> torch.Tensor:
        self.run = self.guidance.start(self.schedule(sigmas), self.quoted)  # fresh state (momentum) for every run
        return super().sample(noise, latent_image, sampler, sigmas, *args, **kwargs)

    def predict_noise(self, x: torch.Tensor, timestep: torch.Tensor, model_options: dict | None = None, seed=None):
        options = model_options or {}
        if not isinstance(self.run, TwoPassRun):
            return comfy.samplers.calc_cond_batch(self.inner_model, [self.conds["positive"]], x, timestep, options)[0]
        # Listed positive first: ComfyUI batches the conds it can join in reverse order, so the forward sees
        # [negative, positive] as the official pipeline's (the batch order moves bf16 rounding).
        cond, uncond = comfy.samplers.calc_cond_batch(
            self.inner_model, [self.conds["positive"], self.conds["negative"]], x, timestep, options
        )
        schedule = options.get("transformer_options", {}).get("sample_sigmas")
        step = 0 if schedule is None else step_index(timestep, schedule)
        v = self.run.combine(step, _velocity(x, uncond, timestep), _velocity(x, cond, timestep))
        return x - timestep.reshape(-1, *([1] * (x.ndim - 1))) * v


def sample_with_guider(
    guider: HunyuanGuider,
    noise: torch.Tensor,
    latent: dict,
    sigmas: torch.Tensor,
    seed: int,
    callback: Callable | None = None,
    sampler_name: str = "euler",
) -> torch.Tensor:
    """Run ComfyUI's ``sampler_name`` with the guider over ``sigmas``: the LATENT's samples in VAE space, honouring
    its ``noise_mask`` (inpainting: the unmasked region keeps the input latent)."""
    samples = latent["samples"]
    sampler = comfy.samplers.sampler_object(sampler_name)
    mask = latent.get("noise_mask")
    out = guider.sample(
        noise, samples, sampler, sigmas, denoise_mask=mask, callback=callback,
        disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed,
    )  # fmt: skip
    if mask is None:
        return out
    # ComfyUI's samplers keep the unmasked region up to float rounding (Euler's last step, the latent scaling in
    # and out): blend once more so it is the input latent exactly.
    keep = comfy.sampler_helpers.prepare_mask(mask, out.shape, out.device)
    return out * keep + samples.to(out.device, out.dtype) * (1 - keep)
