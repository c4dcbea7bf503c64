"""Loading our files into ComfyUI's own VAE classes on any ComfyUI release: strict, except for one known drift.

ComfyUI after 0.3.75 builds the refiner VAE's two mid ResNet blocks without ``temb_channels=0``, so each gets a
``temb_proj`` Linear that nothing calls: 4 tensors per encoder and per decoder (weight and bias of ``mid.block_1``
and ``mid.block_2``). No checkpoint holds them, so a strict load breaks on such a host although the file is right.
The parity probes load with ``strict=False``, hand back the key lists, and :func:`tolerated_missing` lets exactly
those four keys be missing and nothing else. A part of ComfyUI a host does not have skips its test, by name.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

# The keys a newer ComfyUI's encoder or decoder may lack, and only all four together (one class change).
TEMB_PROJ_KEYS = frozenset(f"mid.block_{block}.temb_proj.{leaf}" for block in (1, 2) for leaf in ("weight", "bias"))

# For probes (run_in_comfyui): import ``names`` from ComfyUI's ``module``, or leave ``result = {"skipped": why}``
# when the host has no such module. Any other import error (a renamed class, a broken dependency) still fails.
IMPORT_OR_SKIP = """
def import_from_comfy(module, *names):
    import importlib
    try:
        found = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and (module + ".").startswith(exc.name + "."):
            return None, f"this ComfyUI has no module {exc.name}"
        raise
    return tuple(getattr(found, name) for name in names), None

def load_part(module, state, prefix):
    keys = module.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)},
                                  strict=False)
    return {"missing": sorted(keys.missing_keys), "unexpected": sorted(keys.unexpected_keys)}
"""


def tolerated_missing(missing: Iterable[str], unexpected: Iterable[str]) -> list[str]:
    """The keys a ComfyUI class lacked that are allowed to be missing (none, or exactly :data:`TEMB_PROJ_KEYS`).

    Raises AssertionError for anything else missing or unexpected: that is a real difference in names.
    """
    missing, unexpected = set(missing), sorted(unexpected)
    assert not unexpected, f"ComfyUI's class has no place for {unexpected}"
    other = sorted(missing - TEMB_PROJ_KEYS)
    assert not other, f"ComfyUI's class needs tensors the file does not have: {other}"
    assert missing in (set(), TEMB_PROJ_KEYS), f"only part of the unused temb_proj keys is missing: {sorted(missing)}"
    return sorted(missing)


def skip_if_absent(out: dict) -> None:
    """Skip the calling test, with the probe's reason, when the host lacks the ComfyUI module it compares with."""
    if "skipped" in out:
        pytest.skip(f"not comparable on this host: {out['skipped']}")
