"""ComfyUI's web UI with the pack installed, as a user first meets it: the page loads with no error that the pack
causes, and the node search finds every pack node by "Hunyuan" with its display name and category.

"Caused by the pack" is measured, not guessed: the same page is opened on a second server started from the same
ComfyUI without the pack (the control), and only what the pack's server adds counts. The frontend's own requests
to the internet (ComfyUI's registry), which a machine with no network refuses whatever is installed, are left out.
"""

from __future__ import annotations

import time

import helpers
import pytest
from ui import UiPage, is_offline_noise, start_ui_host

from hy21_host import ComfyClient
from hy21_host.host import PACK_NAME

pytestmark = pytest.mark.browser

SETTLE_S = 2.0  # after the network goes idle: late console messages (deferred loads) arrive within this


def pack_nodes(server_url: str) -> dict[str, dict]:
    """The pack's node definitions from the server's /object_info, by node id."""
    nodes = helpers.pack_nodes(ComfyClient(server_url).object_info())
    assert len(nodes) >= 13, f"the server lists {len(nodes)} pack nodes"
    return nodes


def settled(ui: UiPage) -> UiPage:
    ui.page.wait_for_load_state("networkidle")
    time.sleep(SETTLE_S)
    return ui


def test_ui_loads_with_no_error_caused_by_the_pack(new_page, ui_host, artifacts):
    control_host = start_ui_host(pack=False)
    try:
        control = settled(new_page(control_host.url))
        control_lines = control.log.normalised(control_host.url)
    finally:
        control_host.cleanup()
    ui = settled(new_page(ui_host.url))
    ui.screenshot("ui_loaded")
    lines = ui.log.normalised(ui_host.url)
    added = sorted(line for line in lines - control_lines if not is_offline_noise(line))
    assert not added, "errors on the page with the pack that the page without it does not show:\n" + "\n".join(added)
    assert not [e for e in ui.log.page_errors if PACK_NAME in e or "HunyuanImage21" in e], ui.log.page_errors
    registered = ui.page.evaluate("() => Object.keys(window.LiteGraph.registered_node_types)")
    missing = sorted(set(pack_nodes(ui_host.url)) - set(registered))
    assert not missing, f"pack nodes the frontend did not register: {missing}"


def search_results(ui: UiPage, text: str) -> list[str]:
    """Open the node search box on an empty canvas (a double-click, as a user does), type ``text``, and read the
    options it lists, each as its text (display name, category, source)."""
    ui.page.evaluate("() => { window.app.graph.clear(); window.app.graph.setDirtyCanvas(true, true); }")
    box = ui.page.locator("#graph-canvas").bounding_box()
    ui.page.mouse.dblclick(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    ui.page.locator(".comfy-vue-node-search-container input").first.wait_for(timeout=10_000)
    ui.page.keyboard.type(text, delay=20)
    options = ui.page.locator(".p-autocomplete-list li.p-autocomplete-option")
    options.first.wait_for(timeout=10_000)
    time.sleep(0.5)  # the list is filtered as the letters arrive: read it once typing has settled
    return [" ".join(option.split()) for option in options.all_inner_texts()]


def test_node_search_finds_every_pack_node_by_hunyuan(ui, ui_host):
    nodes = pack_nodes(ui_host.url)
    results = search_results(ui, "Hunyuan")
    ui.screenshot("node_search_hunyuan")
    missing = []
    for node_id, spec in sorted(nodes.items()):
        category = " > ".join(spec["category"].split("/"))
        if not any(r.startswith(spec["display_name"]) and category in r for r in results):
            missing.append(f"{node_id} ({spec['display_name']}, {category})")
    assert not missing, (
        "not found by 'Hunyuan' with display name and category: "
        + ", ".join(missing)
        + ("\nresults: " + " | ".join(results))
    )


def open_help(ui: UiPage, display_name: str) -> list[str]:
    """Find a node in the node library by its display name and click its help button, as a user does; the headings
    of the page the info panel then shows."""
    search = ui.page.locator(".node-lib-search-box input").first
    if not search.is_visible():
        ui.page.get_by_text("Nodes", exact=True).first.click()
    search.fill(display_name)
    leaf = ui.page.locator(".node-lib-node-container").filter(has_text=display_name)
    leaf = leaf.filter(has=ui.page.get_by_text(display_name, exact=True)).first
    leaf.hover()
    leaf.locator("button.help-button").click()
    ui.page.locator("h1", has_text=display_name).first.wait_for(timeout=10_000)
    headings = ui.page.evaluate("() => [...document.querySelectorAll('h1, h2')].map((h) => h.innerText.trim())")
    ui.page.keyboard.press("Escape")
    back = ui.page.locator("button:has(.pi-arrow-left)").first  # the info panel's way back to the library
    if back.is_visible():
        back.click()
    return headings


def test_node_library_shows_each_pack_node_help_page(ui, ui_host):
    nodes = pack_nodes(ui_host.url)
    missing = {}
    for node_id, spec in sorted(nodes.items()):
        headings = open_help(ui, spec["display_name"])
        if headings[:1] != [spec["display_name"]] or not {"Inputs", "Outputs", "Notes"} <= set(headings):
            missing[node_id] = headings
        if node_id == "HunyuanImage21Sampler":
            ui.screenshot("node_help_sampler")
    assert not missing, f"the pack's help pages (title, Inputs, Outputs, Notes) not shown; headings seen: {missing}"
