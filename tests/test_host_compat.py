"""Which ComfyUI the pack agrees to run on, and which optional schema fields it passes, decided without ComfyUI.

- The minimum host version comes from pyproject.toml; an older host gets one error line and no nodes, an unknown
  one is let through (logged at debug).
- ``nodes/host.py`` passes ``search_aliases`` / ``advanced`` only to classes that declare them (fakes of an old and
  a new ComfyUI here; the real 0.3.75 is in test_host_compat_comfyui.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import logging
import sys
import types
from pathlib import Path

import pytest

from hy21_host import repo_root

pytestmark = pytest.mark.unit


def load_file(name: str, path: Path, package: bool = False) -> types.ModuleType:
    """A module of the pack by its file, so neither the package root nor nodes/ needs ComfyUI to be imported."""
    search = [str(path.parent)] if package else None
    spec = importlib.util.spec_from_file_location(name, path, submodule_search_locations=search)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pack() -> types.ModuleType:
    return load_file("hy21_pack_under_test", repo_root() / "__init__.py", package=True)


@pytest.fixture(scope="module")
def host() -> types.ModuleType:
    return load_file("hy21_nodes_host_under_test", repo_root() / "nodes" / "host.py")


# --- the version gate ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "requirement", "expected"),
    [
        ("0.3.75", ">=0.3.75", True),
        ("0.3.74", ">=0.3.75", False),
        ("0.3.9", ">=0.3.75", False),  # numbers, not strings: 9 < 75
        ("0.3.100", ">=0.3.75", True),
        ("0.4", ">=0.3.75", True),
        ("0.8.0", ">=0.3.75", True),
        ("1.0.0", ">=0.3.75", True),
        ("0.3.75rc1", ">=0.3.75", True),  # release numbers only
        ("v0.3.76", ">=0.3.75", True),
        ("0.3.75", ">=0.3.75, <0.4", True),
        ("0.4.0", ">=0.3.75,<0.4", False),
        ("0.3", "==0.3.0", True),  # missing parts count as zero
        ("unknown", ">=0.3.75", None),
        ("0.3.75", "~=0.3", None),  # an operator the gate does not read
        ("0.3.75", "", None),
    ],
)
def test_version_comparison(pack, version, requirement, expected):
    assert pack.satisfies(version, requirement) is expected


def test_minimum_comes_from_pyproject(pack, tmp_path):
    assert pack.required_comfyui() == ">=0.3.75"  # the [tool.comfy] entry of the shipped pyproject.toml
    other = tmp_path / "pyproject.toml"
    other.write_text('[tool.comfy]\nrequires-comfyui = ">=0.9.1"\n')
    assert pack.required_comfyui(other) == ">=0.9.1"
    other.write_text("[tool.other]\n")
    assert pack.required_comfyui(other) is None
    other.write_text("not toml [")
    assert pack.required_comfyui(other) is None
    assert pack.required_comfyui(tmp_path / "missing.toml") is None


def test_host_version_is_read_from_comfyui_version(pack, monkeypatch):
    monkeypatch.setitem(sys.modules, "comfyui_version", types.SimpleNamespace(__version__="0.3.75"))
    assert pack.host_version() == "0.3.75"
    monkeypatch.setitem(sys.modules, "comfyui_version", types.SimpleNamespace())
    assert pack.host_version() is None
    monkeypatch.setitem(sys.modules, "comfyui_version", None)  # import fails: no ComfyUI around
    assert pack.host_version() is None


def fake_comfy_api(monkeypatch) -> None:
    """Just enough of ``comfy_api.latest`` for the refusing entrypoint: the extension base class."""

    class ComfyExtension:
        async def get_node_list(self) -> list:
            raise NotImplementedError

    latest = types.ModuleType("comfy_api.latest")
    latest.ComfyExtension = ComfyExtension
    monkeypatch.setitem(sys.modules, "comfy_api", types.ModuleType("comfy_api"))
    monkeypatch.setitem(sys.modules, "comfy_api.latest", latest)


def test_older_host_gets_one_error_line_and_no_nodes(pack, monkeypatch, caplog):
    fake_comfy_api(monkeypatch)
    monkeypatch.setattr(pack, "host_version", lambda: "0.3.60")
    with caplog.at_level(logging.DEBUG, logger=pack.__name__):
        extension = asyncio.run(pack.comfy_entrypoint())
        nodes = asyncio.run(extension.get_node_list())
    assert isinstance(extension, sys.modules["comfy_api.latest"].ComfyExtension)
    assert nodes == []
    records = [r for r in caplog.records if r.name == pack.__name__]
    assert [r.levelno for r in records] == [logging.ERROR], records
    line = records[0].getMessage()
    assert "\n" not in line
    for fragment in ("HunyuanImage-2.1 nodes are not loaded", "ComfyUI >=0.3.75", "this is ComfyUI 0.3.60", "update"):
        assert fragment in line, line


@pytest.mark.parametrize("version", ["0.3.75", "0.8.0"])
def test_supported_host_passes_silently(pack, monkeypatch, caplog, version):
    monkeypatch.setattr(pack, "host_version", lambda: version)
    with caplog.at_level(logging.DEBUG, logger=pack.__name__):
        assert pack.check_host() is None
    assert not [r for r in caplog.records if r.name == pack.__name__]


@pytest.mark.parametrize(("version", "requirement"), [(None, ">=0.3.75"), ("0.3.60", None), ("nightly", ">=0.3.75")])
def test_unknown_version_or_requirement_registers_with_a_debug_line(pack, monkeypatch, caplog, version, requirement):
    monkeypatch.setattr(pack, "host_version", lambda: version)
    monkeypatch.setattr(pack, "required_comfyui", lambda: requirement)
    with caplog.at_level(logging.DEBUG, logger=pack.__name__):
        assert pack.check_host() is None
    records = [r for r in caplog.records if r.name == pack.__name__]
    assert [r.levelno for r in records] == [logging.DEBUG], records


def test_importing_the_package_needs_no_comfyui(pack):
    assert callable(pack.comfy_entrypoint)
    assert not hasattr(pack, "NODE_CLASS_MAPPINGS")
    assert "hy21_pack_under_test.nodes" not in sys.modules  # node modules load only in the entrypoint


# --- optional schema fields --------------------------------------------------------------------------------------


@dataclasses.dataclass
class OldSchema:  # ComfyUI 0.3.75's io.Schema: a dataclass without search_aliases
    node_id: str
    inputs: list | None = None


@dataclasses.dataclass
class NewSchema(OldSchema):
    search_aliases: list[str] = dataclasses.field(default_factory=list)


class OldInput:  # ComfyUI 0.3.75's inputs: no ``advanced``
    def __init__(self, id: str, tooltip: str | None = None, default: int | None = None) -> None:
        self.id, self.tooltip, self.default = id, tooltip, default


class NewInput(OldInput):
    def __init__(self, id: str, tooltip: str | None = None, default: int | None = None, advanced: bool | None = None):
        super().__init__(id, tooltip, default)
        self.advanced = advanced


def test_fields_are_detected_from_dataclasses_and_signatures(host):
    assert not host.supports(OldSchema, "search_aliases")
    assert host.supports(NewSchema, "search_aliases")
    assert not host.supports(OldInput, "advanced")
    assert host.supports(NewInput, "advanced")
    assert host.supports(OldInput, "tooltip")


def test_build_passes_optional_fields_only_where_known(host):
    old = host.build(OldSchema, node_id="X", inputs=[], search_aliases=["hy21"])
    assert old == OldSchema(node_id="X", inputs=[])
    new = host.build(NewSchema, node_id="X", search_aliases=["hy21"])
    assert new.search_aliases == ["hy21"]
    assert not hasattr(host.build(OldInput, "shift", tooltip="t", advanced=True), "advanced")
    built = host.build(NewInput, "shift", tooltip="t", default=-1, advanced=True)
    assert (built.id, built.tooltip, built.default, built.advanced) == ("shift", "t", -1, True)


def test_build_still_refuses_unknown_required_or_misspelt_fields(host):
    with pytest.raises(TypeError):
        host.build(OldInput, "shift", tootlip="typo")  # not an optional field: not silently dropped
    with pytest.raises(TypeError):
        host.build(OldSchema, search_aliases=["hy21"])  # node_id missing


def test_aliases_name_the_pack_and_the_node(host):
    words = host.aliases("ksampler")
    assert words[-1] == "ksampler"
    assert {"hunyuanimage", "hy21"} <= set(words)
