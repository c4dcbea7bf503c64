"""Shared fixtures: a real headless ComfyUI server with this pack installed, a client for its API, one torch thread;
the rule that every test carries exactly one kind mark (``kinds.py``); and a report of which ComfyUI tree the
session really ran (``$COMFYUI_PATH`` or the bundled host), so a run against another ComfyUI can be told apart."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from kinds import pytest_collection_modifyitems  # noqa: F401  (a hook: pytest finds it by name here)

from hy21_host import ComfyClient, ComfyHost, comfyui_version, find_comfyui
from hy21_host.host import USES
from hy21_host.tiny_models import write_tiny_models

pytest_plugins = ("pytester",)  # tests/test_architecture.py runs pytest on throw-away test modules

_hosts: list[ComfyHost] = []


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors run fastest on one thread, and stay fast when other processes keep the CPUs busy.

    Use it for a whole module: ``pytestmark = [pytest.mark.<kind>, pytest.mark.usefixtures("one_thread")]``.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def comfy_host():
    """One ComfyUI server for the session (start-up takes seconds), with the tiny model set in its models folder."""
    host = ComfyHost()
    _hosts.append(host)
    try:
        write_tiny_models(host.models_dir)
        host.start()
        yield host
    finally:
        host.cleanup()
        _hosts.remove(host)


@pytest.fixture
def comfy(comfy_host: ComfyHost) -> ComfyClient:
    if not comfy_host.alive():
        pytest.fail(f"the ComfyUI server died:\n{comfy_host.log_tail()}")
    return ComfyClient(comfy_host.url)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the server's log to every failing test that used the server."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and "comfy_host" in item.fixturenames:
        for host in _hosts:
            report.sections.append((f"ComfyUI server log ({host.log_path})", host.log_tail(150)))


def pytest_configure(config):
    logging.getLogger("hy21_host").setLevel(logging.INFO)


def pytest_report_header(config: pytest.Config) -> str:
    """Which ComfyUI the server and in-process tests will run in (shown unless ``-q``)."""
    try:
        comfyui = find_comfyui()
    except FileNotFoundError as exc:
        return f"ComfyUI host: none ({exc})"
    return f"ComfyUI host: {comfyui} (version {comfyui_version(comfyui)})"


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """Which ComfyUI trees the session really used, and how often (printed even with ``-q``)."""
    trees = sorted({tree for tree, _ in USES})
    for tree in trees:
        terminalreporter.write_line(
            f"ComfyUI used: {tree} (version {comfyui_version(Path(tree))}): {USES[tree, 'server']} server start(s), "
            f"{USES[tree, 'probe']} in-process probe(s) with comfy imported from that tree"
        )
