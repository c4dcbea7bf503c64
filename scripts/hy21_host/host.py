"""Start and stop a real ComfyUI server on a free loopback port, with this repository as a custom node pack."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PACK_NAME = "ComfyUI-HunyuanImage21"
MODEL_FOLDERS = ("diffusion_models", "text_encoders", "vae", "checkpoints")


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def find_comfyui() -> Path:
    """The ComfyUI to host: ``$COMFYUI_PATH`` when set, else the tree scripts/setup.sh unpacked.

    Made absolute, since servers and probes run with the tree itself as their working directory.
    """
    env = os.environ.get("COMFYUI_PATH")
    path = Path(env).expanduser().absolute() if env else repo_root() / ".host" / "ComfyUI"
    if not (path / "main.py").is_file():
        hint = "fix COMFYUI_PATH" if env else "run scripts/setup.sh first"
        raise FileNotFoundError(f"no ComfyUI at {path} (main.py missing); {hint}")
    return path


def comfyui_version(comfyui: Path) -> str:
    """The tree's version as its ``comfyui_version.py`` states it (read as text, nothing imported); ``unknown``
    for a tree without one, so reports can say which host ran without depending on its layout."""
    try:
        text = (comfyui / "comfyui_version.py").read_text()
    except OSError:
        return "unknown"
    found = re.search(r"""__version__\s*=\s*["']([^"']+)["']""", text)
    return found.group(1) if found else "unknown"


# What this process ran in which tree ({(tree, "server" | "probe"): count}), so a test session can report which
# ComfyUI it really used (tests/conftest.py prints it at the end).
USES: Counter[tuple[str, str]] = Counter()

PROBE_PRELUDE = """
import json, sys
sys.path.insert(0, sys.argv[1])
from comfy.cli_args import args
args.cpu = True
"""

# Hands the result back with the file ``comfy`` was really imported from, which run_in_comfyui checks.
PROBE_EPILOGUE = """
import comfy.cli_args as _hy21_cli
print(json.dumps({"result": result, "comfy_file": _hy21_cli.__file__}))
"""


# A probe that starts with this has the pack imported as ComfyUI imports a custom node: the package ``hy21_pack``
# from the repository (``root``), its nodes under ``hy21_pack.nodes``.
IMPORT_PACK = """
import importlib.util
root = sys.argv[2]
_spec = importlib.util.spec_from_file_location("hy21_pack", root + "/__init__.py", submodule_search_locations=[root])
pack = importlib.util.module_from_spec(_spec)
sys.modules["hy21_pack"] = pack
_spec.loader.exec_module(pack)
"""


def run_in_comfyui(script: str, *args: object, timeout: float = 300.0) -> Any:
    """Run ``script`` in a fresh interpreter inside the hosted ComfyUI (its working directory, on the CPU) and
    return the value it leaves in ``result``, passed back as JSON.

    The script sees ``sys.argv[1]``, the ComfyUI tree (already first on ``sys.path``), ``sys.argv[2]``, this
    repository (not on ``sys.path``: a script that imports ``hunyuan_core`` inserts it), then ``args`` as strings;
    ``json`` and ``sys`` are imported and ``comfy.cli_args.args`` is set up for the CPU before it runs. Raises if
    ``comfy`` came from anywhere but that tree (an installed copy shadowing it would make the run meaningless).
    """
    comfyui = find_comfyui()
    program = f"{PROBE_PRELUDE}\n{script}\n{PROBE_EPILOGUE}"
    out = subprocess.run(
        [sys.executable, "-c", program, str(comfyui), str(repo_root()), *map(str, args)],
        cwd=comfyui, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    if out.returncode:
        raise RuntimeError(f"the script exited with {out.returncode} in ComfyUI:\n{out.stderr[-4000:]}")
    report = json.loads(out.stdout.strip().splitlines()[-1])
    imported = Path(report["comfy_file"]).resolve()
    if not imported.is_relative_to(comfyui.resolve()):
        raise RuntimeError(f"the script imported ComfyUI from {imported}, not from the tree {comfyui}")
    USES[str(comfyui), "probe"] += 1
    return report["result"]


def installed_frontend(python: str = sys.executable) -> Path | None:
    """The web UI (``comfyui-frontend-package``'s static folder) that ``python`` would serve, or None when that
    interpreter does not have the package: a server is then started on an empty ``--front-end-root`` and serves the
    HTTP API only (ComfyUI exits at start-up without a frontend). Asked of ``python`` itself, which may be another
    interpreter than this one."""
    probe = "import importlib.resources as r, comfyui_frontend_package as p; print(r.files(p) / 'static')"
    out = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=60)
    static = Path(out.stdout.strip()) if out.returncode == 0 else None
    return static if static is not None and (static / "index.html").is_file() else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ComfyHost:
    """One ComfyUI server process with its own base directory (models, output, custom_nodes).

    The base directory is temporary unless given; model files for tests go under ``models_dir / <folder>``.
    The web UI is served when the interpreter has ComfyUI's frontend package (scripts/setup.sh installs the
    version the host pins); ``previews`` turns on live sampling previews (``--preview-method auto``); ``pack=False``
    starts ComfyUI without this pack.
    """

    def __init__(
        self,
        comfyui: Path | None = None,
        base_dir: Path | None = None,
        python: str = sys.executable,
        extra_args: tuple[str, ...] = (),
        cpu: bool = True,
        previews: bool = False,
        pack: bool = True,
    ) -> None:
        self.comfyui = Path(comfyui).absolute() if comfyui else find_comfyui()
        self._own_base = base_dir is None
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="hy21-comfy-"))
        self.python = python
        self.extra_args = extra_args
        self.cpu = cpu  # False lets ComfyUI pick the GPU (benchmarks on a lent GPU machine)
        self.previews = previews
        self.pack = pack  # False: a bare ComfyUI, the control that tells the pack's effects from the host's own
        self.frontend = installed_frontend(python)
        self.port = 0
        self.process: subprocess.Popen | None = None
        self.log_path = self.base_dir / "comfyui.log"
        self._prepare_base()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def models_dir(self) -> Path:
        return self.base_dir / "models"

    @property
    def output_dir(self) -> Path:
        return self.base_dir / "output"

    def _prepare_base(self) -> None:
        custom_nodes = self.base_dir / "custom_nodes"
        custom_nodes.mkdir(parents=True, exist_ok=True)
        link = custom_nodes / PACK_NAME
        if self.pack and not link.exists():
            link.symlink_to(repo_root(), target_is_directory=True)
        for folder in MODEL_FOLDERS:
            (self.models_dir / folder).mkdir(parents=True, exist_ok=True)
        (self.base_dir / "frontend").mkdir(exist_ok=True)

    def command(self) -> list[str]:
        return [
            self.python, "main.py", *(["--cpu"] if self.cpu else []),
            "--listen", "127.0.0.1", "--port", str(self.port),
            "--disable-auto-launch", "--disable-api-nodes",
            "--base-directory", str(self.base_dir),
            *([] if self.frontend else ["--front-end-root", str(self.base_dir / "frontend")]),
            *(["--preview-method", "auto"] if self.previews else []),
            "--database-url", "sqlite:///:memory:",
            *self.extra_args,
        ]  # fmt: skip

    def start(self, timeout: float = 120.0) -> ComfyHost:
        """Launch the server and wait until ``/object_info`` answers; raise with the log tail if it dies."""
        self.port = free_port()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                self.command(), cwd=self.comfyui, stdout=log_file, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=env, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.process.returncode} during start-up:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/object_info", timeout=5) as resp:
                    if resp.status == 200:
                        log.info(
                            "ComfyUI %s from %s ready at %s (pid %d)",
                            comfyui_version(self.comfyui), self.comfyui, self.url, self.process.pid,
                        )  # fmt: skip
                        USES[str(self.comfyui), "server"] += 1
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"ComfyUI did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server by its PID: SIGTERM, then SIGKILL if it lingers."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout)
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        if self._own_base:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def __enter__(self) -> ComfyHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
