"""The test host finds any ComfyUI tree it is pointed at and proves it ran there (on a fake tree: no torch, fast)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from hy21_host import comfyui_version, find_comfyui, host, run_in_comfyui

pytestmark = pytest.mark.unit


def fake_tree(root: Path, version: str | None = "9.8.7") -> Path:
    """The least a tree needs for the host: main.py, and the ``comfy.cli_args`` every probe imports first."""
    (root / "comfy").mkdir(parents=True)
    (root / "main.py").write_text("")
    (root / "comfy" / "__init__.py").write_text("")
    (root / "comfy" / "cli_args.py").write_text("class _Args:\n    cpu = False\nargs = _Args()\n")
    if version:
        (root / "comfyui_version.py").write_text(f'# generated\n__version__ = "{version}"\n')
    return root


def test_comfyui_path_is_used_and_made_absolute(tmp_path, monkeypatch):
    tree = fake_tree(tmp_path / "my ComfyUI")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COMFYUI_PATH", "my ComfyUI")
    assert find_comfyui() == tree and find_comfyui().is_absolute()
    monkeypatch.setenv("COMFYUI_PATH", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="fix COMFYUI_PATH"):
        find_comfyui()


def test_the_version_is_read_from_the_tree_without_importing_it(tmp_path):
    assert comfyui_version(fake_tree(tmp_path / "a")) == "9.8.7"
    assert comfyui_version(fake_tree(tmp_path / "b", version=None)) == "unknown"


def test_a_probe_runs_in_the_tree_and_is_counted(tmp_path, monkeypatch):
    tree = fake_tree(tmp_path / "tree")
    monkeypatch.setenv("COMFYUI_PATH", str(tree))
    monkeypatch.setattr(host, "USES", Counter())  # the session's own record (conftest's summary) stays real
    result = run_in_comfyui("import os\nresult = {'cwd': os.getcwd(), 'cpu': args.cpu, 'tree': sys.argv[1]}")
    assert result == {"cwd": str(tree), "cpu": True, "tree": str(tree)}
    assert {(str(tree), "probe"): 1} == host.USES


def test_a_comfy_from_elsewhere_is_refused(tmp_path, monkeypatch):
    tree, other = fake_tree(tmp_path / "tree"), fake_tree(tmp_path / "installed")
    monkeypatch.setenv("COMFYUI_PATH", str(tree))
    shadow = f"""
import importlib.util
spec = importlib.util.spec_from_file_location("comfy.cli_args", {str(other / "comfy" / "cli_args.py")!r})
sys.modules["comfy.cli_args"] = importlib.util.module_from_spec(spec)
sys.modules["comfy"].cli_args = sys.modules["comfy.cli_args"]
result = 1
"""
    with pytest.raises(RuntimeError, match=r"imported ComfyUI from .*installed"):
        run_in_comfyui(shadow)
