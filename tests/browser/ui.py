"""One page of ComfyUI's web UI, as the browser tests drive it: what a user does (drop a file, click Run, Cancel) done
through the page's real DOM events, and what the page shows read back from the app the frontend runs.

Everything the page logs is kept: console errors, uncaught exceptions, failed requests, and the server events the
frontend's own API client dispatched (progress, previews, errors), so a test can assert on what a user would see.
"""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hy21_host import ComfyHost
from hy21_host.browser import seed_ui_settings
from hy21_host.client import TERMINAL_EVENTS
from hy21_host.tiny_models import write_tiny_models

# Server events the frontend's API client dispatches; the page records each with its data (previews as their size).
EVENTS = (
    "status", "progress", "executing", "executed", "execution_start", "execution_success", "execution_error",
    "execution_interrupted", "execution_cached", "b_preview", "b_preview_with_metadata",
)  # fmt: skip

RECORD_EVENTS = """(names) => {
  window.__hy21Events = [];
  const api = window.app.api;
  for (const name of names) {
    api.addEventListener(name, (event) => {
      const detail = event.detail;
      const data = detail instanceof Blob ? { blob: detail.size }
        : detail && detail.blob instanceof Blob ? { blob: detail.blob.size, nodeId: detail.nodeId }
        : detail;
      window.__hy21Events.push({ type: name, data: JSON.parse(JSON.stringify(data ?? null)), at: performance.now() });
    });
  }
}"""

# A file dropped on the canvas, as the operating system hands it to the page: a File in a DataTransfer, carried by
# dragenter, dragover and drop events on the canvas element (the frontend's own drop handler reads it).
DROP_FILE = """async ([name, type, payload]) => {
  const bytes = Uint8Array.from(atob(payload), (c) => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], name, { type }));
  const target = document.querySelector('#graph-canvas') || document.querySelector('canvas');
  const rect = target.getBoundingClientRect();
  const at = { clientX: rect.left + rect.width / 2, clientY: rect.top + rect.height / 2 };
  for (const kind of ['dragenter', 'dragover', 'drop']) {
    target.dispatchEvent(new DragEvent(kind, { bubbles: true, cancelable: true, dataTransfer: transfer, ...at }));
  }
}"""

# The graph as the canvas holds it: each node's type, position, size, bounding box (title bar included), error flag,
# serialised widget values and input links; and every link.
READ_GRAPH = """() => {
  const graph = window.app.graph;
  const nodes = graph.nodes.map((node) => {
    const saved = node.serialize();
    return {
      id: node.id, type: node.type, title: node.title, mode: node.mode,
      pos: [...node.pos], size: [...node.size], bounding: [...node.getBounding()],
      has_errors: Boolean(node.has_errors), widgets_values: saved.widgets_values ?? [],
      inputs: (node.inputs ?? []).map((slot) => ({ name: slot.name, type: slot.type, link: slot.link })),
      images: (node.imgs ?? []).map((img) => ({ complete: img.complete, width: img.naturalWidth })),
    };
  });
  const links = [];
  for (const link of graph.links instanceof Map ? graph.links.values() : Object.values(graph.links)) {
    if (link) links.push([link.id, link.origin_id, link.origin_slot, link.target_id, link.target_slot, link.type]);
  }
  return { nodes, links };
}"""


# Screenshots keep node text at any zoom (the canvas otherwise draws plain boxes below a font size of 8 px).
TEST_SETTINGS = {"LiteGraph.Canvas.MinFontSizeForLOD": 1}


def start_ui_host(pack: bool = True) -> ComfyHost:
    """A started server with the web UI, live previews and a user past the first-run tour; with the pack and the
    tiny model set, or (``pack=False``) a bare ComfyUI as the control."""
    host = ComfyHost(previews=True, pack=pack)
    if host.frontend is None:
        host.cleanup()
        pytest.fail("this Python has no comfyui-frontend-package: run scripts/setup.sh (it installs the web UI)")
    seed_ui_settings(host.base_dir, TEST_SETTINGS)
    if pack:
        write_tiny_models(host.models_dir)
    return host.start()


@dataclass
class PageLog:
    """What the page reported while a test ran."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)

    def normalised(self, server_url: str) -> set[str]:
        """Every error as a line with the server's address taken out, so two servers' logs can be compared."""
        origin = server_url.rstrip("/")
        lines = {f"console: {text}" for text in self.console_errors}
        lines |= {f"exception: {text}" for text in self.page_errors}
        lines |= {f"request: {text}" for text in self.failed_requests}
        return {line.replace(origin, "<server>") for line in lines}


def is_offline_noise(line: str) -> bool:
    """An error that is the frontend reaching for the internet (ComfyUI's registry, update checks), which a machine
    without network refuses whatever nodes are installed: a blocked or failed request to a host that is not the
    server."""
    found = re.search(r"https?://([^/'\" ]+)", line)
    return bool(found) and found.group(1) != "<server>" and not found.group(1).startswith("127.0.0.1")


class UiPage:
    """A Playwright page on ComfyUI's web UI, with the pack's tests' vocabulary."""

    def __init__(self, page: Any, artifacts: Path) -> None:
        self.page = page
        self.artifacts = artifacts
        self.log = PageLog()
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.log.page_errors.append(f"{error.name}: {error.message}"))
        page.on("response", self._on_response)
        page.on("requestfailed", self._on_request_failed)

    @classmethod
    def open(cls, page: Any, url: str, artifacts: Path, timeout_s: float = 90.0) -> UiPage:
        ui = cls(page, artifacts)
        page.goto(url)
        ui.wait_until_ready(timeout_s)
        return ui

    def _on_console(self, message: Any) -> None:
        if message.type == "error":
            where = message.location.get("url", "") if message.location else ""
            self.log.console_errors.append(f"{message.text} (at {where})" if where else message.text)

    def _on_response(self, response: Any) -> None:
        if response.status >= 400:
            self.log.failed_requests.append(f"{response.status} {response.request.method} {response.url}")

    def _on_request_failed(self, request: Any) -> None:
        self.log.failed_requests.append(f"failed {request.method} {request.url}: {request.failure}")

    # --- state -------------------------------------------------------------------------------------------------

    def wait_until_ready(self, timeout_s: float = 90.0) -> None:
        """Until the app, its canvas and the Run button are up, then start recording server events."""
        self.page.wait_for_function(
            "() => window.app && window.app.graph && window.app.canvas && window.app.api"
            " && document.querySelector('[data-testid=\"queue-button\"]')",
            timeout=timeout_s * 1000,
        )
        self.page.evaluate(RECORD_EVENTS, list(EVENTS))

    def graph(self) -> dict[str, Any]:
        return self.page.evaluate(READ_GRAPH)

    def prompt(self) -> dict[str, Any]:
        """What the frontend would queue for the graph on the canvas (``app.graphToPrompt().output``)."""
        return self.page.evaluate("async () => (await window.app.graphToPrompt()).output")

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        found = self.page.evaluate("() => window.__hy21Events")
        return [event for event in found if kind is None or event["type"] == kind]

    def visible_dialogs(self) -> list[str]:
        """The text of every open dialog."""
        return self.page.evaluate(
            "() => [...document.querySelectorAll('.p-dialog')].filter((d) => d.offsetParent !== null"
            " || d.getClientRects().length).map((d) => d.innerText)"
        )

    # --- actions -----------------------------------------------------------------------------------------------

    def drop_file(self, name: str, data: bytes, mime: str = "application/json") -> None:
        self.page.evaluate(DROP_FILE, [name, mime, base64.b64encode(data).decode("ascii")])

    def drop_workflow(self, path: Path, workflow: dict | None = None, timeout_s: float = 30.0) -> dict[str, Any]:
        """Drop a UI workflow file (``workflow`` instead of the file's text when given) and wait until the canvas
        holds its nodes; the graph as read back."""
        data = json.dumps(workflow).encode() if workflow is not None else Path(path).read_bytes()
        wanted = json.loads(data)
        self.drop_file(Path(path).name, data)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            graph = self.graph()
            if sorted(n["id"] for n in graph["nodes"]) == sorted(n["id"] for n in wanted["nodes"]) and all(
                found["type"] == next(n["type"] for n in wanted["nodes"] if n["id"] == found["id"])
                for found in graph["nodes"]
            ):
                time.sleep(0.3)  # the frontend finishes its load (missing-model checks, resizes) asynchronously
                return self.graph()
            time.sleep(0.1)
        raise TimeoutError(f"the canvas never held the nodes of {Path(path).name}")

    def set_widget(self, node_id: int, name: str, value: Any) -> None:
        """Set a widget's value as a user's edit does (value, then the widget's callback)."""
        self.page.evaluate(
            """([id, name, value]) => {
              const node = window.app.graph.getNodeById(id);
              const widget = node.widgets.find((w) => w.name === name);
              widget.value = value;
              widget.callback?.(value, window.app.canvas, node);
              window.app.graph.setDirtyCanvas(true, true);
            }""",
            [node_id, name, value],
        )

    def click_run(self) -> None:
        self.page.get_by_test_id("queue-button").click()

    def wait_for_event(self, kind: str, timeout_s: float = 120.0, after: int = 0) -> dict[str, Any]:
        """The first ``kind`` event past the first ``after`` recorded events."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = [e for e in self.events()[after:] if e["type"] == kind]
            if found:
                return found[0]
            time.sleep(0.05)
        raise TimeoutError(f"no {kind} event in {timeout_s:.0f} s; events: {[e['type'] for e in self.events()]}")

    def end(self, after: int = 0) -> dict[str, Any] | None:
        """The prompt's terminal event (success, error or interrupted) past the first ``after`` events, if any yet."""
        return next((e for e in self.events()[after:] if e["type"] in TERMINAL_EVENTS), None)

    def wait_for_end(self, timeout_s: float = 180.0, after: int = 0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.end(after)
            if found:
                return found
            time.sleep(0.1)
        raise TimeoutError(f"the prompt did not end in {timeout_s:.0f} s")

    def screenshot(self, name: str) -> Path:
        path = self.artifacts / f"{name}.png"
        self.page.screenshot(path=str(path))
        return path
