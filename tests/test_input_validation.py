"""Bad input values are refused with one clear message, attached to the input it concerns, through a real server.

ComfyUI checks an input before the run (``POST /prompt`` answers 400 with the message under that input) unless the
node's ``validate_inputs`` names it; the pack's nodes name at most one input each (a file choice, free text, the
prompt, a lone combo), so ComfyUI's own checks hold for every number (min / max), every API type and every
required input, and no message is repeated under inputs it does not concern. Combos that only the pack checks on
ComfyUI 0.3.75 (which compares no V3 combo with its options) are refused as the node starts, with the same message;
newer servers refuse them at ``POST /prompt`` themselves. Either way the message names the input and its choices,
and the next valid prompt runs.
"""

from __future__ import annotations

import json

import pytest
from helpers import refusal

from hunyuan_core.resolution import CUSTOM_SIZE, OFFICIAL_SIZES
from hunyuan_core.sampling import MODES, NOISE_MODES
from hunyuan_core.vae_common import PRECISIONS
from hunyuan_core.variants import STAGE1_VAE_FILE
from hy21_host import repo_root

pytestmark = pytest.mark.server

UNKNOWN = "no_such_choice"
LOADER, TEXT_ENCODERS, ENCODE, LATENT, SAMPLER, DECODE, SAVE = "1", "2", "4", "5", "6", "7", "8"
STAGE1_PREVIEW, REFINER = "8", "12"
ENCODE_NODES = {
    "20": {"class_type": "HunyuanImage21VAELoader", "inputs": {"vae_name": STAGE1_VAE_FILE.name}},
    "21": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
    "22": {
        "class_type": "HunyuanImage21VAEEncode",
        "inputs": {"vae": ["20", 0], "image": ["21", 0], "precision": "fp32"},
    },
    "23": {"class_type": "SaveLatent", "inputs": {"samples": ["22", 0], "filename_prefix": "hy21_tests/combo"}},
}


def graph(name: str) -> dict:
    """A shipped API workflow at a small size, or the small encode graph (the shipped ones have no VAE Encode)."""
    if name == "encode":
        return json.loads(json.dumps(ENCODE_NODES))
    prompt = json.loads((repo_root() / f"workflows/api/hunyuanimage21_{name}_api.json").read_text())
    prompt[LATENT]["inputs"].update(size=CUSTOM_SIZE, width=64, height=64)
    if name == "base_refiner":  # with a valid output left, ComfyUI would queue that part and only log the refusal
        del prompt[STAGE1_PREVIEW]
        prompt[SAMPLER]["inputs"]["steps"] = 2
    return prompt


def assert_only_input(errors: dict, node: str, field: str) -> list[str]:
    """The refusal concerns exactly one node and one input: its messages."""
    assert set(errors) == {node}, errors
    assert set(errors[node]) == {field}, errors  # never repeated under an input it does not concern
    return errors[node][field]


# (workflow, node, input, the valid choices in menu order): every combo of the pack that is not a file choice
COMBOS = [
    ("distilled", LOADER, "weight_dtype", ("auto", "bf16", "fp16", "fp8_e4m3fn", "fp8_e4m3fn_fast")),
    ("distilled", TEXT_ENCODERS, "qwen_weight_dtype", ("auto", "fp8_e4m3fn")),
    ("distilled", LATENT, "size", (*(p.label for p in OFFICIAL_SIZES), CUSTOM_SIZE)),
    ("distilled", SAMPLER, "guidance_mode", ("auto", *MODES)),
    ("distilled", SAMPLER, "noise_mode", NOISE_MODES),
    ("distilled", DECODE, "precision", ("auto", *PRECISIONS)),
    ("encode", "22", "precision", tuple(PRECISIONS)),
    ("base_refiner", REFINER, "noise_mode", NOISE_MODES),
    ("base_refiner", REFINER, "vae_precision", ("auto", *PRECISIONS)),
]


@pytest.mark.parametrize(("name", "node", "field", "choices"), COMBOS, ids=[f"{c[0]}-{c[2]}" for c in COMBOS])
def test_unknown_combo_value_is_refused_naming_input_and_choices(comfy, name, node, field, choices):
    prompt = graph(name)
    assert field in prompt[node]["inputs"], (node, field)
    prompt[node]["inputs"][field] = UNKNOWN
    when, errors, text = refusal(comfy, prompt)
    pack = f"{field} {UNKNOWN!r} is not one of the choices: {', '.join(choices)}"
    if when == "queue":
        (message,) = assert_only_input(errors, node, field)
        assert pack in message or ("Value not in list" in message and UNKNOWN in message), message
    else:  # ComfyUI 0.3.75: the node refuses as it starts
        assert pack in text, text


@pytest.mark.parametrize(
    ("name", "node", "field", "folder"),
    [("encode", "20", "vae_name", "vae"), ("distilled", LOADER, "dit_name", "diffusion_models"),
     ("distilled", TEXT_ENCODERS, "qwen", "text_encoders")],
)  # fmt: skip
def test_unknown_file_is_named_once_with_its_input_and_folder(comfy, name, node, field, folder):
    prompt = graph(name)
    prompt[node]["inputs"][field] = "missing.safetensors"
    when, errors, text = refusal(comfy, prompt)
    assert when == "queue", text
    (message,) = assert_only_input(errors, node, field)
    assert f"{field}: 'missing.safetensors' is not in models/{folder} (found: " in message, message


# (workflow, node, input, a value beyond the widget's range, the limit ComfyUI names)
OUT_OF_RANGE = [
    ("distilled", SAMPLER, "guidance_scale", 100.0, "bigger than max of 30"),
    ("distilled", SAMPLER, "shift", 1000.0, "bigger than max of 100"),
    ("distilled", SAMPLER, "steps", 3000, "bigger than max of 1000"),
    ("distilled", SAMPLER, "denoise", 0.0, "smaller than min of 0.01"),
    ("distilled", LATENT, "batch_size", 0, "smaller than min of 1"),
    ("base_refiner", REFINER, "steps", 500, "bigger than max of"),
    ("base_refiner", REFINER, "guidance_scale", 250.0, "bigger than max of 30"),
    ("base_refiner", REFINER, "condition_strength", 2.0, "bigger than max of 1"),
]


@pytest.mark.parametrize(("name", "node", "field", "value", "limit"), OUT_OF_RANGE, ids=[c[2] for c in OUT_OF_RANGE])
def test_out_of_range_number_is_refused_under_its_own_input(comfy, name, node, field, value, limit):
    prompt = graph(name)
    prompt[node]["inputs"][field] = value
    when, errors, text = refusal(comfy, prompt)
    assert when == "queue", text
    (message,) = assert_only_input(errors, node, field)
    assert limit in message, message


def test_api_type_error_gets_comfyuis_message_for_that_input(comfy):
    prompt = graph("distilled")
    prompt[LATENT]["inputs"]["width"] = "abc"
    when, errors, text = refusal(comfy, prompt)
    assert when == "queue", text
    (message,) = assert_only_input(errors, LATENT, "width")
    assert "Failed to convert an input value to a INT value" in message and "abc" in message, message
    assert "not supported between instances" not in text


def test_missing_required_input_is_named(comfy):
    prompt = graph("distilled")
    del prompt[ENCODE]["inputs"]["prompt"]
    when, errors, text = refusal(comfy, prompt)
    assert when == "queue", text
    (message,) = assert_only_input(errors, ENCODE, "prompt")
    assert "Required input is missing" in message, message
    assert "validate_inputs()" not in text


def test_a_value_inside_the_range_that_cannot_run_names_its_input_and_the_fix(comfy):
    prompt = graph("distilled")
    prompt[SAMPLER]["inputs"]["steps"] = 0
    when, _, text = refusal(comfy, prompt)
    assert when == "run", text
    assert "steps 0 is invalid: use at least 1 step, or -1 for the model's official value" in text, text


def test_several_bad_values_are_all_named(comfy):
    prompt = graph("distilled")
    prompt[SAMPLER]["inputs"].update(guidance_mode="mix", noise_mode="numpy", steps=0)
    when, errors, text = refusal(comfy, prompt)
    if when == "queue":  # a newer server: the combos under their inputs, before steps is looked at
        assert set(errors[SAMPLER]) == {"guidance_mode", "noise_mode"}, errors
    else:
        for fragment in ("steps 0 is invalid", "guidance_mode 'mix' is not one of", "noise_mode 'numpy' is not one of"):
            assert fragment in text, text


def test_valid_choices_pass_and_the_prompt_runs(comfy):
    """After the refusals the same server runs a prompt whose combos hold valid, non-default choices."""
    prompt = graph("distilled")
    prompt[SAMPLER]["inputs"].update(guidance_mode=MODES[-1], noise_mode=NOISE_MODES[-1], steps=1, seed=7)
    prompt[DECODE]["inputs"]["precision"] = "fp32"
    prompt[LOADER]["inputs"]["weight_dtype"] = "bf16"
    prompt[SAVE]["inputs"]["filename_prefix"] = "hy21_tests/combo_valid"
    result = comfy.run(prompt).raise_for_error()
    (image,) = result.outputs[SAVE]["images"]
    assert image["filename"].startswith("combo_valid")


def test_glyph_text_beyond_the_glyph_encoders_limit_is_refused_with_its_count(comfy, comfy_host):
    """20,000 characters of glyph text used to run, cut to 128 ByT5 tokens, and land whole in the log."""
    prompt = graph("distilled")
    prompt[ENCODE]["inputs"]["glyph_text"] = "HUNYUAN " * 2500
    start = len(comfy_host.log_text())
    when, _, text = refusal(comfy, prompt)
    assert when == "run", text
    assert "glyph_text: the text to render (1 span(s), 19999 characters) is 20009 ByT5 tokens long" in text, (
        text
    )  # line stripped
    assert "reads at most 128: shorten it" in text, text
    assert "HUNYUAN " * 100 not in comfy_host.log_text()[start:]  # never logged whole
