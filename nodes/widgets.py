"""Widget conventions shared by the nodes: -1 means "the loaded model's official value"; combo choices are checked.

Combo checks: ComfyUI 0.3.75 does not compare V3 combo values with their options, and newer servers skip that
comparison for every input a node's ``validate_inputs`` names. So each node checks its combos itself, with
:func:`choice_problem` reading the same tuple its schema shows, and the message is the same on every host.
ComfyUI attaches a failing ``validate_inputs`` string to every input that function takes, so each problem starts
with the input's own name.
"""

from __future__ import annotations

from collections.abc import Sequence

from comfy_api.latest import io

from ..hunyuan_core.sampling import APG_OFFICIAL, MODES, parse_apg_start
from . import host

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
    """The schedule shift: folded away as advanced where the host can (the official value rarely needs changing)."""
    return host.build(
        io.Float.Input, "shift", default=OFFICIAL, min=OFFICIAL, max=100.0, step=0.1, round=0.01, tooltip=tooltip,
        advanced=True,
    )  # fmt: skip


def combo_input(
    name: str, options: Sequence[str], default: str, tooltip: str, advanced: bool = False, optional: bool = False
) -> io.Combo.Input:
    """A combo whose menu is ``options``: pass the same tuple to :func:`choice_problem` in ``validate_inputs``.
    ``optional`` for inputs added after workflows were shared: a prompt without it runs with ``default``."""
    return host.build(
        io.Combo.Input, name, options=list(options), default=default, tooltip=tooltip, advanced=advanced or None,
        optional=optional,
    )  # fmt: skip


def choice_problem(name: str, value: object, options: Sequence[object]) -> str | None:
    """Why ``value`` is not one of the combo ``name``'s ``options`` (None when it is, or when the input is linked:
    ComfyUI passes None for a value that only exists at run time)."""
    if value is None or value in options:
        return None
    return f"{name} {value!r} is not one of the choices: {', '.join(map(str, options))}"


def verdict(*problems: str | None) -> bool | str:
    """What ``validate_inputs`` returns: True, or every problem found, each naming its input."""
    return "; ".join(p for p in problems if p) or True


def settings_problem(steps: int | None, guidance_scale: float | None, shift: float | None, official: str) -> str | None:
    """Why steps / guidance / shift cannot run (None when they can); ``official`` names the -1 meaning."""
    if steps is not None and steps != OFFICIAL and steps < 1:
        return f"steps {steps} is invalid: use at least 1 step, or -1 for {official}"
    if guidance_scale is not None and guidance_scale != OFFICIAL and guidance_scale < 0:
        return f"guidance_scale {guidance_scale} is invalid: use 0 or more, or -1 for {official}"
    if shift is not None and shift != OFFICIAL and shift <= 0:
        return f"shift {shift} is invalid: use a value above 0, or -1 for {official}"
    return None


# --- guidance, shared by the sampler and the Guider node ---------------------------------------------------------

AUTO_GUIDANCE = "auto"
GUIDANCE_MODES = (AUTO_GUIDANCE, *MODES)  # the guidance_mode menu and its check
APG_START_TOOLTIP = (
    "Where the official mix hands over from CFG to APG. official: the official pipeline's fixed switch, APG from "
    "step 6 (or 39 when the prompt quotes text) at any step count, so short runs stay CFG. scaled: that switch moved "
    "in proportion to the step count (not the official algorithm; the same at 50 steps). A number: the first APG "
    "step, 0-based, counted in the full schedule."
)


def guidance_mode_input(tooltip: str) -> io.Combo.Input:
    return combo_input("guidance_mode", GUIDANCE_MODES, default=AUTO_GUIDANCE, advanced=True, tooltip=tooltip)


def apg_start_input() -> io.String.Input:
    return host.build(io.String.Input, "apg_start", default=APG_OFFICIAL, tooltip=APG_START_TOOLTIP, advanced=True)


def guidance_mode_of(value: str) -> str | None:
    """The core's guidance mode for a widget value (None: the model's official one)."""
    return None if value == AUTO_GUIDANCE else value


def apg_start_of(value: str) -> str | int:
    """The core's ``apg_start`` choice for the widget's text."""
    return parse_apg_start(value.strip())


def guidance_problems(guidance_mode: str | None, apg_start: str | None) -> list[str | None]:
    """Why the guidance widgets cannot be used, one entry per widget (None where it can)."""
    apg_problem = None
    if apg_start is not None:
        try:
            apg_start_of(apg_start)
        except ValueError as exc:
            apg_problem = str(exc)  # it names apg_start and the forms it takes
    return [choice_problem("guidance_mode", guidance_mode, GUIDANCE_MODES), apg_problem]
