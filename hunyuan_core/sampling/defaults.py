"""Official sampling defaults per DiT variant (model.md §4.2)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VariantDefaults:
    """Steps, guidance scale, shift and guidance mode the official code uses for one variant.

    ``meanflow``: the variant is sampled with MeanFlow's second timestep. The refiner checkpoint has the
    ``time_r_in`` weights too, but the official refiner passes no second timestep.
    """

    steps: int
    guidance_scale: float
    shift: float
    mode: str
    meanflow: bool


VARIANT_DEFAULTS: dict[str, VariantDefaults] = {
    "base": VariantDefaults(steps=50, guidance_scale=3.5, shift=5.0, mode="official", meanflow=False),
    # shift 4 as in the distilled config; the official __call__'s own shift=5 default overrides it by mistake
    "distilled": VariantDefaults(steps=8, guidance_scale=3.25, shift=4.0, mode="distilled", meanflow=True),
    # 4 steps hard-coded by stage 1, shift 4 from the refiner's __call__, scale inherited from stage 1 (3.5)
    "refiner": VariantDefaults(steps=4, guidance_scale=3.5, shift=4.0, mode="distilled", meanflow=False),
}


def variant_defaults(variant: str) -> VariantDefaults:
    try:
        return VARIANT_DEFAULTS[variant]
    except KeyError:
        raise ValueError(f"unknown DiT variant {variant!r}; expected one of {', '.join(VARIANT_DEFAULTS)}") from None
