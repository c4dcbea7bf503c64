"""Import-time rules of the pack inside the real ComfyUI: cheap to import, one registration style (V3).

That the core never imports ComfyUI is checked statically in test_architecture.py.
"""

from __future__ import annotations

import pytest

from hy21_host import run_in_comfyui

pytestmark = pytest.mark.server  # loads the pack into ComfyUI the way the server does at start-up

HEAVY = ("transformers", "diffusers", "accelerate")

IMPORT_PROBE = """
import importlib.util
import comfy.model_management
from comfy_api.latest import io
before = set(sys.modules)
root = sys.argv[2]
spec = importlib.util.spec_from_file_location("hy21_pack", root + "/__init__.py", submodule_search_locations=[root])
pack = importlib.util.module_from_spec(spec)
sys.modules["hy21_pack"] = pack
spec.loader.exec_module(pack)
import asyncio
extension = asyncio.run(pack.comfy_entrypoint())
nodes = asyncio.run(extension.get_node_list())
result = {"new": sorted(set(sys.modules) - before), "v1": hasattr(pack, "NODE_CLASS_MAPPINGS"),
          "entry": type(extension).__name__, "nodes": [n.GET_SCHEMA().node_id for n in nodes]}
"""


def test_import_is_cheap_and_uses_v3_only():
    report = run_in_comfyui(IMPORT_PROBE)
    heavy = [m for m in report["new"] if m.split(".")[0] in HEAVY]
    assert not heavy, f"importing the pack pulled in {heavy}"
    assert report["entry"] == "HunyuanImage21Extension"
    assert "HunyuanImage21EmptyLatent" in report["nodes"]
    assert not report["v1"], "the pack must register through one API (V3), not NODE_CLASS_MAPPINGS too"
