"""Widget conventions shared by the nodes: -1 means "the loaded model's official value"; where each input is checked.

ComfyUI checks an input before the run (at ``POST /prompt``, the message attached to that input) unless the node's
``validate_inputs`` names it: then ComfyUI skips its own min / max and combo checks for it, calls
``validate_inputs`` (with missing or mistyped values too) and attaches its one message to every input it names.
So each node's ``validate_inputs`` names at most one input, the one only the pack can judge before the run (a file
choice, free text to parse, a prompt's length), with a default so a missing input is reported by ComfyUI itself.
Numbers are left to ComfyUI's min / max; combos to ComfyUI where it compares V3 combos with their options (newer
servers), and to :func:`require` at the start of ``execute`` everywhere (ComfyUI 0.3.75 compares none), reading the
same tuple the schema shows. A value inside the widget's range that still cannot run (0 steps) is refused there too.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from comfy_api.latest import io

from ..hunyuan_core.checkpoints.errors import CheckpointError
from ..hunyuan_core.sampling import APG_OFFICIAL, MODES, parse_apg_start
from . import host

OFFICIAL = -1  # on the steps, guidance and shift widgets


@contextmanager
def for_input(name: str) -> Iterator[None]:
    """A file refused while it loads names the input it was picked on first, as the checks before the run do
    (``dit_name: cannot read ...``): the error dialog shows only the node and the message, and a loader with two
    files must say which one to change. The error keeps its class (``HunyuanImage21.DiTCheckpointError``)."""
    try:
        yield
    except CheckpointError as exc:
        raise type(exc)(f"{name}: {exc}") from None


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
    """A combo whose menu is ``options``: pass the same tuple to :func:`choice_problem` in ``execute``.
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


def require(*problems: str | None) -> None:
    """At the start of ``execute``: refuse the run with every problem found (each names its input and the fix)."""
    found = [p for p in problems if p]
    if found:
        raise ValueError("; ".join(found))


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


def apg_start_problem(apg_start: str | None) -> str | None:
    """Why the apg_start text cannot be used (None when it can, or when it is linked)."""
    if not isinstance(apg_start, str):
        return None
    try:
        apg_start_of(apg_start)
    except ValueError as exc:
        return str(exc)  # it names apg_start and the forms it takes
    return None
