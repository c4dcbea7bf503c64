"""The empty-latent node run through a real server's POST /prompt into ComfyUI's native SaveLatent."""

from __future__ import annotations

import json

import pytest
import safetensors.torch
import torch
from helpers import refusal

from hy21_host import repo_root

pytestmark = pytest.mark.server

NODE = "HunyuanImage21EmptyLatent"


def latent_prompt(size: str, width: int = 2048, height: int = 2048, batch_size: int = 1, prefix: str = "t") -> dict:
    return {
        "1": {"class_type": NODE, "inputs": {"size": size, "width": width, "height": height, "batch_size": batch_size}},
        "2": {"class_type": "SaveLatent", "inputs": {"samples": ["1", 0], "filename_prefix": f"latents/{prefix}"}},
    }


def saved_latent(comfy, result, node_id: str = "2") -> torch.Tensor:
    (entry,) = result.outputs[node_id]["latents"]
    raw = comfy.view(entry["filename"], entry["subfolder"], entry["type"])
    return safetensors.torch.load(raw)["latent_tensor"]


@pytest.mark.parametrize(
    ("size", "width", "height", "batch_size", "expected"),
    [
        ("2048x2048 (1:1)", 0, 0, 1, (1, 64, 64, 64)),
        ("2560x1536 (16:9)", 0, 0, 2, (2, 64, 48, 80)),
        ("custom", 1344, 768, 3, (3, 64, 24, 42)),
    ],
)
def test_saved_latent_shape(comfy, size, width, height, batch_size, expected):
    # Preset sizes ignore width/height, so even values that would be invalid as custom sizes pass.
    result = comfy.run(latent_prompt(size, width or 2048, height or 2048, batch_size, prefix="shape")).raise_for_error()
    latent = saved_latent(comfy, result)
    assert tuple(latent.shape) == expected
    assert latent.dtype == torch.float32
    assert not latent.any()


def test_matches_native_hunyuan_image_latent(comfy):
    """Same tensor as ComfyUI's own EmptyHunyuanImageLatent, so native nodes accept ours."""
    prompt = latent_prompt("custom", 2304, 1792, 2, prefix="ours")
    prompt["3"] = {"class_type": "EmptyHunyuanImageLatent", "inputs": {"width": 2304, "height": 1792, "batch_size": 2}}
    prompt["4"] = {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": "latents/native"}}
    result = comfy.run(prompt).raise_for_error()
    ours, native = saved_latent(comfy, result, "2"), saved_latent(comfy, result, "4")
    assert ours.shape == native.shape and ours.dtype == native.dtype
    assert torch.equal(ours, native)


def test_native_nodes_consume_our_latent(comfy):
    prompt = latent_prompt("2304x1792 (4:3)", prefix="batched")
    prompt["3"] = {"class_type": "RepeatLatentBatch", "inputs": {"samples": ["1", 0], "amount": 2}}
    prompt["2"]["inputs"]["samples"] = ["3", 0]
    assert tuple(saved_latent(comfy, comfy.run(prompt).raise_for_error()).shape) == (2, 64, 56, 72)


def test_below_2k_is_allowed_with_a_warning_on_the_node(comfy, comfy_host):
    """The warning reaches the user: shown on the node in the web UI (ComfyUI's progress text), and in the log."""
    result = comfy.run(latent_prompt("custom", 1024, 1024, prefix="small")).raise_for_error()
    assert tuple(saved_latent(comfy, result).shape) == (1, 64, 32, 32)
    assert "1024x1024 is below the model's trained 2K range" in comfy_host.log_text()
    shown = [e["data"] for e in result.events if e["type"] == "progress_text"]
    note = "1024x1024 is below the model's trained 2K range"
    assert any(d["node"] == "1" and note in d["text"] for d in shown), shown


@pytest.mark.parametrize(
    ("inputs", "fragment"),
    [
        ({"size": "custom", "width": 2050, "height": 2048}, "width 2050 is not a multiple of 32"),
        ({"size": "custom", "width": 2048, "height": 1000}, "height 1000 is not a multiple of 32"),
        ({"size": "2048x2048 (1:1)", "batch_size": 0}, "Value 0 smaller than min of 1: batch_size"),
        ({"size": "1024x1024 (1:1)"}, "size '1024x1024 (1:1)'"),
    ],
)
def test_bad_input_is_refused_and_server_keeps_serving(comfy, inputs, fragment):
    """Out-of-range numbers and unknown presets are refused before the run; a side that is not a multiple of 32 (the
    widget's range allows it) as the node starts. Each message names its input."""
    prompt = latent_prompt("custom", prefix="bad")
    prompt["1"]["inputs"].update(inputs)
    when, _, text = refusal(comfy, prompt)
    assert when == ("run" if "multiple of 32" in fragment else "queue"), text
    assert fragment in text, text
    # The same server runs the next valid prompt.
    result = comfy.run(latent_prompt("1536x2560 (9:16)", prefix="after_bad")).raise_for_error()
    assert tuple(saved_latent(comfy, result).shape) == (1, 64, 80, 48)


def test_shipped_api_workflow_runs(comfy):
    workflow = json.loads((repo_root() / "workflows/api/hunyuanimage21_empty_latent.json").read_text())
    result = comfy.run(workflow).raise_for_error()
    assert tuple(saved_latent(comfy, result).shape) == (1, 64, 64, 64)


def test_linked_bad_size_fails_at_run_time_with_a_clear_error(comfy):
    """A width wired from another node skips validation; the node itself then refuses it."""
    prompt = latent_prompt("custom", prefix="linked")
    prompt["3"] = {"class_type": "PrimitiveInt", "inputs": {"value": 2050}}
    prompt["1"]["inputs"]["width"] = ["3", 0]
    result = comfy.run(prompt)
    assert result.status == "error"
    assert result.error["node_type"] == NODE
    assert "width 2050 is not a multiple of 32" in result.error["exception_message"]
    result = comfy.run(latent_prompt("2048x2048 (1:1)", prefix="after_error")).raise_for_error()
    assert tuple(saved_latent(comfy, result).shape) == (1, 64, 64, 64)
