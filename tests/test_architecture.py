"""Rules of the code's shape, read statically from the source (nothing is imported or run).

- No module imports a private name (``_name``, one leading underscore) from a module of another package: what a
  package keeps private stays inside it; a helper shared across packages gets a public name in one home.
- The model core ``hunyuan_core`` never imports ComfyUI (nor the pack's own ComfyUI glue ``nodes``), so it runs
  and is tested without ComfyUI.
- A node's ``execute`` stays short (at most 40 lines): the work lives in the core, the node only adapts types.
- Every test carries exactly one kind mark (the rule itself lives in ``kinds.py``, installed by conftest.py).
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

import pytest
from kinds import KINDS

from hy21_host import repo_root

pytestmark = pytest.mark.unit

ROOT = repo_root()
CHECKED_DIRS = ("hunyuan_core", "nodes", "scripts", "bench", "tests")
# Folders put on sys.path besides the repository root (pyproject's pythonpath, and pytest's rootdir-relative
# insertion of tests/): a top-level module there is not a package of the repository root.
IMPORT_ROOTS = (ROOT / "tests", ROOT / "scripts", ROOT)
COMFYUI_MODULES = {
    "comfy", "comfy_api", "comfy_extras", "comfy_execution", "folder_paths", "latent_preview", "server", "nodes",
}  # fmt: skip
MAX_EXECUTE_LINES = 40


@dataclass(frozen=True)
class Import:
    """One ``import`` / ``from ... import`` (or ``importlib.import_module("...")``) in a file."""

    path: Path
    line: int
    module: str | None  # absolute dotted name, "" for the repository root, None when unresolvable
    target_dir: Path | None  # the package (folder) the imported names come from, None outside the repository
    names: tuple[str, ...]

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def python_files(*dirs: str) -> list[Path]:
    files = []
    for name in dirs:
        files += [p for p in sorted((ROOT / name).rglob("*.py")) if "__pycache__" not in p.parts]
    return files


@functools.cache
def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def import_root_of(path: Path) -> Path:
    """The sys.path entry the file is imported under: tests/, scripts/ or the repository root."""
    return next(root for root in IMPORT_ROOTS if path.is_relative_to(root))


def package_dir(module: str, search: tuple[Path, ...]) -> Path | None:
    """The folder holding what ``from <module> import ...`` reads: the package itself, or a module's folder."""
    parts = module.split(".") if module else []
    for root in search:
        base = root.joinpath(*parts)
        if base.is_dir():  # a package (regular or namespace) or the root itself
            return base
        if base.with_suffix(".py").is_file():
            return base.parent
    return None


def imports_of(path: Path) -> list[Import]:
    root = import_root_of(path)
    here = path.parent.relative_to(root).parts  # the importing file's package, as dotted parts
    found = []
    for node in ast.walk(parsed(path)):
        if isinstance(node, ast.ImportFrom):
            names = tuple(alias.name for alias in node.names)
            if node.level:  # relative: resolved against the file's own package
                if node.level - 1 > len(here):
                    found.append(Import(path, node.lineno, None, None, names))
                    continue
                base = here[: len(here) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
                found.append(Import(path, node.lineno, module, package_dir(module, (root,)), names))
            else:
                search = (path.parent, *IMPORT_ROOTS)  # a script's own folder is first on sys.path
                found.append(Import(path, node.lineno, node.module, package_dir(node.module, search), names))
        elif isinstance(node, ast.Import):
            found += [Import(path, node.lineno, alias.name, None, ()) for alias in node.names]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append(Import(path, node.lineno, node.args[0].value, None, ()))
    return found


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_imports_across_packages(paths: list[Path]) -> list[str]:
    bad = []
    for path in paths:
        for imp in imports_of(path):
            private = [name for name in imp.names if is_private(name)]
            if private and imp.target_dir != path.parent:
                source = imp.module if imp.module is not None else "outside the repository"
                bad.append(f"{imp.where()}: {', '.join(private)} from {source or '<repository root>'}")
    return bad


def comfyui_imports(paths: list[Path]) -> list[str]:
    bad = []
    for path in paths:
        for imp in imports_of(path):
            if imp.module is None:
                continue
            top = imp.module.split(".")[0]
            if imp.module == "" and imp.names:  # `from ... import nodes` reaching the pack's root
                top = next((n for n in imp.names if n in COMFYUI_MODULES), "")
            if top in COMFYUI_MODULES:
                bad.append(f"{imp.where()}: imports {imp.module or top}")
    return bad


def long_executes(paths: list[Path], limit: int = MAX_EXECUTE_LINES) -> list[str]:
    bad = []
    for path in paths:
        for cls in ast.walk(parsed(path)):
            if not isinstance(cls, ast.ClassDef):
                continue
            for fn in cls.body:
                if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef) and fn.name == "execute":
                    lines = fn.end_lineno - fn.lineno + 1
                    if lines > limit:
                        bad.append(f"{path.relative_to(ROOT)}:{fn.lineno}: {cls.name}.execute has {lines} lines")
    return bad


# --- the rules, on the repository ------------------------------------------------------------------------------


def test_no_private_name_is_imported_from_another_package():
    files = python_files(*CHECKED_DIRS)
    assert len(files) > 50
    bad = private_imports_across_packages(files)
    assert not bad, "private names imported across packages (give the helper a public name in one home):\n" + (
        "\n".join(bad)
    )


def test_core_never_imports_comfyui():
    files = python_files("hunyuan_core")
    assert files
    bad = comfyui_imports(files)
    assert not bad, "hunyuan_core must run without ComfyUI:\n" + "\n".join(bad)


def test_node_execute_methods_stay_short():
    files = python_files("nodes")
    assert files
    bad = long_executes(files)
    assert not bad, f"a node's execute longer than {MAX_EXECUTE_LINES} lines (move the work to the core):\n" + (
        "\n".join(bad)
    )


# --- the checkers themselves, on small made-up trees -----------------------------------------------------------


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """A throw-away repository layout; the module-level roots point into it."""
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    monkeypatch.setitem(globals(), "IMPORT_ROOTS", (tmp_path / "tests", tmp_path / "scripts", tmp_path))

    def write(relative: str, source: str) -> Path:
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
        return path

    for package in ("core", "core/vae", "core/refiner_vae", "glue"):
        write(f"{package}/__init__.py", "")
    write("core/vae/model.py", "def _add(a, b):\n    return a + b\n")
    write("core/common.py", "_SHARED = 1\n")
    write("tests/helpers.py", "def _local():\n    pass\n")
    return write


@pytest.mark.parametrize(
    ("relative", "source", "flagged"),
    [
        ("core/refiner_vae/model.py", "from ..vae.model import _add\n", True),
        ("core/refiner_vae/model.py", "from core.vae.model import _add\n", True),
        ("core/vae/images.py", "from ..common import _SHARED\n", True),  # the parent package is another one
        ("tests/test_x.py", "from core.vae.model import _add\n", True),
        ("tests/test_x.py", "from torch.nn.modules.module import _addindent\n", True),  # outside the repository
        ("core/vae/images.py", "from .model import _add\n", False),
        ("core/vae/images.py", "from core.vae.model import _add\n", False),  # the same package, spelt absolute
        ("core/vae/__init__.py", "from .model import _add\n", False),
        ("core/vae/images.py", "from . import __version__\n", False),  # dunder names are public
        ("core/refiner_vae/model.py", "from ..vae.model import add\n", False),
        ("tests/test_x.py", "from helpers import _local\n", False),  # the same folder on sys.path
    ],
)
def test_private_import_checker(tree, relative, source, flagged):
    path = tree(relative, source)
    assert bool(private_imports_across_packages([path])) == flagged


@pytest.mark.parametrize(
    ("source", "flagged"),
    [
        ("import comfy.model_management\n", True),
        ("from comfy_api.latest import io\n", True),
        ("import folder_paths\n", True),
        ("from server import PromptServer\n", True),
        ("import latent_preview\n", True),
        ("from ...nodes import loaders\n", True),  # the pack's own glue, reached relatively
        ("from ... import nodes\n", True),
        ("importlib.import_module('comfy.ops')\n", True),
        ("import torch\nfrom ..common import _SHARED\nfrom .model import _add\n", False),
    ],
)
def test_comfyui_import_checker(tree, source, flagged):
    path = tree("core/vae/images.py", source)
    assert bool(comfyui_imports([path])) == flagged


def test_execute_length_checker(tree):
    body = "".join(f"        x{i} = {i}\n" for i in range(38))
    ok = tree("glue/ok.py", f"class Node:\n    @classmethod\n    def execute(cls):\n{body}        return x0\n")
    long = tree("glue/long.py", f"class Node:\n    def execute(self):\n{body}        x = 1\n        return x\n")
    assert long_executes([ok]) == []  # 40 lines from `def` to the last, the decorator not counted
    assert long_executes([long]) == ["glue/long.py:2: Node.execute has 41 lines"]


# --- every test has exactly one kind -----------------------------------------------------------------------------


@pytest.fixture
def kinds_project(pytester):
    """A throw-away test project with this repository's kind marks and its collection rule (``-p kinds``)."""
    marks = "\n".join(f"    {kind}: a kind" for kind in KINDS)
    pytester.makeini(f"[pytest]\naddopts = --strict-markers -p kinds -p no:cacheprovider\nmarkers =\n{marks}\n")
    return pytester


@pytest.mark.parametrize(
    ("mark", "collects"),
    [
        ("pytestmark = pytest.mark.unit", True),
        ("pytestmark = [pytest.mark.parity, pytest.mark.usefixtures('tmp_path')]", True),
        ("", False),
        ("pytestmark = [pytest.mark.unit, pytest.mark.server]", False),
        ("pytestmark = pytest.mark.slow", False),  # not a registered mark: --strict-markers refuses it
    ],
)
def test_a_test_needs_exactly_one_kind(kinds_project, mark, collects):
    kinds_project.makepyfile(test_new=f"import pytest\n\n{mark}\n\n\ndef test_something():\n    pass\n")
    result = kinds_project.runpytest("-m", "unit or parity")
    if collects:
        result.assert_outcomes(passed=1)
    else:
        assert result.ret != pytest.ExitCode.OK
        assert result.parseoutcomes().get("passed", 0) == 0


def test_the_kind_rule_names_the_module(kinds_project):
    kinds_project.makepyfile(test_unmarked="def test_a():\n    pass\n\n\ndef test_b():\n    pass\n")
    result = kinds_project.runpytest("-m", "unit")  # deselection must not hide an unmarked test
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*exactly one of the marks unit, parity, server, bench*", "*test_unmarked.py: no kind*"]
    )
