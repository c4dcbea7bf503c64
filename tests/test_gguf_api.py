"""GGUF DiTs through a real ComfyUI server: a QuantStack-style file in models/diffusion_models is offered by the DiT
loader and renders exactly the image of the same weights dequantized into a bf16 safetensors file; GGUF and fp8
files that cannot work are refused with a message that names the problem and the fix, and the server serves on."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from dit_files import to_layout, to_official_fp8
from gguf_files import quantstack_tensors, write_gguf
from PIL import Image
from safetensors.torch import load_file, save_file

from hunyuan_core.dit import keys as K
from hunyuan_core.variants import DISTILLED
from hy21_host import repo_root
from hy21_host.tiny_models import model_path

pytestmark = pytest.mark.server

WIDTH, HEIGHT = 256, 192
LOADER, SAMPLER, LATENT, SAVE = "1", "6", "5", "8"
GGUF_NAME = "hy21_test_distilled-Q8_0.gguf"
REFERENCE_NAME = "hy21_test_distilled_q8_0_dequantized_bf16.safetensors"


def workflow(dit_name: str, seed: int) -> dict:
    graph = json.loads((repo_root() / "workflows/api/hunyuanimage21_distilled_api.json").read_text())
    graph[LATENT]["inputs"].update(size="custom", width=WIDTH, height=HEIGHT)
    graph[SAMPLER]["inputs"]["seed"] = seed
    graph[LOADER]["inputs"]["dit_name"] = dit_name
    graph[SAVE]["inputs"]["filename_prefix"] = "hy21_tests/gguf"
    return graph


def image(comfy, result) -> np.ndarray:
    (entry,) = result.outputs[SAVE]["images"]
    with Image.open(io.BytesIO(comfy.view(entry["filename"], entry["subfolder"], entry["type"]))) as png:
        return np.asarray(png.convert("RGB"))


@pytest.fixture(scope="module")
def gguf_files(comfy_host) -> dict[str, Path]:
    """The tiny distilled DiT as a Q8_0 GGUF, its dequantized twin, and the broken files of the refusal tests."""
    folder = comfy_host.models_dir / "diffusion_models"
    state = load_file(str(model_path(comfy_host.models_dir, DISTILLED.dit_file)))
    tensors, expected = quantstack_tensors(state, "Q8_0")
    files = {"gguf": write_gguf(folder / GGUF_NAME, tensors)}
    files["reference"] = folder / REFERENCE_NAME
    save_file({k: v.to(torch.bfloat16) for k, v in expected.items()}, str(files["reference"]))

    flux = {"double_blocks.0.img_attn.qkv.weight": (96, 32), "img_in.weight": (32, 64), "txt_in.weight": (32, 40)}
    files["flux"] = write_gguf(
        folder / "hy21_test_flux1-dev-Q4_K_S.gguf",
        {k: (np.full(s, 0.5, np.float32), "F32") for k, s in flux.items()}, arch="flux",
    )  # fmt: skip
    odd = dict(tensors)
    rows = state["double_blocks.0.img_attn_qkv.weight"].shape[0]
    odd["double_blocks.0.img_attn_qkv.weight"] = (np.zeros((rows, 2 * 18), np.uint8), "IQ4_NL")
    files["iq4_nl"] = write_gguf(folder / "hy21_test_distilled-IQ4_NL.gguf", odd)
    data = files["gguf"].read_bytes()
    files["truncated"] = folder / "hy21_test_distilled-Q4_K_M-partial.gguf"
    files["truncated"].write_bytes(data[: len(data) // 2])

    split = to_layout({k: v.float() for k, v in state.items()}, K.OFFICIAL_SPLIT, 64)
    fp8, _scales, _ = to_official_fp8(split, in_file_scales=False)
    files["fp8_no_scales"] = folder / "hy21_test_distilled_fp8.safetensors"
    save_file(fp8, str(files["fp8_no_scales"]))
    yield files
    for path in files.values():
        path.unlink(missing_ok=True)


def test_gguf_renders_the_image_of_its_dequantized_weights(comfy, gguf_files):
    from_gguf = comfy.run(workflow(GGUF_NAME, seed=801)).raise_for_error()
    from_reference = comfy.run(workflow(REFERENCE_NAME, seed=801)).raise_for_error()
    got, want = image(comfy, from_gguf), image(comfy, from_reference)
    assert got.shape == (HEIGHT, WIDTH, 3) and got.std() > 1
    assert np.array_equal(got, want)


@pytest.mark.parametrize(
    ("file", "patterns"),
    [
        ("flux", [r"is not a HunyuanImage-2\.1 DiT: it appears to be a Flux-style transformer", r"'flux'",
                  r"models/diffusion_models"]),
        ("iq4_nl", [r"GGML type IQ4_NL", r"cannot dequantize", r"Supported: F32, F16, BF16, Q8_0"]),
        ("truncated", [r"truncated", r"download it again"]),
        ("fp8_no_scales", [r"scaled fp8 weights but no scales were found",
                           r"hy21_test_distilled_fp8_scale\.safetensors next to it"]),
    ],
)  # fmt: skip
def test_unusable_file_is_named_then_the_next_prompt_runs(comfy, gguf_files, file, patterns):
    result = comfy.run(workflow(gguf_files[file].name, seed=810))
    assert result.status == "error", file
    assert result.error["node_type"] == "HunyuanImage21DiTLoader"
    message = result.error["exception_message"]
    for pattern in patterns:
        assert re.search(pattern, message), f"{file}: {pattern!r} not in {message}"
    after = comfy.run(workflow(GGUF_NAME, seed=811 + len(file))).raise_for_error()
    assert image(comfy, after).shape == (HEIGHT, WIDTH, 3)


def test_text_encoder_quantized_at_load_and_prompts_without_the_new_input(comfy, gguf_files):
    """``qwen_weight_dtype`` fp8_e4m3fn runs; an API prompt written before the input existed runs with ``auto``."""
    graph = workflow(GGUF_NAME, seed=830)
    graph["2"]["inputs"]["qwen_weight_dtype"] = "fp8_e4m3fn"
    fp8 = image(comfy, comfy.run(graph).raise_for_error())
    older = workflow(GGUF_NAME, seed=830)
    del older["2"]["inputs"]["qwen_weight_dtype"]
    auto = image(comfy, comfy.run(older).raise_for_error())
    assert fp8.shape == auto.shape == (HEIGHT, WIDTH, 3)
    assert not np.array_equal(fp8, auto)  # the fp8 encoder really ran (its rounding moves the image a little)
