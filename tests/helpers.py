"""What many test modules share: the closeness asserts, seeded random weights, the checkpoint file writers, and how
a server refused a prompt."""

from __future__ import annotations

import functools
import inspect
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from safetensors.torch import save_file

from hy21_host import PromptRejectedError
from hy21_host.host import PACK_NAME

PICKLED_SUFFIXES = (".pt", ".ckpt", ".bin")  # torch.save, as the official releases ship them

# --- closeness --------------------------------------------------------------------------------------------------


def _as_tensor(value: torch.Tensor | np.ndarray) -> torch.Tensor:
    return torch.from_numpy(value) if isinstance(value, np.ndarray) else value


def relative_error(got: torch.Tensor | np.ndarray, want: torch.Tensor | np.ndarray) -> float:
    """Largest absolute difference over the reference's largest magnitude, both measured in float64."""
    got, want = _as_tensor(got).double(), _as_tensor(want).double()
    return float((got - want).abs().max() / want.abs().max())


def assert_close(
    got: torch.Tensor | np.ndarray, want: torch.Tensor | np.ndarray, rel_tol: float, *, min_scale: float | None = 0.1
) -> float:
    """Assert ``max |got - want| <= rel_tol * max |want|`` (measured in float64) and return the relative error.

    Shapes must match exactly (no broadcasting). ``min_scale``: the reference must be finite and its largest value
    above this, so a degenerate (all-zero, NaN) reference cannot pass; ``None`` checks nothing about the reference.
    """
    got, want = _as_tensor(got), _as_tensor(want)
    assert got.shape == want.shape, f"shape {tuple(got.shape)} != reference {tuple(want.shape)}"
    diff = float((got.double() - want.double()).abs().max())
    scale = float(want.double().abs().max())
    if min_scale is not None:
        assert bool(torch.isfinite(want).all()) and scale > min_scale, "degenerate reference output"
    rel = diff / scale if scale else (0.0 if diff == 0 else float("inf"))
    assert diff <= rel_tol * scale, f"max abs diff {diff:.3g} > {rel_tol:g} * {scale:.3g} (rel {rel:.3g})"
    return rel


# --- seeded random weights -------------------------------------------------------------------------------------


def randomize(module: torch.nn.Module, seed: int | torch.Generator, scale: float) -> torch.nn.Module:
    """Every parameter redrawn as ``N(0, 1) * scale`` from ``seed`` (a generator goes on being drawn from), so
    zero-initialised layers (gates, final layers) carry weight too. Returns the module in eval mode."""
    gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * scale)
    return module.eval()


def cached_state(make: Callable[..., dict[str, torch.Tensor]]) -> Callable[..., dict[str, torch.Tensor]]:
    """Cache a state-dict maker (random numbers are slow on a small CPU), keyed by its arguments with defaults.

    Each call returns a fresh dict, so callers may add or drop keys; the tensors are shared and must not be
    modified in place.
    """
    signature = inspect.signature(make)
    cached = functools.lru_cache(maxsize=8)(make)

    @functools.wraps(make)
    def fresh(*args, **kwargs) -> dict[str, torch.Tensor]:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return dict(cached(*bound.args))

    return fresh


# --- files ------------------------------------------------------------------------------------------------------


def save(tensors: Mapping, path: Path) -> Path:
    """Write ``tensors`` to ``path`` (parents created): ``.pt``/``.ckpt``/``.bin`` pickled with ``torch.save``, as
    the official files are, anything else as safetensors."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in PICKLED_SUFFIXES:
        torch.save(tensors, path)
    else:
        save_file(tensors, str(path))
    return path


class FileLayout(NamedTuple):
    """One published way of storing a model, and what inspecting it must report.

    ``file``: where it is written (relative); ``tensors``: makes the file's contents from our state dict (and
    whatever else the layout needs); ``layout``, ``prefix``, ``dtype``: the detected layout, key prefix and weight
    dtype; ``folder``: the loader is given the file's folder rather than the file.
    """

    file: str
    tensors: Callable[..., Mapping]
    layout: str
    prefix: str
    dtype: torch.dtype
    folder: bool = False

    def write(self, root: Path, *args) -> tuple[Path, str, str, torch.dtype]:
        """Write the layout under ``root``: (what to load, expected layout, expected prefix, expected dtype)."""
        path = save(self.tensors(*args), root / self.file)
        return (path.parent if self.folder else path), self.layout, self.prefix, self.dtype


def truncate(path: Path, keep: float = 0.5) -> Path:
    """Cut a file short, as an interrupted download leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


# --- benchmarks ---------------------------------------------------------------------------------------------------

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"


def run_bench(script: str, *args: str, timeout: float = 300) -> str:
    """Run ``bench/<script>`` with ``args`` in a fresh interpreter; its stdout (the run must succeed)."""
    out = subprocess.run(
        [sys.executable, str(BENCH_DIR / script), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert out.returncode == 0, f"{script} exited with {out.returncode}:\n{out.stderr[-3000:]}\n{out.stdout[-3000:]}"
    return out.stdout


def refusal(comfy, prompt: dict) -> tuple[str, dict[str, dict[str, list[str]]], str]:
    """How a bad prompt was refused: ("queue", {node: {input: [details]}}, text) when ``POST /prompt`` answered
    400, or ("run", {}, the execution error's message) when a node refused as it ran."""
    try:
        result = comfy.run(prompt)
    except PromptRejectedError as rejected:
        found: dict[str, dict[str, list[str]]] = {}
        for node, info in rejected.node_errors.items():
            for error in info["errors"]:
                name = error.get("extra_info", {}).get("input_name", "")
                found.setdefault(node, {}).setdefault(name, []).append(f"{error['message']}: {error['details']}")
        return "queue", found, "\n".join(rejected.messages())
    assert result.status == "error", "the bad prompt ran"
    return "run", {}, result.error["exception_message"]


def pack_nodes(object_info: Mapping[str, dict]) -> dict[str, dict]:
    """The pack's node definitions in a server's /object_info (the ones ComfyUI loaded from the pack's folder), by
    node id; at least one, each named ``HunyuanImage21…``."""
    module = f"custom_nodes.{PACK_NAME}"
    nodes = {name: info for name, info in object_info.items() if info.get("python_module") == module}
    assert nodes, f"no node of {module} in /object_info"
    assert all(name.startswith("HunyuanImage21") for name in nodes), sorted(nodes)
    return nodes
