"""Each shipped UI workflow dropped onto ComfyUI's canvas as a file, the way a user drags it from a folder: it loads
whole (no missing-node or missing-model dialog, no red node, every link and widget value as in the file, no node on
top of another), and the prompt the frontend would queue for it equals its API twin, node for node and input for
input (less the display widget the frontend adds to Preview as Text, which the server ignores). A workflow naming a
model file the models folder lacks warns at load, naming the folder and the file.

A screenshot of each loaded workflow is written to the artifacts folder.
"""

from __future__ import annotations

import copy
import json
from itertools import combinations
from pathlib import Path

import pytest
from ui import UiPage

from hy21_host import repo_root

pytestmark = pytest.mark.browser

WORKFLOWS = repo_root() / "workflows"
UI_FILES = sorted(WORKFLOWS.glob("*.json"))
MISSING_DIT = "hunyuanimage2.1_distilled_fp8_e4m3fn.safetensors"  # a real release's name, not in the tiny set
# Widgets the frontend adds to a core node and queues with its prompt, though the server defines no such input and
# ignores it: Preview as Text's read-only display of what it last received.
FRONTEND_WIDGETS = {"PreviewAny": {"preview"}}


def overlaps(a: list[float], b: list[float]) -> bool:
    """Whether two [x, y, width, height] boxes share any area."""
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.stem)
def test_dropped_workflow_loads_whole(ui: UiPage, path: Path):
    saved = json.loads(path.read_text())
    graph = ui.drop_workflow(path)
    ui.screenshot(f"loaded_{path.stem}")
    assert ui.visible_dialogs() == [], "a dialog opened on load (missing nodes or models?)"
    registered = set(ui.page.evaluate("() => Object.keys(window.LiteGraph.registered_node_types)"))
    by_id = {node["id"]: node for node in graph["nodes"]}
    for node in saved["nodes"]:
        found = by_id[node["id"]]
        assert node["type"] in registered, f"{node['type']} is not a registered node type"
        assert not found["has_errors"], f"node {node['id']} ({node['type']}) is drawn as broken"
        assert found["widgets_values"] == node["widgets_values"], f"node {node['id']} ({node['type']}) widgets"
        assert found["pos"] == node["pos"] and found["size"] == node["size"], (
            f"node {node['id']} ({node['type']}) is at {found['pos']} sized {found['size']}, the file says "
            f"{node['pos']} sized {node['size']} (the frontend enlarges a node the file makes too small)"
        )
        links = {slot["name"]: slot["link"] for slot in found["inputs"] if slot["link"] is not None}
        assert links == {slot["name"]: slot["link"] for slot in node["inputs"]}, f"node {node['id']} input links"
    assert sorted(graph["links"]) == sorted(saved["links"]), "the canvas's links differ from the file's"
    stacked = [
        f"{a['id']} ({a['type']}) and {b['id']} ({b['type']})"
        for a, b in combinations(graph["nodes"], 2)
        if overlaps(a["bounding"], b["bounding"])
    ]
    assert not stacked, "nodes drawn on top of each other: " + ", ".join(stacked)


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.stem)
def test_queued_prompt_equals_the_api_twin(ui: UiPage, path: Path):
    ui.drop_workflow(path)
    prompt = ui.prompt()
    twin = json.loads((WORKFLOWS / "api" / f"{path.stem}_api.json").read_text())
    assert sorted(prompt) == sorted(twin), "the frontend queues other nodes than the API twin has"
    for node_id, node in twin.items():
        queued = prompt[node_id]
        assert queued["class_type"] == node["class_type"], node_id
        shown_only = FRONTEND_WIDGETS.get(node["class_type"], set())
        inputs = {name: value for name, value in queued["inputs"].items() if name not in shown_only}
        assert inputs == node["inputs"], f"node {node_id} ({node['class_type']}) inputs differ"


def test_missing_model_file_warns_at_load(ui: UiPage):
    path = WORKFLOWS / "hunyuanimage21_distilled.json"
    workflow = json.loads(path.read_text())
    renamed = copy.deepcopy(workflow)
    loader = next(n for n in renamed["nodes"] if n["type"] == "HunyuanImage21DiTLoader")
    old = loader["widgets_values"][0]
    loader["widgets_values"][0] = MISSING_DIT
    for entry in [*loader["properties"]["models"], *renamed["models"]]:
        if entry["name"] == old:
            entry["name"], entry["url"] = MISSING_DIT, entry["url"].replace(old, MISSING_DIT)
    ui.drop_workflow(path, renamed)
    ui.page.get_by_text("Missing Models").first.wait_for(timeout=10_000)
    ui.screenshot("missing_model_warning")
    (dialog,) = ui.visible_dialogs()
    assert f"diffusion_models / {MISSING_DIT}" in dialog, dialog
    for present in (entry["name"] for entry in workflow["models"]):
        if present != old:
            assert present not in dialog, f"{present} is in the models folder but the dialog lists it"
