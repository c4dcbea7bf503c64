"""Every node the pack registers explains itself: a description, a tooltip on each input and output in /object_info,
and a help page for the frontend's node library (web/docs/<NodeId>.md, served from the pack's WEB_DIRECTORY).

Each check walks all of the pack's nodes and reports every gap at once, naming the node and the input or output.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request

import helpers
import pytest

from hy21_host import ComfyClient, repo_root
from hy21_host.host import PACK_NAME

pytestmark = pytest.mark.server

DOCS = repo_root() / "web" / "docs"
EXTENSION_ROOT = f"/extensions/{urllib.parse.quote(PACK_NAME)}"
BULLET = re.compile(r"^- \*\*([^*]+)\*\*", re.MULTILINE)


def get(url: str) -> tuple[int, str]:
    """Status and body text of a GET (an HTTP error status is returned, not raised)."""
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, resp.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def input_specs(info: dict) -> dict[str, dict]:
    """Every required and optional input of a node with its options (hidden inputs are no widgets or sockets)."""
    inputs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
    return {name: (spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}) for name, spec in inputs.items()}


def sections(page: str) -> dict[str, str]:
    """The text under each ``## `` heading of a page, by heading."""
    found: dict[str, list[str]] = {}
    current = None
    for line in page.splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            found[current] = []
        elif current is not None:
            found[current].append(line)
    return {heading: "\n".join(lines) for heading, lines in found.items()}


@pytest.fixture
def pack_nodes(comfy: ComfyClient) -> dict[str, dict]:
    """/object_info of the pack's nodes, by node id."""
    return helpers.pack_nodes(comfy.object_info())


def test_every_node_has_description_and_tooltips(pack_nodes):
    problems = []
    for node, info in sorted(pack_nodes.items()):
        if not str(info.get("description") or "").strip():
            problems.append(f"{node}: no description")
        for name, options in input_specs(info).items():
            if not str(options.get("tooltip") or "").strip():
                problems.append(f"{node}: input {name} has no tooltip")
        outputs, tooltips = info.get("output_name", []), info.get("output_tooltips") or []
        for index, name in enumerate(outputs):
            if index >= len(tooltips) or not str(tooltips[index] or "").strip():
                problems.append(f"{node}: output {name} has no output_tooltips entry")
    assert not problems, "\n".join(problems)


def test_every_node_has_a_served_help_page(comfy, pack_nodes):
    problems = []
    for node, info in sorted(pack_nodes.items()):
        status, page = get(f"{comfy.url}{EXTENSION_ROOT}/docs/{node}.md")
        if status != 200:
            problems.append(f"{node}: GET docs/{node}.md answered {status} (web/docs/{node}.md missing?)")
            continue
        if page != (DOCS / f"{node}.md").read_text(encoding="utf-8"):
            problems.append(f"{node}: the served page is not this repository's web/docs/{node}.md")
        first = next((line for line in page.splitlines() if line.strip()), "")
        if first != f"# {info['display_name']}":
            problems.append(f"{node}: the page starts with {first!r}, not the title '# {info['display_name']}'")
        parts = sections(page)
        for heading, names in (("Inputs", list(input_specs(info))), ("Outputs", info.get("output_name", []))):
            if heading not in parts:
                problems.append(f"{node}: no '## {heading}' section")
                continue
            documented = BULLET.findall(parts[heading])
            for name in names:
                if f"**{name}**" not in parts[heading]:
                    problems.append(f"{node}: {heading.lower()[:-1]} {name} is not described (- **{name}**: ...)")
            for name in sorted(set(documented) - set(names)):
                problems.append(f"{node}: the page describes {heading.lower()[:-1]} {name}, which the node lacks")
            if len(documented) != len(set(documented)):
                problems.append(f"{node}: a {heading.lower()[:-1]} is described twice: {documented}")
    assert not problems, "\n".join(problems)


def test_no_page_for_an_unregistered_node(comfy, pack_nodes):
    entries = sorted(DOCS.iterdir())
    assert entries, f"{DOCS} is empty"
    pages = {entry.stem if entry.is_file() else entry.name: entry for entry in entries}
    strays = [f"{entry.relative_to(repo_root())}" for name, entry in pages.items() if name not in pack_nodes]
    strays += [f"{e.relative_to(repo_root())} (not .md)" for e in entries if e.is_file() and e.suffix != ".md"]
    assert not strays, f"web/docs holds pages for no registered node: {strays}; registered: {sorted(pack_nodes)}"
    status, _ = get(f"{comfy.url}{EXTENSION_ROOT}/docs/NoSuchHunyuanNode.md")
    assert status == 404, f"a page for a node that does not exist answered {status}"


def test_pack_adds_no_frontend_script(comfy):
    status, body = get(f"{comfy.url}/extensions")
    assert status == 200, status
    scripts = json.loads(body)
    assert isinstance(scripts, list), scripts
    ours = [script for script in scripts if script.startswith(f"{EXTENSION_ROOT}/")]
    assert not ours, f"ComfyUI loads these files of the pack as frontend extensions: {ours}"
    on_disk = sorted(str(path.relative_to(repo_root())) for path in (repo_root() / "web").rglob("*.js"))
    assert not on_disk, f"web/ is the pack's WEB_DIRECTORY: every .js file in it runs in the frontend: {on_disk}"
