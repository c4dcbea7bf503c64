"""The shipped API workflows end to end through a real ComfyUI server (POST /prompt, websocket, /view, /interrupt).

Everything runs on the tiny random model set in the real formats, at small custom sizes so the CPU keeps up; the
sizes are below the model's trained range, which only costs quality (a warning in the log), not correctness.
"""

from __future__ import annotations

import copy
import io
import json
import math
import re
import time

import numpy as np
import pytest
import torch
from helpers import refusal
from PIL import Image
from safetensors.torch import save_file

from hunyuan_core.dit.checkpoint import load_dit
from hunyuan_core.sampling import Conditioning, make_noise, plan_sampling, sample, to_vae_space
from hunyuan_core.text.byt5 import load_glyph_encoder
from hunyuan_core.text.encoder import encode_prompt
from hunyuan_core.text.qwen import load_qwen_encoder
from hunyuan_core.vae import STAGE1_VAE, decode_image, load_vae
from hunyuan_core.vae.checkpoint import expected_shapes
from hunyuan_core.variants import DISTILLED, GLYPH_FILE, QWEN_FILE, STAGE1_VAE_FILE, get_variant
from hy21_host import PromptRejectedError, repo_root
from hy21_host.tiny_models import model_path

pytestmark = pytest.mark.server

VARIANTS = ("distilled", "base")
WIDTH, HEIGHT = 256, 192  # small custom size: 8x6 latent cells
BASE_STEPS = 6  # enough for the official CFG -> APG mix to switch (APG from step 6 without quoted text)
SAMPLER, LATENT, DECODE, SAVE = "6", "5", "7", "8"
TEXT = "4"
ENHANCER, SHOWN_PROMPT, SHOWN_REASONING = "11", "12", "13"  # in the distilled + prompt enhancer workflow
ENHANCER_TOKENS = 16  # instead of the official 2048: the tiny random enhancer never stops early
FULL_VAE_FILE = "hy21_test_full_size_random_vae_fp16.safetensors"
MISPLACED_VAE = "hy21_test_vae_in_diffusion_models.safetensors"


# --- helpers ------------------------------------------------------------------------------------------------------


def workflow(variant: str, seed: int = 42, width: int = WIDTH, height: int = HEIGHT, steps: int | None = None) -> dict:
    """The shipped API twin, at a small custom size (and fewer steps for base unless ``steps`` is given)."""
    graph = json.loads((repo_root() / f"workflows/api/hunyuanimage21_{variant}_api.json").read_text())
    graph[LATENT]["inputs"].update(size="custom", width=width, height=height)
    graph[SAMPLER]["inputs"]["seed"] = seed
    if steps is None and variant == "base":
        steps = BASE_STEPS
    if steps is not None:
        graph[SAMPLER]["inputs"]["steps"] = steps
    graph[SAVE]["inputs"]["filename_prefix"] = f"hy21_tests/{variant}"
    return graph


def images_of(comfy, result, node_id: str) -> list[np.ndarray]:
    """The images an output node (SaveImage / PreviewImage) wrote, read back through /view, as uint8 HxWx3."""
    found = []
    for entry in result.outputs[node_id]["images"]:
        raw = comfy.view(entry["filename"], entry["subfolder"], entry["type"])
        with Image.open(io.BytesIO(raw)) as png:
            assert png.format == "PNG"
            found.append(np.asarray(png.convert("RGB")))
    return found


def image_of(comfy, result, node_id: str = SAVE) -> np.ndarray:
    (image,) = images_of(comfy, result, node_id)
    return image


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest per-pixel difference in 0..1 units."""
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()) / 255.0


def progress_of(result, node_id: str) -> list[tuple[int, int]]:
    return [
        (e["data"]["value"], e["data"]["max"])
        for e in result.events
        if e["type"] == "progress" and e["data"].get("node") == node_id
    ]


# --- 1, 2: every shipped workflow runs, at the requested size, reproducibly ----------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_shipped_workflow_yields_png_of_requested_size(comfy, variant):
    result = comfy.run(workflow(variant)).raise_for_error()
    image = image_of(comfy, result)
    assert image.shape == (HEIGHT, WIDTH, 3)
    assert image.std() > 1, "the decoded image is flat"


@pytest.mark.parametrize("variant", VARIANTS)
def test_fixed_seed_gives_same_image(comfy, variant):
    # An identical prompt is served from ComfyUI's cache, so seed B runs in between to force a real re-run of A.
    first = image_of(comfy, comfy.run(workflow(variant, seed=1234)).raise_for_error())
    other = image_of(comfy, comfy.run(workflow(variant, seed=5678)).raise_for_error())
    again = comfy.run(workflow(variant, seed=1234)).raise_for_error()
    executed = {e["data"]["node"] for e in again.events if e["type"] == "executing"}
    assert SAMPLER in executed, "the repeated seed was served from cache, not sampled again"
    assert np.array_equal(image_of(comfy, again), first)
    assert max_diff(first, other) > 0.05, "a different seed should give a different image"


def test_enhanced_workflow_encodes_the_enhancers_prompt(comfy):
    """The distilled + prompt enhancer workflow as shipped (its loader names the tiny set's PromptEnhancer-7B folder)
    with fewer new tokens: the enhancer runs, the two Preview as Text nodes show its prompt and reasoning, and the
    image is the plain distilled workflow's image for the prompt the enhancer handed to the Text Encode."""
    graph = workflow("distilled_enhanced", seed=4321)
    graph[ENHANCER]["inputs"]["max_new_tokens"] = ENHANCER_TOKENS
    assert graph[TEXT]["inputs"]["prompt"] == [ENHANCER, 0]
    result = comfy.run(graph, timeout=600).raise_for_error()
    assert progress_of(result, ENHANCER)[-1] == (ENHANCER_TOKENS, ENHANCER_TOKENS)
    (prompt,) = result.outputs[SHOWN_PROMPT]["text"]
    (reasoning,) = result.outputs[SHOWN_REASONING]["text"]
    assert prompt.strip() and reasoning.strip(), (prompt, reasoning)
    enhanced = image_of(comfy, result)
    assert enhanced.shape == (HEIGHT, WIDTH, 3)
    plain = workflow("distilled", seed=4321)
    plain[TEXT]["inputs"]["prompt"] = prompt
    assert np.array_equal(image_of(comfy, comfy.run(plain).raise_for_error()), enhanced)


# --- 3: the server's image is the core pipeline's image ----------------------------------------------------------


def core_image(models_dir, comfyui, variant: str, prompt: str, seed: int, steps: int) -> torch.Tensor:
    """The shipped workflow's pipeline run directly through hunyuan_core, as the nodes call it (IMAGE, 0..1)."""
    tokenizers = comfyui / "comfy" / "text_encoders"
    dit = load_dit(model_path(models_dir, get_variant(variant).dit_file)).eval()
    qwen = load_qwen_encoder(model_path(models_dir, QWEN_FILE), tokenizer_dirs=[tokenizers / "qwen25_tokenizer"])
    glyph = load_glyph_encoder(model_path(models_dir, GLYPH_FILE), tokenizer_dirs=[tokenizers / "byt5_tokenizer"])
    vae = load_vae(model_path(models_dir, STAGE1_VAE_FILE), dtype=torch.float32)
    with torch.no_grad():
        positive = Conditioning.of(encode_prompt(qwen, glyph, prompt, None)).to("cpu")  # glyph_text "" -> None
        negative = Conditioning.of(encode_prompt(qwen, glyph, "")).to("cpu")
    noise = make_noise((1, 64, HEIGHT // 32, WIDTH // 32), seed, "official")
    plan = plan_sampling(variant, steps=None if steps == -1 else steps)  # every other widget at -1 / auto
    out = sample(dit, noise, positive, negative, schedule=plan.schedule, guidance=plan.guidance)
    return decode_image(vae, to_vae_space(out), precision="fp32")  # 'auto' precision is fp32 on the CPU


@pytest.mark.parametrize("variant", VARIANTS)
def test_server_image_equals_core_pipeline(comfy, comfy_host, variant):
    graph = workflow(variant, seed=31337)
    server = image_of(comfy, comfy.run(graph).raise_for_error())
    inputs = graph[SAMPLER]["inputs"]
    assert inputs["guidance_scale"] == -1 and inputs["shift"] == -1 and inputs["guidance_mode"] == "auto"
    expected = core_image(
        comfy_host.models_dir, comfy_host.comfyui, variant, graph["4"]["inputs"]["prompt"], 31337, inputs["steps"]
    )
    assert tuple(expected.shape) == (1, HEIGHT, WIDTH, 3)
    core = expected[0].numpy()
    diff = float(np.abs(server.astype(np.float64) / 255 - core).max())
    differing = int((server != np.clip(core * 255, 0, 255).astype(np.uint8)).sum())  # as SaveImage quantizes
    print(  # noqa: T201
        f"\n{variant}: server PNG vs hunyuan_core float image max abs diff {diff:.5f} (= {diff * 255:.2f}/255); "
        f"{differing} of {server.size} 8-bit values differ from the core image quantized like SaveImage"
    )
    # SaveImage truncates 255 * x to uint8: up to 1/255 from that, the rest is float noise between two processes.
    assert diff <= 2 / 255, f"server vs core max abs diff {diff:.5f} (= {diff * 255:.2f}/255)"


# --- 4, 5: interrupt and progress over the websocket -------------------------------------------------------------


def test_progress_messages_for_the_sampler(comfy):
    steps = DISTILLED.steps  # -1 on the widget: the official 8
    result = comfy.run(workflow("distilled", seed=777)).raise_for_error()
    progress = progress_of(result, SAMPLER)
    assert progress, f"no progress event for the sampler; got {sorted({e['type'] for e in result.events})}"
    assert {m for _, m in progress} == {steps}
    values = [v for v, _ in progress]
    assert values == sorted(values) and values[-1] == steps
    assert len(values) == steps


def test_interrupt_during_sampling_then_next_prompt_succeeds(comfy):
    steps = 200
    sent: list[int] = []

    def interrupt_on_first_progress(event: dict) -> None:
        if not sent and event["type"] == "progress" and event["data"].get("node") == SAMPLER:
            sent.append(event["data"]["value"])
            comfy.interrupt()

    graph = workflow("base", seed=99, width=512, height=512, steps=steps)
    result = comfy.run(graph, timeout=300, on_event=interrupt_on_first_progress)
    assert sent, "the sampler sent no progress event"
    assert result.status == "interrupted", f"expected an interruption, got {result.status}: {result.error}"
    history = comfy.history(result.prompt_id)["status"]["messages"]
    (event,) = [data for name, data in history if name == "execution_interrupted"]
    assert event["node_id"] == SAMPLER and event["node_type"] == "HunyuanImage21Sampler"
    assert max(v for v, _ in progress_of(result, SAMPLER)) < steps, "the sampler ran to the end"
    assert SAVE not in result.outputs

    after = comfy.run(workflow("distilled", seed=100)).raise_for_error()
    assert image_of(comfy, after).shape == (HEIGHT, WIDTH, 3)


# --- 6: interop with ComfyUI's native latent and VAE nodes -------------------------------------------------------


def test_native_empty_latent_feeds_the_pack_sampler(comfy):
    """Native EmptyHunyuanImageLatent -> pack sampler gives the very image the pack's own empty latent gives."""
    graph = workflow("distilled", seed=2024)
    graph["15"] = {
        "class_type": "EmptyHunyuanImageLatent",
        "inputs": {"width": WIDTH, "height": HEIGHT, "batch_size": 1},
    }
    graph["16"] = copy.deepcopy(graph[SAMPLER])
    graph["16"]["inputs"]["latent"] = ["15", 0]
    graph["17"] = {"class_type": "HunyuanImage21VAEDecode", "inputs": {**graph[DECODE]["inputs"], "latent": ["16", 0]}}
    graph["18"] = {"class_type": "SaveImage", "inputs": {"images": ["17", 0], "filename_prefix": "hy21_tests/native"}}
    result = comfy.run(graph).raise_for_error()
    native, ours = image_of(comfy, result, "18"), image_of(comfy, result, SAVE)
    assert native.shape == (HEIGHT, WIDTH, 3)
    assert np.array_equal(native, ours)


@pytest.fixture(scope="module")
def full_size_vae(comfy_host):
    """A random VAE of the real HunyuanImage-2.1 size (~811 MB fp16): ComfyUI's VAELoader builds that size only.

    Decoder conv weights are scaled by 1/sqrt(fan-in) so activations keep their scale through the deep decoder and
    the decoded image has real contrast (plain small weights decode to a flat grey that any decoder matches). The
    encoder, which no decode touches, is all zeros (GroupNorm weights one): cheaper to make.
    """
    path = comfy_host.models_dir / "vae" / FULL_VAE_FILE
    gen = torch.Generator().manual_seed(2121)
    state = {}
    for name, shape in expected_shapes(STAGE1_VAE).items():
        if ".norm" in name and name.endswith(".weight"):
            state[name] = torch.ones(shape, dtype=torch.float16)
        elif not name.startswith("decoder."):
            state[name] = torch.zeros(shape, dtype=torch.float16)
        else:
            scale = 1 / math.sqrt(math.prod(shape[1:])) if len(shape) > 1 else 0.02
            state[name] = torch.randn(shape, generator=gen, dtype=torch.float16).mul_(scale)
    save_file(state, str(path))
    del state
    yield FULL_VAE_FILE
    path.unlink(missing_ok=True)


def test_pack_latent_decodes_with_native_vae_decode(comfy, comfy_host, full_size_vae):
    graph = workflow("distilled", seed=4242, width=128, height=128)  # a 4x4 latent
    del graph[DECODE], graph[SAVE]
    graph["20"] = {"class_type": "VAELoader", "inputs": {"vae_name": full_size_vae}}
    graph["21"] = {"class_type": "VAEDecode", "inputs": {"samples": [SAMPLER, 0], "vae": ["20", 0]}}
    graph["22"] = {"class_type": "PreviewImage", "inputs": {"images": ["21", 0]}}
    graph["23"] = {"class_type": "HunyuanImage21VAELoader", "inputs": {"vae_name": full_size_vae}}
    graph["24"] = {
        "class_type": "HunyuanImage21VAEDecode",
        "inputs": {"vae": ["23", 0], "latent": [SAMPLER, 0], "precision": "fp32", "batch_slice": 0, "tile_size": 0},
    }
    graph["25"] = {"class_type": "PreviewImage", "inputs": {"images": ["24", 0]}}
    result = comfy.run(graph, timeout=600).raise_for_error()
    assert "Missing VAE keys" not in comfy_host.log_text() and "Leftover VAE keys" not in comfy_host.log_text()
    native, ours = image_of(comfy, result, "22"), image_of(comfy, result, "25")
    assert native.shape == ours.shape == (128, 128, 3)
    assert ours.std() > 10, "the random VAE decodes to a nearly flat image: the comparison would prove little"
    diff = max_diff(native, ours)
    count = int((native != ours).sum())
    differing = count / native.size
    mean = float(np.abs(native.astype(np.float64) - ours).mean()) / 255
    print(  # noqa: T201
        f"\nnative VAEDecode vs pack VAE decode (fp32, full-size VAE): max abs diff {diff:.5f} ({diff * 255:.0f}/255), "
        f"{count} of {native.size} 8-bit values differ, mean abs diff {mean:.2e}"
    )
    # Both truncate 255 * x to uint8, so float differences far below 1/255 still flip a value at a boundary now and
    # then: one step at most, in a small fraction of the values. A real disagreement would show as more of either.
    assert diff <= 1 / 255, f"native vs pack decode differ by {diff:.5f} ({diff * 255:.1f}/255)"
    assert differing < 0.01, f"{differing:.2%} of the 8-bit values differ between native and pack decode"


# --- 7: bad input through the API, each followed by a good prompt ------------------------------------------------


def expect_next_prompt_runs(comfy, seed: int) -> None:
    result = comfy.run(workflow("distilled", seed=seed)).raise_for_error()
    executed = {e["data"]["node"] for e in result.events if e["type"] == "executing"}
    assert SAMPLER in executed
    assert image_of(comfy, result).shape == (HEIGHT, WIDTH, 3)


def test_vae_file_in_the_dit_loader_is_named_as_a_vae(comfy, comfy_host):
    misplaced = comfy_host.models_dir / "diffusion_models" / MISPLACED_VAE
    misplaced.write_bytes(model_path(comfy_host.models_dir, STAGE1_VAE_FILE).read_bytes())
    try:
        graph = workflow("distilled", seed=501)
        graph["1"]["inputs"]["dit_name"] = MISPLACED_VAE
        result = comfy.run(graph)
    finally:
        misplaced.unlink()
    assert result.status == "error"
    assert result.error["node_type"] == "HunyuanImage21DiTLoader"
    message = result.error["exception_message"]
    assert "is not a HunyuanImage-2.1 DiT: it appears to be a VAE" in message
    assert "models/diffusion_models" in message  # where the right file goes
    expect_next_prompt_runs(comfy, seed=502)


def test_missing_text_encoder_file_is_named(comfy):
    """A text-encoder file name that is not in models/text_encoders (a typo, a file not downloaded yet).

    ComfyUI 0.3.75 does not check V3 combo values against their options, so the loader's own validate_inputs
    refuses the prompt, naming the value, the folder and the fix.
    """
    missing = "qwen_2.5_vl_7b_missing.safetensors"
    graph = workflow("distilled", seed=551)
    graph["2"]["inputs"]["qwen"] = missing
    with pytest.raises(PromptRejectedError) as rejected:
        comfy.queue(graph)
    assert "2" in rejected.value.node_errors, rejected.value.describe()
    text = "\n".join(rejected.value.messages())
    assert f"'{missing}' is not in models/text_encoders" in text and "put the file there" in text, text
    expect_next_prompt_runs(comfy, seed=552)


def _long_prompt() -> str:
    return "cat" + " cat" * 4999  # " cat" is one Qwen token: 5000 tokens


@pytest.mark.parametrize(
    ("case", "node", "change", "patterns"),
    [
        pytest.param(
            "size", LATENT, {"width": 250}, [r"width 250 is not a multiple of 32", r"use 224 or 256"],
            id="size-not-multiple-of-32",
        ),
        pytest.param(
            "steps", SAMPLER, {"steps": 0}, [r"steps 0 is invalid: use at least 1 step, or -1"], id="zero-steps"
        ),
        pytest.param(
            "prompt", "4", {"prompt": _long_prompt()},
            [r"prompt: the prompt is (\d+) tokens long but HunyuanImage-2\.1 reads at most 1000", r"shorten it"],
            id="5000-token-prompt",
        ),
    ],
)  # fmt: skip
def test_bad_input_is_refused_then_the_next_prompt_runs(comfy, case, node, change, patterns):
    """A long prompt is refused before the run, under its input; a size or a step count that the widget's range
    allows but the model cannot run is refused as its node starts (ComfyUI checks only min / max itself)."""
    graph = workflow("distilled")
    graph[node]["inputs"].update(change)
    when, errors, text = refusal(comfy, graph)
    if case == "prompt":
        assert when == "queue" and set(errors) == {node} and set(errors[node]) == {"prompt"}, errors
    else:
        assert when == "run", text
    for pattern in patterns:
        found = re.search(pattern, text)
        assert found, f"{case}: {pattern!r} not in {text}"
        if found.groups():  # the token count: the 5000 words plus the template's closing token
            assert int(found.group(1)) >= 5000
    expect_next_prompt_runs(comfy, seed=700 + len(case))  # a fresh seed per case: it must really run


def test_interrupt_during_vae_decode_then_next_prompt_succeeds(comfy):
    """Cancel while the pack's VAE decodes a 1024x1024 latent (seconds on the CPU with the tiny VAE): the decode
    stops at its next layer instead of running to its end (tests/test_interrupt.py shows where it stops)."""
    graph = {
        "3": workflow("distilled")["3"],
        "5": {"class_type": "HunyuanImage21EmptyLatent",
              "inputs": {"size": "custom", "width": 1024, "height": 1024, "batch_size": 1}},
        "7": {"class_type": "HunyuanImage21VAEDecode",
              "inputs": {"vae": ["3", 0], "latent": ["5", 0], "precision": "fp32", "batch_slice": 0, "tile_size": 0}},
        "8": {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": "hy21_tests/cancel"}},
    }  # fmt: skip
    sent: list[float] = []

    def interrupt_when_decoding(event: dict) -> None:
        if not sent and event["type"] == "executing" and event["data"].get("node") == "7":
            sent.append(time.monotonic())
            comfy.interrupt()

    result = comfy.run(graph, timeout=300, on_event=interrupt_when_decoding)
    assert sent, "the decode never started"
    assert result.status == "interrupted", f"expected an interruption, got {result.status}: {result.error}"
    history = comfy.history(result.prompt_id)["status"]["messages"]
    (event,) = [data for name, data in history if name == "execution_interrupted"]
    assert event["node_type"] == "HunyuanImage21VAEDecode"
    assert "8" not in result.outputs

    after = comfy.run(workflow("distilled", seed=101)).raise_for_error()
    assert image_of(comfy, after).shape == (HEIGHT, WIDTH, 3)


# --- shared by the server tests of refusals (test_non_finite_api, test_file_errors_api) -------------------------


def saving_as(name: str, seed: int) -> dict:
    """The shipped distilled API twin at the small size, saving under ``hy21_tests/<name>``."""
    graph = workflow("distilled", seed=seed)
    graph[SAVE]["inputs"]["filename_prefix"] = f"hy21_tests/{name}"
    return graph


def refused(comfy, comfy_host, graph: dict, node_id: str, error: str) -> str:
    """Run ``graph``, which must fail at ``node_id`` (its own node type named) with ``HunyuanImage21.<error>`` (no
    filesystem path in the type), leave the message in /history and save no image; the message."""
    result = comfy.run(graph)
    assert result.status == "error", f"expected a failure at node {node_id}, got {result.status}"
    assert result.error["node_id"] == node_id and result.error["node_type"] == graph[node_id]["class_type"]
    shown = result.error["exception_type"]
    assert shown == f"HunyuanImage21.{error}", shown
    assert "/" not in shown and "\\" not in shown and str(comfy_host.base_dir) not in shown, shown
    message = result.error["exception_message"]
    entry = comfy.history(result.prompt_id)
    (recorded,) = [data for name, data in entry["status"]["messages"] if name == "execution_error"]
    assert recorded["exception_message"] == message, "/history lacks the message the websocket reported"
    assert recorded["exception_type"] == shown
    assert SAVE not in entry["outputs"]
    prefix = graph[SAVE]["inputs"]["filename_prefix"].split("/")[-1]
    saved = list((comfy_host.output_dir / "hy21_tests").glob(f"{prefix}*"))
    assert not saved, f"a failed prompt saved {saved}"
    return message
