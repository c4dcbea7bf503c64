"""Import-time rules of the pack: cheap to import, one registration style, core free of ComfyUI."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from hy21_host import find_comfyui, repo_root

HEAVY = ("transformers", "diffusers", "accelerate")
COMFY_MODULES = {"comfy", "comfy_api", "comfy_extras", "comfy_execution", "folder_paths", "nodes", "latent_preview"}

IMPORT_PROBE = """
import importlib.util, json, sys
sys.path.insert(0, sys.argv[1])
from comfy.cli_args import args
args.cpu = True
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
print(json.dumps({"new": sorted(set(sys.modules) - before), "v1": hasattr(pack, "NODE_CLASS_MAPPINGS"),
                  "entry": type(extension).__name__, "nodes": [n.GET_SCHEMA().node_id for n in nodes]}))
"""


def test_import_is_cheap_and_uses_v3_only():
    comfyui = find_comfyui()
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE, str(comfyui), str(repo_root())],
        cwd=comfyui, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    report = json.loads(out.stdout.strip().splitlines()[-1])
    heavy = [m for m in report["new"] if m.split(".")[0] in HEAVY]
    assert not heavy, f"importing the pack pulled in {heavy}"
    assert report["entry"] == "HunyuanImage21Extension"
    assert "HunyuanImage21EmptyLatent" in report["nodes"]
    assert not report["v1"], "the pack must register through one API (V3), not NODE_CLASS_MAPPINGS too"


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_core_never_imports_comfyui():
    files = sorted((repo_root() / "hunyuan_core").rglob("*.py"))
    assert files
    for path in files:
        bad = imported_roots(path) & COMFY_MODULES
        assert not bad, f"{path.relative_to(repo_root())} imports {bad}"
