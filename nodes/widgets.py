"""Widget conventions shared by the sampling nodes: -1 means "the loaded model's official value"."""

from __future__ import annotations

from comfy_api.latest import io

OFFICIAL = -1  # on the steps, guidance and shift widgets


def or_official(value: float) -> float | None:
    """A widget value, or None (the core's "official value") for -1."""
    return None if value == OFFICIAL else value


def steps_input(maximum: int, tooltip: str) -> io.Int.Input:
    return io.Int.Input("steps", default=OFFICIAL, min=OFFICIAL, max=maximum, tooltip=tooltip)


def guidance_input(tooltip: str) -> io.Float.Input:
    return io.Float.Input(
        "guidance_scale", default=OFFICIAL, min=OFFICIAL, max=30.0, step=0.05, round=0.01, tooltip=tooltip
    )


def shift_input(tooltip: str) -> io.Float.Input:
    return io.Float.Input("shift", default=OFFICIAL, min=OFFICIAL, max=100.0, step=0.1, round=0.01, tooltip=tooltip)


def settings_problem(steps: int | None, guidance_scale: float | None, shift: float | None, official: str) -> str | None:
    """Why steps / guidance / shift cannot run (None when they can); ``official`` names the -1 meaning."""
    if steps is not None and steps != OFFICIAL and steps < 1:
        return f"steps {steps} is invalid: use at least 1 step, or -1 for {official}"
    if guidance_scale is not None and guidance_scale != OFFICIAL and guidance_scale < 0:
        return f"guidance_scale {guidance_scale} is invalid: use 0 or more, or -1 for {official}"
    if shift is not None and shift != OFFICIAL and shift <= 0:
        return f"shift {shift} is invalid: use a value above 0, or -1 for {official}"
    return None
