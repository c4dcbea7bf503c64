"""Soak: many prompts from two concurrent clients, good and bad mixed, on one ComfyUI server of its own.

The issue's acceptance: "300 prompts from two concurrent clients, good and bad mixed: every good prompt's image
equals its single-client result; RSS growth <= 5 %; open file descriptors flat." The module starts its own server
(not the session's shared one), so the RSS and descriptor readings are this server's alone.

Good prompts are the shipped distilled API workflow made cheap (64x64, one or two steps, a few fixed seeds); each is
first run once from one client for its reference image, then re-run many times from both clients, each time to the
same bits. Every good prompt of a client differs from its previous one and the two clients use different seeds, so
two good prompts executed back to back never share a seed and ComfyUI's cache cannot answer a good prompt whole.
Bad prompts of several kinds sit between them, each refused with its message: a number beyond its widget's range and
an unknown file at ``POST /prompt``; 0 steps, glyph text beyond the glyph encoder's limit and a LoRA of another
model as their node runs. The server's RSS and open descriptors are read after a warm-up and at the end.
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from helpers import refusal
from PIL import Image
from safetensors.torch import save_file
from test_lora_api import BLOCK_LINEARS, kohya, kohya_lora

from hy21_host import ComfyClient, ComfyHost, repo_root
from hy21_host.tiny_models import write_tiny_models

pytestmark = pytest.mark.server

TOTAL = 300  # prompts, both clients together
WARMUP = 50  # prompts before the first reading
SIZE = 64  # pixels: a 2x2 latent
RSS_GROWTH = 0.05  # at most, from the warm-up reading to the end
FD_GROWTH = 5  # open descriptors, at most
TIMEOUT = 120.0  # seconds for one prompt

LOADER, ENCODE, LATENT, SAMPLER, SAVE, LORA = "1", "4", "5", "6", "8", "20"
# (seed, steps) of each good prompt; a client alternates between its two, and the two clients share none
GOOD = {"a1": (11, 1), "a2": (12, 2), "b1": (13, 1), "b2": (14, 2)}
CLIENT_GOOD = (("a1", "a2"), ("b1", "b2"))
BAD_LORA = "hy21_soak_lora_96_wide.safetensors"
GLYPH = "HUNYUAN " * 20  # 160 characters, 159 once stripped: beyond ByT5's 128 tokens


# --- graphs -------------------------------------------------------------------------------------------------------


def base_graph(seed: int, steps: int, prefix: str) -> dict:
    """The shipped distilled API workflow at 64x64 with ``steps`` steps, saving under ``prefix``."""
    graph = json.loads((repo_root() / "workflows/api/hunyuanimage21_distilled_api.json").read_text())
    graph[LATENT]["inputs"].update(size="custom", width=SIZE, height=SIZE)
    graph[SAMPLER]["inputs"].update(seed=seed, steps=steps)
    graph[SAVE]["inputs"]["filename_prefix"] = f"hy21_soak/{prefix}"
    return graph


def good_graph(name: str) -> dict:
    seed, steps = GOOD[name]
    return base_graph(seed, steps, name)


def with_lora(graph: dict) -> dict:
    graph[LORA] = {
        "class_type": "HunyuanImage21LoraLoader",
        "inputs": {"model": [LOADER, 0], "lora_name": BAD_LORA, "strength_model": 1.0},
    }
    graph[SAMPLER]["inputs"]["model"] = [LORA, 0]
    return graph


def changed(node: str, **inputs) -> Callable[[dict], dict]:
    def change(graph: dict) -> dict:
        graph[node]["inputs"].update(inputs)
        return graph

    return change


# name: (how the good graph is spoilt, when it is refused, (node, input) a POST refusal names, what the message says)
BAD = {
    "steps_out_of_range": (changed(SAMPLER, steps=3000), "queue", (SAMPLER, "steps"), [r"bigger than max of 1000"]),
    "unknown_dit_file": (
        changed(LOADER, dit_name="missing.safetensors"), "queue", (LOADER, "dit_name"),
        [r"dit_name: 'missing\.safetensors' is not in models/diffusion_models \(found: "],
    ),
    "zero_steps": (
        changed(SAMPLER, steps=0), "run", None,
        [r"steps 0 is invalid: use at least 1 step, or -1 for the model's official value"],
    ),
    "glyph_text_too_long": (
        changed(ENCODE, glyph_text=GLYPH), "run", None,
        [r"glyph_text: the text to render \(1 span\(s\), 159 characters\) is \d+ ByT5 tokens long",
         r"reads at most 128: shorten it"],
    ),
    "lora_of_another_model": (
        with_lora, "run", None,
        [rf"{re.escape(BAD_LORA)} is a LoRA for another model with 96-wide layers \(this DiT's are 64\)"],
    ),
}  # fmt: skip


def schedule(client: int) -> list[str]:
    """One client's half of the prompts: good and bad by turns, its two good seeds alternating, the bad kinds in
    rotation (the second client starts the rotation elsewhere, so different kinds meet in the queue)."""
    bad = list(BAD)
    cases = []
    for i in range(TOTAL // 2):
        if i % 2 == 0:
            cases.append(CLIENT_GOOD[client][(i // 2) % 2])
        else:
            cases.append(bad[(i // 2 + 2 * client) % len(bad)])
    return cases


# --- the server and what it holds ---------------------------------------------------------------------------------


def write_bad_lora(folder: Path) -> None:
    """An sd-scripts LoRA for every block Linear at 1.5 times the tiny DiT's widths: another model's LoRA."""
    folder.mkdir(parents=True, exist_ok=True)
    modules = [(kohya(name), rows * 3 // 2, cols * 3 // 2) for name, rows, cols in BLOCK_LINEARS]
    save_file(kohya_lora(modules, seed=41), str(folder / BAD_LORA), metadata={"ss_network_module": "networks.lora"})


@pytest.fixture(scope="module")
def soak_host():
    """A ComfyUI server for this module alone, with the tiny model set and the bad LoRA in its models folder.

    Its torch runs on one thread: on two busy cores the tiny tensors ran about five times slower on torch's default
    thread count (measured: 96 to 163 s against 22 s for the prompts), and one thread changes nothing the soak checks.
    """
    host = ComfyHost()
    try:
        write_tiny_models(host.models_dir)
        write_bad_lora(host.models_dir / "loras")
        with pytest.MonkeyPatch.context() as env:  # the server inherits the environment as it starts
            env.setenv("OMP_NUM_THREADS", "1")
            host.start()
        yield host
    finally:
        host.cleanup()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def fd_kinds(pid: int) -> Counter[str]:
    """The process's open descriptors by kind (socket, pipe, anon_inode, or file)."""
    kinds: Counter[str] = Counter()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().name
        except FileNotFoundError:  # closed while listed
            continue
        kinds[target.split(":")[0] if ":" in target else "file"] += 1
    return kinds


def open_fds(pid: int) -> Counter[str]:
    """The process's open descriptors by kind, the fewest of a few readings over a second (a socket being closed
    may linger for a moment)."""
    readings = []
    for _ in range(5):
        readings.append(fd_kinds(pid))
        time.sleep(0.2)
    return min(readings, key=lambda kinds: kinds.total())


def image_of(client: ComfyClient, result) -> np.ndarray:
    (entry,) = result.outputs[SAVE]["images"]
    raw = client.view(entry["filename"], entry["subfolder"], entry["type"])
    with Image.open(io.BytesIO(raw)) as png:
        return np.asarray(png.convert("RGB"))


# --- one client's work --------------------------------------------------------------------------------------------


class Tally:
    """What the clients saw, shared between their threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.failures: list[str] = []
        self.done: Counter[str] = Counter()
        self.sampled = 0  # good prompts whose sampler really ran (not served from the cache)

    def fail(self, text: str) -> None:
        with self.lock:
            self.failures.append(text)


def check(client: ComfyClient, case: str, references: dict[str, np.ndarray], tally: Tally) -> None:
    if case in GOOD:
        result = client.run(good_graph(case), timeout=TIMEOUT)
        if not result.ok:
            tally.fail(f"{case}: status {result.status}: {result.error}")
            return
        image = image_of(client, result)
        if not np.array_equal(image, references[case]):
            diff = int((image != references[case]).sum())
            tally.fail(f"{case}: the image differs from its reference in {diff} of {image.size} 8-bit values")
            return
        executed = {e["data"]["node"] for e in result.events if e["type"] == "executing"}
        with tally.lock:
            tally.sampled += SAMPLER in executed
    else:
        spoil, when_expected, where, patterns = BAD[case]
        when, errors, text = refusal(client, spoil(good_graph(CLIENT_GOOD[0][0])))
        if when != when_expected:
            tally.fail(f"{case}: refused at {when}, expected at {when_expected}: {text}")
            return
        if where is not None and (set(errors) != {where[0]} or set(errors[where[0]]) != {where[1]}):
            tally.fail(f"{case}: the refusal is not under node {where[0]} input {where[1]} alone: {errors}")
            return
        missing = [p for p in patterns if not re.search(p, text)]
        if missing:
            tally.fail(f"{case}: {missing} not in the message: {text}")
            return
    with tally.lock:
        tally.done[case] += 1


def run_clients(host: ComfyHost, work: list[list[str]], references: dict[str, np.ndarray], tally: Tally) -> None:
    """Each list of cases from its own client (own client id), all clients at once; returns when all are done."""

    def client_loop(cases: list[str]) -> None:
        client = ComfyClient(host.url, timeout=TIMEOUT)
        for case in cases:
            try:
                check(client, case, references, tally)
            except Exception:
                tally.fail(f"{case}: {traceback.format_exc()}")

    threads = [threading.Thread(target=client_loop, args=(cases,)) for cases in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


# --- the soak -----------------------------------------------------------------------------------------------------


def test_two_clients_good_and_bad_mixed_images_equal_memory_and_fds_flat(soak_host):
    pid = soak_host.process.pid
    start = time.monotonic()

    single = ComfyClient(soak_host.url, timeout=TIMEOUT)
    references = {name: image_of(single, single.run(good_graph(name)).raise_for_error()) for name in GOOD}
    for name, image in references.items():
        assert image.shape == (SIZE, SIZE, 3) and image.std() > 1, f"{name}: a flat or misshapen reference"
    distinct = {image.tobytes() for image in references.values()}
    assert len(distinct) == len(GOOD), "two seeds gave the same image: equality would prove little"

    cases = [schedule(0), schedule(1)]
    half = WARMUP // 2
    tally = Tally()
    run_clients(soak_host, [c[:half] for c in cases], references, tally)
    warm_rss, warm_kinds = rss_kib(pid), open_fds(pid)
    warmed = time.monotonic()
    run_clients(soak_host, [c[half:] for c in cases], references, tally)
    end_rss, end_kinds = rss_kib(pid), open_fds(pid)
    elapsed = time.monotonic() - warmed

    growth = (end_rss - warm_rss) / warm_rss
    warm_fds, end_fds = warm_kinds.total(), end_kinds.total()
    goods = sum(tally.done[name] for name in GOOD)
    print(  # noqa: T201
        f"\nsoak: {TOTAL} prompts from 2 clients ({WARMUP} warm-up) in {time.monotonic() - start:.1f} s "
        f"(after the warm-up {elapsed:.1f} s, {elapsed / (TOTAL - WARMUP) * 1000:.0f} ms a prompt); "
        f"done {dict(sorted(tally.done.items()))}; {tally.sampled} of {goods} good prompts sampled anew\n"
        f"server RSS {warm_rss / 1024:.1f} MiB after the warm-up, {end_rss / 1024:.1f} MiB at the end "
        f"({growth:+.2%}); open fds {warm_fds} -> {end_fds} ({dict(warm_kinds)} -> {dict(end_kinds)})"
    )
    assert soak_host.alive(), f"the server died:\n{soak_host.log_tail()}"
    assert not tally.failures, f"{len(tally.failures)} failure(s), the first:\n" + "\n".join(tally.failures[:5])
    assert sum(tally.done.values()) == TOTAL
    assert tally.sampled == goods, f"only {tally.sampled} of {goods} good prompts really sampled"
    assert growth <= RSS_GROWTH, f"server RSS grew {growth:.2%} ({warm_rss} -> {end_rss} KiB)"
    assert end_fds - warm_fds <= FD_GROWTH, f"open descriptors grew from {warm_kinds} to {end_kinds}"
