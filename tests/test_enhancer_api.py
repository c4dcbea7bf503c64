"""The prompt enhancer through a real ComfyUI server: the shipped distilled + prompt enhancer API workflow (Prompt
Enhancer Loader -> Prompt Enhancer -> Text Encode, its prompt a STRING link -> sampler -> image), on the tiny model
set, whose models/LLM/PromptEnhancer-7B/ is a tiny random Qwen2.5-VL folder. A second prompt that changes only the
seed reuses the enhanced text from ComfyUI's cache (the enhancer nodes are reported cached, nothing is generated
again); Cancel during generation ends the prompt and the next one runs."""

from __future__ import annotations

import json

import pytest

from hy21_host import repo_root

pytestmark = pytest.mark.server

TEXT, LATENT, SAMPLER, SAVE = "4", "5", "6", "8"
LOADER, ENHANCER = "10", "11"
WORKFLOW = "workflows/api/hunyuanimage21_distilled_enhanced_api.json"


@pytest.fixture(scope="module")
def enhancer_folder(comfy_host) -> str:
    """The folder the shipped workflow's loader names, which the tiny model set provides."""
    folder = json.loads((repo_root() / WORKFLOW).read_text())[LOADER]["inputs"]["model"]
    assert (comfy_host.models_dir / folder / "config.json").is_file(), folder
    return folder


def graph(folder: str, seed: int = 1, max_new_tokens: int = 16) -> dict:
    """The shipped distilled + enhancer API twin at 256x192, fp32, with fewer new tokens."""
    nodes = json.loads((repo_root() / WORKFLOW).read_text())
    assert nodes[TEXT]["inputs"]["prompt"] == [ENHANCER, 0]
    nodes[LATENT]["inputs"].update(size="custom", width=256, height=192)
    nodes[SAMPLER]["inputs"]["seed"] = seed
    nodes[SAVE]["inputs"]["filename_prefix"] = "hy21_tests/enhanced"
    nodes[LOADER]["inputs"].update(model=folder, weight_dtype="fp32")
    nodes[ENHANCER]["inputs"]["max_new_tokens"] = max_new_tokens
    return nodes


def cached_nodes(result) -> set[str]:
    return {n for e in result.events if e["type"] == "execution_cached" for n in e["data"]["nodes"]}


def test_enhancer_to_text_encode_to_image_and_the_enhanced_text_is_cached(comfy, enhancer_folder):
    first = comfy.run(graph(enhancer_folder, seed=1), timeout=600).raise_for_error()
    assert first.outputs[SAVE]["images"], first.outputs
    assert {LOADER, ENHANCER}.isdisjoint(cached_nodes(first))
    progress = [
        e["data"]["value"] for e in first.events if e["type"] == "progress" and e["data"].get("node") == ENHANCER
    ]
    assert progress[:2] == [8, 16], progress
    second = comfy.run(graph(enhancer_folder, seed=2), timeout=600).raise_for_error()
    assert {LOADER, ENHANCER, TEXT} <= cached_nodes(second), cached_nodes(second)
    assert SAMPLER not in cached_nodes(second)
    assert not [e for e in second.events if e["type"] == "progress" and e["data"].get("node") == ENHANCER]
    assert second.outputs[SAVE]["images"]


def test_cancel_during_generation_ends_the_prompt_and_the_next_one_runs(comfy, enhancer_folder):
    sent: list[int] = []

    def cancel_at_first_token_batch(event: dict) -> None:
        if not sent and event["type"] == "progress" and event["data"].get("node") == ENHANCER:
            sent.append(event["data"]["value"])
            comfy.interrupt()

    long = graph(enhancer_folder, seed=3, max_new_tokens=4000)
    long[ENHANCER]["inputs"]["prompt"] = "a lighthouse at dusk, cancelled"
    result = comfy.run(long, timeout=600, on_event=cancel_at_first_token_batch)
    assert sent, "the enhancer sent no progress event"
    assert result.status == "interrupted", f"expected an interruption, got {result.status}: {result.error}"
    history = comfy.history(result.prompt_id)["status"]["messages"]
    (event,) = [data for name, data in history if name == "execution_interrupted"]
    assert event["node_id"] == ENHANCER and SAVE not in result.outputs
    after = comfy.run(graph(enhancer_folder, seed=4), timeout=600).raise_for_error()
    assert after.outputs[SAVE]["images"]
