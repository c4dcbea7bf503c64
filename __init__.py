"""HunyuanImage-2.1 for ComfyUI.

ComfyUI imports this package from ``custom_nodes/`` and awaits ``comfy_entrypoint`` (V3 node schema). The
node modules are imported only then, so importing the package itself costs nothing and needs no ComfyUI;
heavy libraries (transformers, diffusers) are imported only when a node runs.

Before registering, the entrypoint compares the host's version with ``[tool.comfy] requires-comfyui`` in
pyproject.toml (the one home of that fact): on an older ComfyUI the pack registers no nodes and says so once, in
the log at start-up, instead of failing at the first prompt.
"""

from __future__ import annotations

import importlib
import logging
import operator
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PYPROJECT = Path(__file__).resolve().parent / "pyproject.toml"
COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne, ">": operator.gt, "<": operator.lt,
}  # fmt: skip
CLAUSE = re.compile(r"\s*(>=|<=|==|!=|>|<)\s*([0-9][0-9A-Za-z.+-]*)\s*$")
# Served by ComfyUI at /extensions/<folder>/: web/docs/<NodeId>.md are the node library's help pages (no .js here).
WEB_DIRECTORY = "./web"


def parse_version(text: str) -> tuple[int, ...] | None:
    """The release numbers of a version string (``"0.3.75"`` -> ``(0, 3, 75)``; suffixes such as ``rc1`` or a
    local ``+abc`` are ignored), or None when it does not start with a number."""
    match = re.match(r"\s*v?(\d+(?:\.\d+)*)", text)
    return None if match is None else tuple(int(part) for part in match.group(1).split("."))


def satisfies(version: str, requirement: str) -> bool | None:
    """Whether ``version`` meets ``requirement`` (comma-separated clauses such as ``>=0.3.75``); None when either
    cannot be read, so the caller can tell "too old" from "unknown"."""
    found = parse_version(version)
    clauses = [CLAUSE.match(part) for part in requirement.split(",")]
    if found is None or not clauses or None in clauses:
        return None
    for clause in clauses:
        wanted = parse_version(clause.group(2))
        if wanted is None:
            return None
        width = max(len(found), len(wanted))  # 0.4 == 0.4.0
        padded_found, padded_wanted = (v + (0,) * (width - len(v)) for v in (found, wanted))
        if not COMPARISONS[clause.group(1)](padded_found, padded_wanted):
            return False
    return True


def required_comfyui(pyproject: Path = PYPROJECT) -> str | None:
    """``[tool.comfy] requires-comfyui`` from the pack's pyproject.toml, or None when it cannot be read."""
    try:
        import tomllib  # Python 3.11+; on 3.10 the requirement is treated as unknown
    except ImportError:
        return None
    try:
        with open(pyproject, "rb") as file:
            value = tomllib.load(file).get("tool", {}).get("comfy", {}).get("requires-comfyui")
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return value if isinstance(value, str) else None


def host_version() -> str | None:
    """The running ComfyUI's version (``comfyui_version.__version__``, next to its main.py), or None if unknown."""
    try:
        version = importlib.import_module("comfyui_version").__version__
    except (ImportError, AttributeError):
        return None
    return version if isinstance(version, str) else None


def host_problem(found: str | None, required: str | None) -> str | None:
    """The one error line for a ComfyUI older than the pack needs (None when it is new enough or unknown)."""
    if found is None or required is None or satisfies(found, required) is not False:
        return None
    return (
        f"HunyuanImage-2.1 nodes are not loaded: they need ComfyUI {required} but this is ComfyUI {found}; "
        "update ComfyUI (git pull in its folder, or Update ComfyUI in the Manager) and restart it"
    )


def check_host() -> str | None:
    """Compare the running ComfyUI with the pack's requirement; log at debug what could not be read."""
    found, required = host_version(), required_comfyui()
    if found is None or required is None or satisfies(found, required) is None:
        log.debug(
            "HunyuanImage-2.1: ComfyUI version %r or requirement %r unreadable; registering anyway", found, required
        )
    return host_problem(found, required)


async def comfy_entrypoint():
    """ComfyUI's V3 hook: the pack's nodes, or none at all on a ComfyUI too old for them."""
    problem = check_host()
    if problem is not None:
        log.error(problem)
        from comfy_api.latest import ComfyExtension

        class RefusedExtension(ComfyExtension):
            """Registers nothing: the host is older than the pack supports (the reason is in the log)."""

            async def get_node_list(self) -> list:
                return []

        return RefusedExtension()

    from .nodes import HunyuanImage21Extension

    return HunyuanImage21Extension()


__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
