"""Run from ComfyUI's web UI, as a user does: the distilled workflow dropped on the canvas, the Run button clicked.
Progress advances, a live preview of the sampler's latent appears on the sampler node while it samples, and the final
image shows in the Save Image node; Cancel during sampling stops the run and the next Run succeeds; a broken model
file shows the pack's message (problem and fix, once) in the frontend's error dialog, and the next Run succeeds.

Everything is read from the page: the events the frontend's own API client dispatched, the preview and output images
it holds for each node, the dialogs it opened. Screenshots of the finished run go to the artifacts folder.
"""

from __future__ import annotations

import json
import time

import pytest
from ui import UiPage

from hy21_host import repo_root

pytestmark = pytest.mark.browser

WORKFLOW = repo_root() / "workflows" / "hunyuanimage21_distilled.json"
DIT_LOADER, SAMPLER, SAVE = 1, 6, 8
OFFICIAL_STEPS = 8  # the distilled model's, which the sampler's -1 stands for
MANY_STEPS = 1000  # the widget's maximum: a run long enough on the tiny model to be cancelled mid-way
TRUNCATED_DIT = "hy21_ui_truncated_dit.safetensors"

READ_PREVIEW = """(id) => {
  const previews = window.app.nodePreviewImages ?? {};
  return (previews[String(id)] ?? previews[id] ?? []).length;
}"""


def images_shown(ui: UiPage, node_id: int) -> list[dict]:
    """The images the output node displays, each loaded (complete, natural width)."""
    (node,) = [n for n in ui.graph()["nodes"] if n["id"] == node_id]
    return node["images"]


def wait_for_images(ui: UiPage, node_id: int, timeout_s: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        shown = images_shown(ui, node_id)
        if shown and all(image["complete"] and image["width"] > 0 for image in shown):
            return shown
        time.sleep(0.1)
    raise TimeoutError(f"node {node_id} shows no loaded image after {timeout_s:.0f} s")


def run_and_check_image(ui: UiPage) -> list[dict]:
    """Click Run, wait for success, and return the events of that run (the image shown is checked)."""
    before = len(ui.events())
    ui.click_run()
    end = ui.wait_for_end(after=before)
    assert end["type"] == "execution_success", f"the run ended with {end}"
    shown = wait_for_images(ui, SAVE)
    assert [image["width"] for image in shown] == [2048], shown  # the workflow's 2048x2048
    return ui.events()[before:]


def test_run_shows_progress_a_live_preview_and_the_image(ui: UiPage, artifacts):
    ui.drop_workflow(WORKFLOW)
    before = len(ui.events())
    ui.click_run()
    ui.wait_for_event("b_preview", after=before)
    preview_on_sampler = 0
    while not preview_on_sampler and not ui.end(before):  # the frontend files the preview as it arrives
        preview_on_sampler = ui.page.evaluate(READ_PREVIEW, SAMPLER)
        time.sleep(0.02)
    end = ui.wait_for_end(after=before)
    assert end["type"] == "execution_success", f"the run ended with {end}"
    events = ui.events()[before:]
    shown = wait_for_images(ui, SAVE)
    ui.screenshot("run_distilled_finished")
    progress = [(e["data"]["value"], e["data"]["max"]) for e in events if e["type"] == "progress"]
    sampler = [value for value, most in progress if most == OFFICIAL_STEPS]
    assert sampler == list(range(1, OFFICIAL_STEPS + 1)), f"the sampler's progress: {progress}"
    previews = [i for i, e in enumerate(events) if e["type"] == "b_preview"]
    steps = [i for i, e in enumerate(events) if e["type"] == "progress" and e["data"]["max"] == OFFICIAL_STEPS]
    assert len(previews) >= OFFICIAL_STEPS - 1 and previews[0] < steps[-1], "no preview while the sampler ran"
    assert all(e["data"]["blob"] > 0 for e in events if e["type"] == "b_preview"), "an empty preview"
    assert preview_on_sampler >= 1, "the frontend showed no preview on the sampler node while it sampled"
    assert [image["width"] for image in shown] == [2048], shown
    executed = [e["data"] for e in events if e["type"] == "executed"]
    assert any(str(e["node"]) == str(SAVE) and e["output"]["images"] for e in executed), executed


def test_cancel_during_sampling_stops_it_and_the_next_run_succeeds(ui: UiPage):
    ui.drop_workflow(WORKFLOW)
    ui.set_widget(SAMPLER, "steps", MANY_STEPS)
    before = len(ui.events())
    ui.click_run()
    first = ui.wait_for_event("progress", after=before)
    assert first["data"]["max"] == MANY_STEPS and str(first["data"]["node"]) == str(SAMPLER), first
    ui.page.get_by_role("button", name="Cancel current run").click()
    end = ui.wait_for_end(after=before, timeout_s=60)
    assert end["type"] == "execution_interrupted", f"Cancel did not stop the run: {end}"
    reached = max(e["data"]["value"] for e in ui.events()[before:] if e["type"] == "progress")
    assert reached < MANY_STEPS, "the sampler ran to the end"
    ui.set_widget(SAMPLER, "steps", -1)
    events = run_and_check_image(ui)
    ran = {str(e["data"]) for e in events if e["type"] == "executing"}  # the frontend hands on the node's id
    assert str(SAMPLER) in ran, "the next run reused a cancelled sampler's result"


@pytest.fixture
def truncated_dit(ui_host):
    """A zero-byte DiT file in the server's models folder (an interrupted download), removed afterwards."""
    path = ui_host.models_dir / "diffusion_models" / TRUNCATED_DIT
    path.write_bytes(b"")
    yield path
    path.unlink(missing_ok=True)


def test_broken_model_file_shows_the_pack_message_once(truncated_dit, new_page, ui_host):
    ui = new_page(ui_host.url)  # opened after the file exists, so the loader's list offers it
    workflow = json.loads(WORKFLOW.read_text())
    loader = next(n for n in workflow["nodes"] if n["id"] == DIT_LOADER)
    loader["widgets_values"][0] = TRUNCATED_DIT
    ui.drop_workflow(WORKFLOW, workflow)
    before = len(ui.events())
    ui.click_run()
    end = ui.wait_for_end(after=before)
    assert end["type"] == "execution_error" and str(end["data"]["node_id"]) == str(DIT_LOADER), end
    message = end["data"]["exception_message"].strip()
    assert message.startswith(f"dit_name: cannot read {TRUNCATED_DIT} as a HunyuanImage-2.1 DiT"), message
    assert message.endswith("download it again"), message
    ui.page.locator(".comfy-error-report").first.wait_for(timeout=10_000)
    ui.screenshot("error_dialog_truncated_dit")
    (dialog,) = ui.visible_dialogs()
    assert dialog.count(message) == 1, f"the message is not shown exactly once:\n{dialog}"
    assert "HunyuanImage21DiTLoader" in dialog, dialog
    assert "Traceback" not in dialog and 'File "' not in dialog, "the dialog leads with a traceback"
    ui.page.keyboard.press("Escape")
    ui.set_widget(DIT_LOADER, "dit_name", json.loads(WORKFLOW.read_text())["nodes"][0]["widgets_values"][0])
    run_and_check_image(ui)
