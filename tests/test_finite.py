"""Non-finite weights are caught when a file is loaded: NaN or infinity in any tensor (float, fp8) names the file and
the tensor with the fix, and so does a cast that overflows the chosen dtype; finite files load as before."""

from __future__ import annotations

import pytest
import torch
from dit_files import TINY, random_state
from helpers import save

from hunyuan_core.checkpoints.finite import is_finite
from hunyuan_core.dit.checkpoint import DiTCheckpointError, load_dit

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_thread")]

FLOATS = (torch.float32, torch.float16, torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"])
def test_is_finite_finds_one_bad_value_anywhere(dtype, bad):
    values = torch.randn(3, 1000) * 10
    assert is_finite(values.to(dtype))
    for index in (0, 1234, 2999):
        broken = values.clone()
        broken.view(-1)[index] = bad
        cast = broken.to(dtype)
        # e4m3fn has no infinity: a cast saturates to 448, which is finite
        want = dtype == torch.float8_e4m3fn and abs(bad) == float("inf")
        assert is_finite(cast) is want, (dtype, bad, index)


def test_integer_and_empty_tensors_are_finite():
    assert is_finite(torch.arange(10, dtype=torch.uint8)) and is_finite(torch.empty(0))


def test_nan_in_one_layer_is_refused_at_load_naming_file_and_tensor(tmp_path):
    state = random_state(TINY)
    state["double_blocks.1.img_mlp.fc2.weight"][3, 7] = float("nan")
    path = save(state, tmp_path / "broken_dit.safetensors")
    with pytest.raises(DiTCheckpointError) as info:
        load_dit(path)
    message = str(info.value)
    assert "broken_dit.safetensors" in message and "double_blocks.1.img_mlp.fc2.weight" in message
    assert "NaN or infinite values" in message and "download it again" in message


def test_nan_in_an_fp8_file_is_refused(tmp_path):
    state = random_state(TINY)
    state["single_blocks.0.linear1.weight"][0, 0] = float("nan")
    path = save(state, tmp_path / "nan.safetensors")
    with pytest.raises(DiTCheckpointError, match=r"single_blocks\.0\.linear1\.weight holds NaN"):
        load_dit(path, quantize_fp8=True)


def test_a_cast_that_overflows_names_the_dtype_to_use(tmp_path):
    state = random_state(TINY)
    state["txt_in.input_embedder.weight"][0, 0] = 1e6  # fine in the file (fp32), beyond float16
    path = save(state, tmp_path / "big.safetensors")
    load_dit(path, dtype=torch.bfloat16)  # bf16 holds it
    with pytest.raises(DiTCheckpointError, match="beyond what float16 can hold; load it in bf16 or fp32"):
        load_dit(path, dtype=torch.float16)
