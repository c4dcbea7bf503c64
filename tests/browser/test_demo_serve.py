"""The README's first command with ``--serve``, as a newcomer runs it: ``bash scripts/demo.sh --serve`` sets up, runs
the distilled workflow once through the API, keeps ComfyUI serving, and prints an address; that address opens
ComfyUI in a real browser with the distilled workflow on the canvas, every node and widget value as shipped, ready
to Run (a Run from there succeeds). Ctrl-C stops the demo and its server.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest
from ui import UiPage

from hy21_host import repo_root

pytestmark = pytest.mark.browser

WORKFLOW = repo_root() / "workflows" / "hunyuanimage21_distilled.json"
OPEN_LINE = re.compile(r"^open (http://127\.0\.0\.1:\d+/\S+) for the distilled workflow, ready to Run$")
START_TIMEOUT_S = 600.0  # set-up (seconds when done before) and the first run on the tiny model set


@pytest.fixture
def demo(tmp_path):
    """``bash scripts/demo.sh --serve`` in its own process group with a fresh base directory; its output lines and
    the address it printed. Stopped with Ctrl-C's signal afterwards."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        ["bash", "scripts/demo.sh", "--serve", "--base-dir", str(tmp_path / "demo")], cwd=repo_root(), env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []
    url = None
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
            found = OPEN_LINE.match(lines[-1])
            url = found.group(1) if found else None
        assert url, "the demo printed no address to open:\n" + "\n".join(lines[-40:])
        yield url, lines
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(30)


def test_demo_serve_opens_the_distilled_workflow_ready_to_run(demo, new_page):
    url, lines = demo
    assert any(line.startswith("prompt ") and "finished with 'success'" in line for line in lines), lines
    ui: UiPage = new_page(url)
    shipped = {node["id"]: node for node in json.loads(WORKFLOW.read_text())["nodes"]}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and sorted(n["id"] for n in ui.graph()["nodes"]) != sorted(shipped):
        time.sleep(0.2)
    time.sleep(0.5)
    graph = ui.graph()
    ui.screenshot("demo_serve_opened")
    assert sorted(n["id"] for n in graph["nodes"]) == sorted(shipped), [n["type"] for n in graph["nodes"]]
    for node in graph["nodes"]:
        assert node["type"] == shipped[node["id"]]["type"], node
        assert node["widgets_values"] == shipped[node["id"]]["widgets_values"], f"node {node['id']} ({node['type']})"
    assert ui.visible_dialogs() == [], "a dialog covers the canvas"
    before = len(ui.events())
    ui.click_run()
    end = ui.wait_for_end(after=before)
    assert end["type"] == "execution_success", end
