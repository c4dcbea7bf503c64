"""The shared test helpers do what the tests rely on: the closeness bound, the cache's fresh dicts, the writers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import FileLayout, assert_close, cached_state, relative_error, save
from safetensors.torch import load_file

pytestmark = pytest.mark.unit


def test_assert_close_bounds_the_largest_difference_by_the_reference_scale():
    want = torch.tensor([2.0, -4.0])
    assert assert_close(want + torch.tensor([0.0, 3e-4]), want, 1e-4) == pytest.approx(0.75e-4, rel=1e-3)
    with pytest.raises(AssertionError, match="max abs diff"):
        assert_close(want + torch.tensor([0.0, 5e-4]), want, 1e-4)
    with pytest.raises(AssertionError, match="shape"):
        assert_close(want[:1], want, 1e-4)  # no broadcasting
    assert_close(want.float(), want.double().numpy(), 0.0)  # numpy references, compared in float64


def test_assert_close_refuses_a_degenerate_reference_unless_told():
    zeros = torch.zeros(3)
    with pytest.raises(AssertionError, match="degenerate"):
        assert_close(zeros, zeros, 1e-5)
    with pytest.raises(AssertionError, match="degenerate"):
        assert_close(zeros, torch.tensor([1.0, float("nan"), 0.0]), 1e-5)
    with pytest.raises(AssertionError, match="degenerate"):
        assert_close(zeros, torch.full((3,), 0.05), 1e-5)  # below the default 0.1
    assert assert_close(zeros, zeros, 1e-5, min_scale=None) == 0.0
    with pytest.raises(AssertionError, match="rel inf"):
        assert_close(torch.ones(3), zeros, 1e-5, min_scale=None)


def test_relative_error_is_measured_in_float64():
    ref = np.array([1.0, 1.0 + 1e-12])
    assert relative_error(torch.from_numpy(ref), ref) == 0.0
    assert relative_error(torch.tensor([1.0, 3.0]), torch.tensor([1.0, 2.0])) == pytest.approx(0.5)


def test_cached_state_hands_out_fresh_dicts_of_shared_tensors():
    calls = []

    @cached_state
    def make(n: int, scale: float = 1.0) -> dict[str, torch.Tensor]:
        calls.append((n, scale))
        return {"w": torch.full((n,), scale)}

    first = make(2)
    first["extra"] = torch.zeros(1)
    second = make(2, 1.0)  # the same arguments, spelt with the default: one cache entry
    assert calls == [(2, 1.0)] and set(second) == {"w"} and second["w"] is first["w"]


def test_save_and_file_layouts(tmp_path):
    state = {"a": torch.arange(3.0)}
    assert torch.equal(
        torch.load(save(state, tmp_path / "x.ckpt"), weights_only=True)["a"], state["a"]
    )  # pickled, as released
    assert torch.equal(load_file(save(state, tmp_path / "deep" / "x.safetensors"))["a"], state["a"])
    halves = FileLayout("vae/model.safetensors", lambda s: {k: v.half() for k, v in s.items()}, "L", "", torch.float16)
    assert halves.write(tmp_path, state) == (tmp_path / "vae" / "model.safetensors", "L", "", torch.float16)
    folder = halves._replace(folder=True).write(tmp_path / "f", state)
    assert folder[0] == tmp_path / "f" / "vae" and load_file(folder[0] / "model.safetensors")["a"].dtype == torch.half
