"""Unknown combo values are refused at POST /prompt, as newer ComfyUI servers do, on ComfyUI 0.3.75 too.

0.3.75 does not compare V3 combo values with their options; the pack's nodes do it in ``validate_inputs`` (which
newer servers leave those inputs to). Every non-file combo of every node is sent an unknown value through a real
server: the answer is 400 with node_errors for that node, and a message naming the input and every valid choice.
Then a prompt with valid non-default choices runs. Nothing here executes before the last test.
"""

from __future__ import annotations

import json

import pytest

from hunyuan_core.resolution import CUSTOM_SIZE, OFFICIAL_SIZES
from hunyuan_core.sampling import MODES, NOISE_MODES
from hunyuan_core.vae_common import PRECISIONS
from hunyuan_core.variants import STAGE1_VAE_FILE
from hy21_host import PromptRejectedError, repo_root

pytestmark = pytest.mark.server

UNKNOWN = "no_such_choice"
LOADER, LATENT, SAMPLER, DECODE, SAVE, STAGE1_PREVIEW, REFINER = "1", "5", "6", "7", "8", "8", "12"
ENCODE_NODES = {
    "20": {"class_type": "HunyuanImage21VAELoader", "inputs": {"vae_name": STAGE1_VAE_FILE.name}},
    "21": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
    "22": {
        "class_type": "HunyuanImage21VAEEncode",
        "inputs": {"vae": ["20", 0], "image": ["21", 0], "precision": "fp32"},
    },
    "23": {"class_type": "SaveLatent", "inputs": {"samples": ["22", 0], "filename_prefix": "hy21_tests/combo"}},
}

# (workflow, node, input, the valid choices in menu order): every combo of the pack that is not a file choice
CASES = [
    ("distilled", LOADER, "weight_dtype", ("auto", "bf16", "fp8_e4m3fn", "fp8_e4m3fn_fast")),
    ("distilled", LATENT, "size", (*(p.label for p in OFFICIAL_SIZES), CUSTOM_SIZE)),
    ("distilled", SAMPLER, "guidance_mode", ("auto", *MODES)),
    ("distilled", SAMPLER, "noise_mode", NOISE_MODES),
    ("distilled", DECODE, "precision", ("auto", *PRECISIONS)),
    ("encode", "22", "precision", tuple(PRECISIONS)),
    ("base_refiner", REFINER, "noise_mode", NOISE_MODES),
    ("base_refiner", REFINER, "vae_precision", ("auto", *PRECISIONS)),
]


def graph(name: str) -> dict:
    """A shipped API workflow, or the small encode graph (the shipped ones have no VAE Encode)."""
    if name == "encode":
        return json.loads(json.dumps(ENCODE_NODES))
    prompt = json.loads((repo_root() / f"workflows/api/hunyuanimage21_{name}_api.json").read_text())
    if name == "base_refiner":  # with a valid output left, ComfyUI would queue that part and only log the refusal
        del prompt[STAGE1_PREVIEW]
    return prompt


@pytest.mark.parametrize(("name", "node", "field", "choices"), CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_unknown_combo_value_is_refused_naming_input_and_choices(comfy, name, node, field, choices):
    prompt = graph(name)
    assert field in prompt[node]["inputs"], (node, field)
    prompt[node]["inputs"][field] = UNKNOWN
    with pytest.raises(PromptRejectedError) as rejected:
        comfy.queue(prompt)
    errors = rejected.value.node_errors
    assert set(errors) == {node}, rejected.value.describe()  # only the node with the bad value
    details = [err["details"] for err in errors[node]["errors"]]
    expected = f"{field} {UNKNOWN!r} is not one of the choices: {', '.join(choices)}"
    assert any(expected in d for d in details), details
    # ComfyUI lists the message under every input validate_inputs takes; the field's own entry is among them
    assert any(d.startswith(f"{field} - ") for d in details), details


@pytest.mark.parametrize(
    ("name", "node", "field", "folder"),
    [("encode", "20", "vae_name", "vae"), ("distilled", LOADER, "dit_name", "diffusion_models")],
)
def test_unknown_file_is_named_with_its_input_and_folder(comfy, name, node, field, folder):
    prompt = graph(name)
    prompt[node]["inputs"][field] = "missing.safetensors"
    with pytest.raises(PromptRejectedError) as rejected:
        comfy.queue(prompt)
    details = [err["details"] for err in rejected.value.node_errors[node]["errors"]]
    assert any(f"{field}: 'missing.safetensors' is not in models/{folder} (found: " in d for d in details), details


def test_several_bad_values_are_all_named(comfy):
    prompt = graph("distilled")
    prompt[SAMPLER]["inputs"].update(guidance_mode="mix", noise_mode="numpy", steps=0)
    with pytest.raises(PromptRejectedError) as rejected:
        comfy.queue(prompt)
    text = "\n".join(rejected.value.messages())
    for fragment in ("steps 0 is invalid", "guidance_mode 'mix' is not one of", "noise_mode 'numpy' is not one of"):
        assert fragment in text, text


def test_valid_choices_pass_and_the_prompt_runs(comfy):
    """After the refusals the same server runs a prompt whose combos hold valid, non-default choices."""
    prompt = graph("distilled")
    prompt[LATENT]["inputs"].update(size=CUSTOM_SIZE, width=64, height=64)
    prompt[SAMPLER]["inputs"].update(guidance_mode=MODES[-1], noise_mode=NOISE_MODES[-1], steps=1, seed=7)
    prompt[DECODE]["inputs"]["precision"] = "fp32"
    prompt[LOADER]["inputs"]["weight_dtype"] = "bf16"
    prompt[SAVE]["inputs"]["filename_prefix"] = "hy21_tests/combo_valid"
    result = comfy.run(prompt).raise_for_error()
    (image,) = result.outputs[SAVE]["images"]
    assert image["filename"].startswith("combo_valid")
