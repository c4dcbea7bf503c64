"""The shipped base -> refiner workflow through a real ComfyUI server, on the tiny model set in the real formats.

The refiner runs at the stage-1 size: 16x compression, so a 256x192 image is a 16x12 refiner latent.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_workflows_api import BASE_STEPS, HEIGHT, WIDTH, image_of, max_diff, progress_of

from hunyuan_core.dit.checkpoint import load_dit
from hunyuan_core.pipelines import RefinerSettings, refine_image
from hunyuan_core.refiner_vae import load_refiner_vae
from hunyuan_core.text.qwen import load_qwen_encoder
from hunyuan_core.variants import BASE, QWEN_FILE, REFINER_VAE_FILE, STAGE1_VAE_FILE
from hunyuan_core.variants import REFINER as REFINER_VARIANT
from hy21_host import PromptRejectedError, repo_root
from hy21_host.tiny_models import model_path

pytestmark = pytest.mark.server

SAMPLER, STAGE1_PREVIEW, REFINER_DIT, REFINER_VAE, REFINER, SAVE = "6", "8", "10", "11", "12", "13"


def refiner_workflow(seed: int = 42, width: int = WIDTH, height: int = HEIGHT) -> dict:
    graph = json.loads((repo_root() / "workflows/api/hunyuanimage21_base_refiner_api.json").read_text())
    graph["5"]["inputs"].update(size="custom", width=width, height=height)
    graph[SAMPLER]["inputs"].update(seed=seed, steps=BASE_STEPS)
    graph[REFINER]["inputs"]["seed"] = seed
    graph[SAVE]["inputs"]["filename_prefix"] = "hy21_tests/refined"
    return graph


def test_refiner_workflow_yields_refined_png_of_requested_size(comfy):
    result = comfy.run(refiner_workflow()).raise_for_error()
    stage1, refined = image_of(comfy, result, STAGE1_PREVIEW), image_of(comfy, result, SAVE)
    assert stage1.shape == refined.shape == (HEIGHT, WIDTH, 3)
    assert refined.std() > 1, "the refined image is flat"
    assert max_diff(stage1, refined) > 0.05, "the refiner returned its input"
    progress = progress_of(result, REFINER)
    assert [v for v, _ in progress] == [1, 2, 3, 4] and {m for _, m in progress} == {4}  # official 4 steps


def test_server_refined_image_equals_core_pipeline(comfy, comfy_host):
    """The refiner node's result, recomputed with hunyuan_core alone from the same stage-1 image (an 8-bit PNG both
    read exactly): encode, refine, decode (fp32 on CPU). Stage 1 on the server against the core is checked in
    test_workflows_api.py."""
    seed = 8080
    stage1 = np.random.default_rng(seed).integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    name = "hy21_refiner_input.png"
    (comfy_host.base_dir / "input").mkdir(exist_ok=True)
    Image.fromarray(stage1).save(comfy_host.base_dir / "input" / name)
    graph = refiner_workflow(seed=seed)
    graph["50"] = {"class_type": "LoadImage", "inputs": {"image": name}}
    graph[REFINER]["inputs"]["image"] = ["50", 0]
    server = image_of(comfy, comfy.run(graph).raise_for_error(), SAVE)

    models = comfy_host.models_dir
    prompt = graph["4"]["inputs"]["prompt"]
    tokenizers = comfy_host.comfyui / "comfy" / "text_encoders"
    qwen = load_qwen_encoder(model_path(models, QWEN_FILE), tokenizer_dirs=[tokenizers / "qwen25_tokenizer"])
    vae = load_refiner_vae(model_path(models, REFINER_VAE_FILE), dtype=torch.float32)
    dit = load_dit(model_path(models, REFINER_VARIANT.dit_file)).eval()
    image = torch.from_numpy(stage1.astype(np.float32) / 255)[None]
    # refine_image is checked against the procedure composed step by step in test_refiner_pipeline.py
    core = refine_image(dit, vae, qwen, image, prompt, seed, RefinerSettings(vae_precision="fp32"))[0].numpy()
    diff = float(np.abs(server.astype(np.float64) / 255 - core).max())
    print(f"\nrefiner: server PNG vs hunyuan_core float image max abs diff {diff:.5f} ({diff * 255:.2f}/255)")  # noqa: T201
    assert diff <= 2 / 255, f"server vs core max abs diff {diff:.5f} (= {diff * 255:.2f}/255)"


def _expect_next_refiner_runs(comfy, seed: int) -> None:
    result = comfy.run(refiner_workflow(seed=seed)).raise_for_error()
    assert image_of(comfy, result, SAVE).shape == (HEIGHT, WIDTH, 3)


@pytest.mark.parametrize(
    ("case", "change", "node_type", "expected"),
    [
        pytest.param(
            "stage-1 VAE as refiner VAE", (REFINER_VAE, "vae_name", STAGE1_VAE_FILE.name),
            "HunyuanImage21RefinerVAELoader",
            ["stage-1", "HunyuanImage 2.1 VAE Loader"], id="stage1-vae-in-refiner-vae-loader",
        ),
        pytest.param(
            "refiner VAE as stage-1 VAE", ("3", "vae_name", REFINER_VAE_FILE.name), "HunyuanImage21VAELoader",
            ["refiner VAE", "load it as the refiner VAE"], id="refiner-vae-in-stage1-vae-loader",
        ),
        pytest.param(
            "base DiT as refiner", (REFINER_DIT, "dit_name", BASE.dit_file.name), "HunyuanImage21Refiner",
            ["base model", "not the refiner", REFINER_VARIANT.dit_file.name], id="base-dit-as-refiner",
        ),
        pytest.param(
            "refiner DiT in the sampler", ("1", "dit_name", REFINER_VARIANT.dit_file.name), "HunyuanImage21Sampler",
            ["the connected DiT is the refiner", "HunyuanImage 2.1 Refiner node"], id="refiner-dit-in-sampler",
        ),
    ],
)  # fmt: skip
def test_wrong_refiner_files_are_named_then_the_next_prompt_runs(comfy, case, change, node_type, expected):
    node, name, value = change
    graph = refiner_workflow(seed=900 + len(case))
    graph[node]["inputs"][name] = value
    result = comfy.run(graph)
    assert result.status == "error", f"{case}: expected an error, got {result.status}"
    assert result.error["node_type"] == node_type, result.error
    message = result.error["exception_message"]
    for fragment in expected:
        assert fragment in message, f"{case}: {fragment!r} not in {message!r}"
    _expect_next_refiner_runs(comfy, seed=950 + len(case))


def test_bad_condition_strength_is_refused_before_running(comfy):
    graph = refiner_workflow()
    del graph[STAGE1_PREVIEW]  # with a valid output left, ComfyUI would run that part and only log the refusal
    graph[REFINER]["inputs"]["condition_strength"] = 1.5
    with pytest.raises(PromptRejectedError) as rejected:
        comfy.queue(graph)
    text = "\n".join(rejected.value.messages())
    assert REFINER in rejected.value.node_errors, rejected.value.describe()
    assert "condition_strength" in text, text


def test_image_not_multiple_of_16_is_named(comfy):
    """An image from elsewhere (here a crop to 250 px wide) must be a multiple of 16 for the refiner VAE."""
    graph = refiner_workflow(seed=990)
    graph["30"] = {"class_type": "ImageCrop", "inputs": {"image": ["7", 0], "width": 250, "height": HEIGHT,
                                                        "x": 0, "y": 0}}  # fmt: skip
    graph[REFINER]["inputs"]["image"] = ["30", 0]
    result = comfy.run(graph)
    assert result.status == "error" and result.error["node_type"] == "HunyuanImage21Refiner", result.error
    message = result.error["exception_message"]
    assert "250" in message and "multiples of 16" in message, message
    _expect_next_refiner_runs(comfy, seed=991)
