"""The shipped UI workflows as a user sees them before anything runs: nodes laid out with none on top of another
(title bars included), each model file listed in the ``models`` metadata the frontend's missing-models dialog
reads (name, folder, the publisher's download URL), and a template-browser thumbnail next to each file that is the
picture scripts/make_workflows.py draws for it now. The prompt enhancer is a Hugging Face folder, which that dialog
cannot check or fetch (it compares single file names and downloads only ``.safetensors`` / ``.sft`` files): the
enhanced workflow lists it nowhere in ``models`` and its note says where the folder goes instead. The browser tests
check the same on a real canvas.
"""

from __future__ import annotations

import io
import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hunyuan_core.variants import BASE, DISTILLED, GLYPH_FILE, QWEN_FILE, REFINER, REFINER_VAE_FILE, STAGE1_VAE_FILE
from hy21_host import repo_root
from hy21_host.tiny_models import ENHANCER_FOLDER
from make_workflows import MODEL_WIDGETS, THUMBNAIL_SIZE, TITLE_HEIGHT, render_thumbnails

pytestmark = pytest.mark.unit

UI_FILES = sorted((repo_root() / "workflows").glob("*.json"))
PUBLISHER = "https://huggingface.co/Comfy-Org/HunyuanImage_2.1_ComfyUI/resolve/main/split_files/"
KNOWN_FILES = {f.name: f.folder for f in (BASE.dit_file, DISTILLED.dit_file, REFINER.dit_file, QWEN_FILE, GLYPH_FILE,
                                          STAGE1_VAE_FILE, REFINER_VAE_FILE)}  # fmt: skip


def box(node: dict) -> tuple[float, float, float, float]:
    """A node's area on the canvas, title bar included (LiteGraph draws it above the node's position)."""
    (x, y), (w, h) = node["pos"], node["size"]
    return x, y - TITLE_HEIGHT, x + w, y + h


def test_five_ui_workflows():
    assert len(UI_FILES) == 5, UI_FILES


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.stem)
def test_no_node_covers_another(path: Path):
    nodes = json.loads(path.read_text())["nodes"]
    stacked = []
    for a, b in combinations(nodes, 2):
        (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = box(a), box(b)
        if ax0 < bx1 and bx0 < ax1 and ay0 < by1 and by0 < ay1:
            stacked.append(f"{a['id']} ({a['type']}) and {b['id']} ({b['type']})")
    assert not stacked, f"{path.name}: overlapping nodes: {', '.join(stacked)}"


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.stem)
def test_every_model_file_is_listed_with_folder_and_url(path: Path):
    workflow = json.loads(path.read_text())
    named = {}
    for node in workflow["nodes"]:
        wanted = [
            {"name": node["widgets_values"][i], "url": PUBLISHER + f"{folder}/{node['widgets_values'][i]}",
             "directory": folder}
            for i, folder in MODEL_WIDGETS.get(node["type"], ())
        ]  # fmt: skip
        assert node["properties"].get("models", []) == wanted, f"node {node['id']} ({node['type']})"
        named.update({entry["name"]: entry for entry in wanted})
    assert named, f"{path.name} names no model file"
    for name, entry in named.items():
        assert KNOWN_FILES.get(name) == entry["directory"], f"{name} listed in {entry['directory']}"
    assert sorted(workflow["models"], key=lambda e: e["name"]) == sorted(named.values(), key=lambda e: e["name"])


def test_each_workflow_has_the_thumbnail_drawn_for_it():
    drawn = render_thumbnails()
    assert sorted(p.stem for p in drawn) == sorted(p.stem for p in UI_FILES)
    for path, data in drawn.items():
        assert path.is_file(), f"{path.name} missing: run .venv/bin/python scripts/make_workflows.py"
        shipped = Image.open(path)
        assert shipped.format == "JPEG" and shipped.size == (THUMBNAIL_SIZE, THUMBNAIL_SIZE)
        now = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float64)
        difference = np.abs(np.asarray(shipped.convert("RGB"), dtype=np.float64) - now).mean()
        assert difference < 1.0, f"{path.name} is stale (mean difference {difference:.2f}): run make_workflows.py"


def test_enhanced_workflow_names_the_enhancer_folder_in_its_note_not_in_models():
    """The distilled workflow with the enhancer's rewrite wired into the Text Encode's prompt; the folder the loader
    names is the one the tiny model set writes (so the server tests run the file as shipped)."""
    workflow = json.loads((repo_root() / "workflows/hunyuanimage21_distilled_enhanced.json").read_text())
    nodes = {node["id"]: node for node in workflow["nodes"]}
    (loader,) = [n for n in nodes.values() if n["type"] == "HunyuanImage21PromptEnhancerLoader"]
    folder = f"{ENHANCER_FOLDER.as_posix()}/"
    assert loader["widgets_values"][0] == folder
    assert "models" not in loader["properties"]
    assert not [entry for entry in workflow["models"] if "PromptEnhancer" in json.dumps(entry)], workflow["models"]
    links = {link[0]: link for link in workflow["links"]}
    (encode,) = [n for n in nodes.values() if n["type"] == "HunyuanImage21TextEncode"]
    (prompt,) = [slot for slot in encode["inputs"] if slot["name"] == "prompt"]
    assert prompt["widget"] == {"name": "prompt"}
    assert nodes[links[prompt["link"]][1]]["type"] == "HunyuanImage21PromptEnhancer"
    shown = {nodes[links[slot["link"]][1]]["type"] for n in nodes.values() if n["type"] == "PreviewAny"
             for slot in n["inputs"]}  # fmt: skip
    assert shown == {"HunyuanImage21PromptEnhancer"}
    notes = [n["widgets_values"][0] for n in nodes.values() if n["type"] == "Note"]
    (note,) = [text for text in notes if "PromptEnhancer" in text]
    for needed in (f"models/{folder}", "https://huggingface.co/PromptEnhancer/PromptEnhancer-7B",
                   "hunyuanimage21_distilled)"):  # fmt: skip
        assert needed in note, f"the enhancer's note does not say {needed!r}"
    assert any(f"models/{DISTILLED.dit_file.folder}/{DISTILLED.dit_file.name}" in text for text in notes)
