"""What a real browser needs to open ComfyUI's web UI on a hosted server: a Chromium to drive, the flags that keep it
off the network, the user settings of someone who has seen the first-run tour, and the URL that opens a workflow.

Used by the demo (``--serve``) and the browser tests; nothing here is shipped to ComfyUI users.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from .host import PACK_NAME

# The distribution's Chromium (Debian: /usr/bin/chromium); Playwright drives it through ``executable_path``, so no
# browser is ever downloaded. HY21_CHROMIUM names another binary.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# Headless, as root, with no sandbox and none of the background traffic (updates, sync, metrics) that a closed
# network refuses: only the page's own requests to the loopback server go out.
CHROMIUM_ARGS = (
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
)  # fmt: skip

# A user past the first-run tour: the frontend then opens on the canvas, not on its template browser.
UI_SETTINGS = {"Comfy.TutorialCompleted": True}


def find_chromium() -> Path | None:
    """The Chromium binary to drive: ``$HY21_CHROMIUM`` when set (and executable), else the first on ``PATH``."""
    given = os.environ.get("HY21_CHROMIUM")
    if given:
        path = Path(given)
        return path if path.is_file() and os.access(path, os.X_OK) else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def seed_ui_settings(base_dir: Path, extra: dict | None = None) -> None:
    """Write the default user's frontend settings (``UI_SETTINGS`` and ``extra``) under a server's base directory,
    unless the user has some."""
    settings = Path(base_dir) / "user" / "default" / "comfy.settings.json"
    if not settings.exists():
        settings.parent.mkdir(parents=True, exist_ok=True)
        settings.write_text(json.dumps({**UI_SETTINGS, **(extra or {})}, indent=1) + "\n")


def template_url(server_url: str, workflow: str) -> str:
    """The address that opens one of the pack's shipped UI workflows (``workflows/<workflow>.json``, served as a
    template of the custom-node folder) on the canvas."""
    return f"{server_url}/?template={workflow}&source={PACK_NAME}"


if __name__ == "__main__":  # `python -m hy21_host.browser` in scripts/: the Chromium found, or exit 1 (.ci/run)
    chromium = find_chromium()
    sys.stdout.write(f"{chromium or ''}\n")
    sys.exit(0 if chromium else 1)
