"""The shipped UI workflows and their API twins describe the same graph, read against the real server's /object_info.

The UI format keeps widget values as a positional list (``widgets_values``) and links in a separate array; the API
format names every input. Converting one into the other needs the server's input order and which inputs are
widgets, so a node whose inputs were reordered or retyped would break the twin check here, not a user's canvas.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from hunyuan_core.variants import (
    BASE,
    GLYPH_FILE,
    QWEN_FILE,
    REFINER,
    REFINER_VAE_FILE,
    STAGE1_VAE_FILE,
    STAGE1_VARIANTS,
    get_variant,
)
from hy21_host import ComfyClient, repo_root
from hy21_host.host import PACK_NAME

pytestmark = pytest.mark.server

VARIANTS = ("base", "distilled", "base_refiner", "custom_sampling", "distilled_enhanced")
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
FRONTEND_ONLY = {"Note", "MarkdownNote"}  # drawn by the frontend, never sent to the server


def ui_workflow(variant: str) -> dict:
    return json.loads((repo_root() / f"workflows/hunyuanimage21_{variant}.json").read_text())


def api_workflow(variant: str) -> dict:
    return json.loads((repo_root() / f"workflows/api/hunyuanimage21_{variant}_api.json").read_text())


@pytest.fixture(scope="module")
def object_info(comfy_host) -> dict:
    return ComfyClient(comfy_host.url).object_info()


def is_widget(spec: list) -> bool:
    """A V1 combo is a list of options; V3 (and newer V1) report ``"COMBO"`` with ``options`` in the dict."""
    kind, opts = spec[0], (spec[1] if len(spec) > 1 else {})
    if opts.get("forceInput"):
        return False
    return isinstance(kind, list) or kind in WIDGET_TYPES


def ordered_inputs(info: dict) -> list[tuple[str, list, bool]]:
    """(name, spec, optional) in the frontend's order: required, then optional, each in the server's order."""
    found = []
    for section in ("required", "optional"):
        found += [(name, spec, section == "optional") for name, spec in info["input"].get(section, {}).items()]
    order = info.get("input_order")
    if order:  # the dicts' order and the explicit order must agree, or the frontend would place widgets elsewhere
        assert [n for n, _, _ in found] == order.get("required", []) + order.get("optional", [])
    return found


def ui_to_api(ui: dict, object_info: dict) -> dict:
    """Convert a UI-format workflow to the API format the frontend would queue for it."""
    links = {link[0]: link for link in ui["links"]}
    nodes = {node["id"]: node for node in ui["nodes"]}
    api = {}
    for node in ui["nodes"]:
        kind = node["type"]
        if kind not in object_info:
            assert kind in FRONTEND_ONLY, f"node {node['id']}: {kind!r} is unknown to the server"
            continue
        assert node.get("mode", 0) == 0, f"node {node['id']} is muted or bypassed"
        info = object_info[kind]
        values = list(node.get("widgets_values", []))
        linked = {slot["name"]: slot.get("link") for slot in node.get("inputs", [])}
        inputs = {}
        for name, spec, optional in ordered_inputs(info):
            if is_widget(spec):
                assert values, f"node {node['id']} ({kind}): no widget value left for {name!r}"
                value = values.pop(0)
                if spec[1].get("control_after_generate"):
                    values.pop(0)  # the 'fixed' / 'randomize' choice shown next to the seed
            if linked.get(name) is not None:
                link = links[linked[name]]
                _, source, slot, target, target_slot, link_type = link
                assert target == node["id"] and node["inputs"][target_slot]["name"] == name, f"link {link} misplaced"
                if is_widget(spec):  # a widget fed by a link: the frontend marks the slot with the widget's name
                    assert node["inputs"][target_slot].get("widget") == {"name": name}, f"link {link}: no widget mark"
                source_outputs = object_info[nodes[source]["type"]]["output"]
                assert link_type == source_outputs[slot], f"link {link} carries {link_type}, not {source_outputs[slot]}"
                accepted = spec[0].split(",") if isinstance(spec[0], str) else []  # "A,B": a multi-type input
                assert link_type in accepted or "*" in accepted or is_widget(spec), (  # "*": any type
                    f"link {link} into {name!r} of type {spec[0]}"
                )
                inputs[name] = [str(source), slot]
            elif is_widget(spec):
                inputs[name] = value
            else:
                assert optional, f"node {node['id']} ({kind}): required input {name!r} is not linked"
        assert not values, f"node {node['id']} ({kind}): widgets_values left over: {values}"
        sockets = [name for name, spec, _ in ordered_inputs(info) if not is_widget(spec)]
        in_file = [slot["name"] for slot in node.get("inputs", []) if "widget" not in slot]
        fed = [slot["name"] for slot in node.get("inputs", []) if "widget" in slot]  # widgets fed by a link
        assert in_file == [name for name in sockets if name in in_file], (
            f"node {node['id']} ({kind}): inputs {in_file} are not in the socket order {sockets}, the order the "
            "frontend numbers link slots by"
        )
        assert [slot["name"] for slot in node.get("inputs", [])] == in_file + fed, (
            f"node {node['id']} ({kind}): a widget's input slot comes before a socket"
        )
        api[str(node["id"])] = {"class_type": kind, "inputs": inputs}
    return api


@pytest.mark.parametrize("variant", VARIANTS)
def test_ui_workflow_converts_to_its_api_twin(object_info, variant):
    converted = ui_to_api(ui_workflow(variant), object_info)
    twin = api_workflow(variant)
    assert converted == twin
    # Exactly: also the JSON types (an int where the twin has a float would be a different prompt to the server).
    assert json.dumps(converted, sort_keys=True) == json.dumps(twin, sort_keys=True)


@pytest.mark.parametrize("variant", STAGE1_VARIANTS)
def test_ui_workflow_names_the_published_files(variant):
    dit_file = get_variant(variant).dit_file
    nodes = {node["type"]: node for node in ui_workflow(variant)["nodes"]}
    assert nodes["HunyuanImage21DiTLoader"]["widgets_values"][0] == dit_file.name
    assert nodes["HunyuanImage21TextEncoderLoader"]["widgets_values"][:2] == [QWEN_FILE.name, GLYPH_FILE.name]
    assert nodes["HunyuanImage21VAELoader"]["widgets_values"][0] == STAGE1_VAE_FILE.name
    note = "\n".join(str(v) for v in nodes["Note"]["widgets_values"])
    for file in (dit_file, QWEN_FILE, GLYPH_FILE, STAGE1_VAE_FILE):
        place = f"models/{file.folder}/{file.name}"
        assert place in note, f"the note does not say where {place.rsplit('/', 1)[1]} goes"


def test_refiner_workflow_names_the_published_files():
    ui = ui_workflow("base_refiner")
    dits = [n["widgets_values"][0] for n in ui["nodes"] if n["type"] == "HunyuanImage21DiTLoader"]
    assert sorted(dits) == sorted([BASE.dit_file.name, REFINER.dit_file.name])
    nodes = {node["type"]: node for node in ui["nodes"]}
    assert nodes["HunyuanImage21VAELoader"]["widgets_values"][0] == STAGE1_VAE_FILE.name
    assert nodes["HunyuanImage21RefinerVAELoader"]["widgets_values"][0] == REFINER_VAE_FILE.name
    note = "\n".join(str(v) for v in nodes["Note"]["widgets_values"])
    files = (BASE.dit_file, REFINER.dit_file, QWEN_FILE, GLYPH_FILE, STAGE1_VAE_FILE, REFINER_VAE_FILE)
    for name in (file.name for file in files):
        assert name in note, f"the note does not say where {name} goes"
    refiner = nodes["HunyuanImage21Refiner"]
    linked = {slot["name"] for slot in refiner["inputs"] if slot.get("link") is not None}
    assert linked == {"model", "refiner_vae", "text_encoders", "positive", "image"}


def test_template_browser_lists_the_ui_workflows(comfy):
    """0.3.75 serves custom-node templates from example_workflows/ and, with a debug note, workflows/ too."""
    listed = json.loads(urllib.request.urlopen(comfy.url + "/api/workflow_templates", timeout=30).read())
    assert sorted(listed.get(PACK_NAME, [])) == sorted(f"hunyuanimage21_{v}" for v in VARIANTS)  # not the api/ twins
    for variant in VARIANTS:
        url = f"{comfy.url}/api/workflow_templates/{PACK_NAME}/hunyuanimage21_{variant}.json"
        with urllib.request.urlopen(url, timeout=30) as resp:
            assert json.loads(resp.read()) == ui_workflow(variant)
        with urllib.request.urlopen(url.removesuffix(".json") + ".jpg", timeout=30) as resp:  # the card's picture
            assert resp.headers["Content-Type"] == "image/jpeg" and resp.read()[:3] == b"\xff\xd8\xff"
