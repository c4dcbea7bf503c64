"""The tolerance for ComfyUI's own VAE classes lets exactly the known unused keys through, and nothing else.

The probe side is run here too, on stand-in modules, so the key lists it hands back are the ones torch reports.
"""

from __future__ import annotations

import pytest
import torch
from comfy_classes import IMPORT_OR_SKIP, TEMB_PROJ_KEYS, skip_if_absent, tolerated_missing
from torch import nn

pytestmark = pytest.mark.unit


def mid_blocks(temb: bool) -> nn.Module:
    """A stand-in for a ComfyUI VAE part: two mid ResNet blocks, with the newer unused ``temb_proj`` or without."""
    part = nn.Module()
    part.mid = nn.Module()
    for name in ("block_1", "block_2"):
        block = nn.Module()
        block.conv1 = nn.Conv2d(4, 4, 3)
        if temb:
            block.temb_proj = nn.Linear(512, 4)
        setattr(part.mid, name, block)
    return part


def probe_helpers() -> dict:
    """The functions a probe gets from ``IMPORT_OR_SKIP``."""
    scope: dict = {}
    exec(IMPORT_OR_SKIP, scope)
    return scope


def test_the_tolerated_keys_are_the_two_mid_blocks_weight_and_bias():
    assert sorted(TEMB_PROJ_KEYS) == [
        "mid.block_1.temb_proj.bias", "mid.block_1.temb_proj.weight",
        "mid.block_2.temb_proj.bias", "mid.block_2.temb_proj.weight",
    ]  # fmt: skip


@pytest.mark.parametrize("temb", [False, True], ids=["0.3.75", "newer"])
def test_a_full_file_loads_into_either_class(temb):
    file_state = {f"encoder.{k}": v for k, v in mid_blocks(temb=False).state_dict().items()}
    keys = probe_helpers()["load_part"](mid_blocks(temb), file_state, "encoder.")
    assert tolerated_missing(**keys) == (sorted(TEMB_PROJ_KEYS) if temb else [])


def test_anything_else_missing_or_unexpected_fails():
    state = mid_blocks(temb=False).state_dict()
    load_part = probe_helpers()["load_part"]
    lacking = {k: v for k, v in state.items() if k != "mid.block_2.conv1.bias"}
    with pytest.raises(AssertionError, match=r"needs tensors .*mid\.block_2\.conv1\.bias"):
        tolerated_missing(**load_part(mid_blocks(temb=True), lacking, ""))
    extra = {**state, "mid.block_1.norm3.weight": torch.ones(4)}
    with pytest.raises(AssertionError, match=r"no place for .*norm3"):
        tolerated_missing(**load_part(mid_blocks(temb=False), extra, ""))
    with pytest.raises(AssertionError, match="only part"):
        tolerated_missing(["mid.block_1.temb_proj.weight", "mid.block_1.temb_proj.bias"], [])


def test_a_missing_comfyui_module_skips_and_a_broken_one_fails(tmp_path, monkeypatch):
    import_from_comfy = probe_helpers()["import_from_comfy"]
    package = tmp_path / "hy21_fake_host"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "broken.py").write_text("import no_such_dependency_hy21\n")
    (package / "present.py").write_text("Encoder = 1\nDecoder = 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_from_comfy("hy21_fake_host.present", "Encoder", "Decoder") == ((1, 2), None)
    classes, skipped = import_from_comfy("hy21_fake_host.gone", "Encoder")
    assert classes is None and skipped == "this ComfyUI has no module hy21_fake_host.gone"
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_hy21"):
        import_from_comfy("hy21_fake_host.broken", "Encoder")
    with pytest.raises(pytest.skip.Exception, match=r"no module hy21_fake_host\.gone"):
        skip_if_absent({"skipped": skipped})
    skip_if_absent({"plain": {}})  # a result: nothing happens
