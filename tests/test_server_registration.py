"""The pack registers with a real ComfyUI server: IDs, categories, descriptions, tooltips."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.server

PACK_MODULE = "custom_nodes.ComfyUI-HunyuanImage21"
EXPECTED_NODES = {
    "HunyuanImage21DiTLoader",
    "HunyuanImage21TextEncoderLoader",
    "HunyuanImage21VAELoader",
    "HunyuanImage21TextEncode",
    "HunyuanImage21EmptyLatent",
    "HunyuanImage21Sampler",
    "HunyuanImage21VAEDecode",
    "HunyuanImage21VAEEncode",
    "HunyuanImage21RefinerVAELoader",
    "HunyuanImage21Refiner",
}


def pack_nodes(object_info: dict) -> dict[str, dict]:
    return {name: info for name, info in object_info.items() if info.get("python_module") == PACK_MODULE}


def test_pack_loads_without_import_errors(comfy_host):
    pack_lines = [line for line in comfy_host.log_text().splitlines() if "ComfyUI-HunyuanImage21" in line]
    assert any(line.strip().endswith("custom_nodes/ComfyUI-HunyuanImage21") for line in pack_lines), pack_lines
    assert not [line for line in pack_lines if "IMPORT FAILED" in line or "Cannot import" in line], pack_lines


def test_every_node_registers_with_description_and_tooltips(comfy):
    nodes = pack_nodes(comfy.object_info())
    assert set(nodes) >= EXPECTED_NODES, f"missing nodes: {EXPECTED_NODES - set(nodes)}"
    for name, info in nodes.items():
        assert name.startswith("HunyuanImage21"), name
        assert info["category"].split("/")[0] == "HunyuanImage", (name, info["category"])
        assert info["description"].strip(), f"{name} has no description"
        inputs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        assert inputs, f"{name} has no inputs"
        for input_name, spec in inputs.items():
            options = spec[1] if len(spec) > 1 else {}
            assert options.get("tooltip", "").strip(), f"{name}.{input_name} has no tooltip"


def test_pack_ids_do_not_shadow_core_nodes(comfy):
    info = comfy.object_info()
    core_ids = {name for name, node in info.items() if node.get("python_module") in ("nodes", "comfy_extras")}
    core_ids |= {name for name, node in info.items() if str(node.get("python_module", "")).startswith("comfy_extras")}
    assert "EmptyHunyuanImageLatent" in core_ids
    assert not core_ids & set(pack_nodes(info))


def test_empty_latent_schema(comfy):
    info = comfy.object_info("HunyuanImage21EmptyLatent")["HunyuanImage21EmptyLatent"]
    required = info["input"]["required"]
    presets = required["size"][1]["options"] if "options" in required["size"][1] else required["size"][0]
    assert presets == [
        "2048x2048 (1:1)", "2560x1536 (16:9)", "1536x2560 (9:16)", "2304x1792 (4:3)", "1792x2304 (3:4)", "custom",
    ]  # fmt: skip
    for side in ("width", "height"):
        assert required[side][1]["step"] == 32
        assert "quality" in required[side][1]["tooltip"]
    assert required["batch_size"][1]["min"] == 1
    assert info["output"] == ["LATENT"]
