"""A real ComfyUI server with ComfyUI's web UI and a real Chromium, for the browser tests.

One server for the session (the tiny model set, live previews on, a user past the first-run tour), one Chromium
driven by Playwright through ``executable_path`` (the distribution's binary, never a download) per module, and a
fresh page per test. Without Chromium or Playwright every browser test is skipped with the reason; without the web
UI (the frontend package scripts/setup.sh installs) they fail, since that is the set-up's job. Screenshots go to the
artifacts folder (``$HY21_ARTIFACTS``, default ``.artifacts/browser`` in the repository).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ui import UiPage, start_ui_host

from hy21_host import repo_root
from hy21_host.browser import CHROMIUM_ARGS, find_chromium

VIEWPORT = {"width": 1920, "height": 1080}  # a common desktop: the shipped workflows fit at a readable zoom


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the browser tests last (their server lives only while they run), and skip them, with one reason, where
    there is nothing to drive."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)  # stable: the rest keep their order
    reason = None
    if find_chromium() is None:
        reason = "no Chromium (scripts/setup.sh installs Debian's chromium where apt-get runs as root; HY21_CHROMIUM)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "no Playwright (scripts/setup.sh installs it from scripts/requirements-test.txt)"
    if reason:
        for item in items:
            if item.get_closest_marker("browser"):
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def artifacts() -> Path:
    folder = Path(os.environ.get("HY21_ARTIFACTS", repo_root() / ".artifacts" / "browser"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def ui_host():
    """The server the browser tests use: the pack, the tiny model set, the web UI, live previews."""
    host = start_ui_host()
    try:
        yield host
    finally:
        host.cleanup()


@pytest.fixture(scope="module")
def chromium():
    """One Chromium per test module. Not per session: Playwright's sync API keeps its asyncio loop running while it
    is open, and a later test of another kind that calls ``asyncio.run`` would find it."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(find_chromium()), args=list(CHROMIUM_ARGS))
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def new_page(chromium, artifacts):
    """Open a page on a server's web UI, waiting until the app is up: ``new_page(url)``; closed after the test."""
    contexts = []

    def open_page(url: str) -> UiPage:
        context = chromium.new_context(viewport=VIEWPORT)
        contexts.append(context)
        return UiPage.open(context.new_page(), url, artifacts)

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def ui(new_page, ui_host) -> UiPage:
    """A fresh page on the session's server."""
    if not ui_host.alive():
        pytest.fail(f"the ComfyUI server died:\n{ui_host.log_tail()}")
    return new_page(ui_host.url)
