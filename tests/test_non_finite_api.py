"""NaN and infinity through POST /prompt on the shared server: never a silent black image, always the fix.

Damaged model files are refused by their loader, naming the file and the tensor (``hunyuan_core.checkpoints.finite``);
a DiT whose finite weights overflow, a NaN latent and a VAE decode that overflows in fp16 stop the prompt where the
non-finite tensor is made, with the fix (``nodes/finite_checks.py``). Each failure leaves its message in /history,
saves no image, and the next valid prompt runs.

The bad files are copies of the tiny model set (scripts/hy21_host/tiny_models.py) with one tensor changed. Factors
found on the tiny models (CPU, seeds fixed): the distilled DiT's ``double_blocks.0.img_mlp.fc2.weight`` times 1e20
still samples, times 1e25 overflows bf16 at the first model call, so 1e30 is used (weights about 1e29, far below
bf16's 3.4e38); the VAE's ``decoder.conv_in.weight`` times 3000 still decodes the 2x2 N(0, 1) latent used here in
fp16, times 5000 overflows fp16 (65504) and ends as NaN after the next group norm (a 6x8 latent: between 1500 and
2000), so 1e5 is used (weights up to about 23000, still fp16 numbers in the file); fp32 and bf16 decode that file to
finite images. The decode-only graphs use that 2x2 latent (a 64x64 image): fp16 and bf16 convolutions are slow on
the CPU (about 12 s for a 6x8 latent, under 1 s for 2x2).
"""

from __future__ import annotations

import re

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_workflows_api import (
    DECODE,
    HEIGHT,
    LATENT,
    SAMPLER,
    SAVE,
    WIDTH,
    expect_next_prompt_runs,
    image_of,
    refused,
    saving_as,
)

from hunyuan_core.variants import DISTILLED, STAGE1_VAE_FILE
from hy21_host.tiny_models import model_path

pytestmark = pytest.mark.server

DIT_LOADER, VAE_LOADER, LOAD_LATENT = "1", "3", "30"
DIT_NAN_FILE = "hy21_test_dit_nan_weight.safetensors"
DIT_HUGE_FILE = "hy21_test_dit_huge_mlp_weights.safetensors"
VAE_NAN_FILE = "hy21_test_vae_nan_weight.safetensors"
VAE_FP16_FILE = "hy21_test_vae_overflows_in_fp16.safetensors"
NAN_LATENT, FINITE_LATENT = "hy21_test_nan.latent", "hy21_test_finite.latent"

DIT_NAN_TENSOR = "double_blocks.0.img_attn_proj.weight"
DIT_HUGE_TENSOR, DIT_HUGE_FACTOR = "double_blocks.0.img_mlp.fc2.weight", 1e30
VAE_NAN_TENSOR = "decoder.up.1.block.0.conv1.weight"
VAE_FP16_TENSOR, VAE_FP16_FACTOR = "decoder.conv_in.weight", 1e5
CELLS = (HEIGHT // 32, WIDTH // 32)  # the latent of a WIDTH x HEIGHT image
SMALL = (2, 2)  # the finite latent's cells: a 64x64 image

DECODE_NODE, SAMPLER_NODE = "HunyuanImage 2.1 VAE Decode", "HunyuanImage 2.1 Sampler"
DAMAGED = "holds NaN or infinite values: the file is damaged (a broken conversion or merge, or a corrupted copy)"
BLACK_LATENT = (
    "the latent holds NaN or infinite values, so its image would be black; it was made that way upstream (the "
    "sampler, a latent node or a loaded latent file): fix or replace the node that made it"
)


# --- files ------------------------------------------------------------------------------------------------------


def with_nan(state: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """``state`` with one element of tensor ``name`` set to NaN (the rest untouched)."""
    tensor = state[name].clone()
    tensor.view(-1)[tensor.numel() // 3] = float("nan")
    return {**state, name: tensor}


def scaled(state: dict[str, torch.Tensor], name: str, factor: float) -> dict[str, torch.Tensor]:
    """``state`` with tensor ``name`` times ``factor``, in its own dtype, and still finite."""
    tensor = (state[name].float() * factor).to(state[name].dtype)
    assert torch.isfinite(tensor).all(), f"{name} times {factor:g} is not finite in {tensor.dtype}"
    return {**state, name: tensor}


def noise(cells: tuple[int, int], seed: int) -> torch.Tensor:
    """A N(0, 1) stage-1 latent ``[1, 64, h, w]``."""
    return torch.randn(1, 64, *cells, generator=torch.Generator().manual_seed(seed))


def latent_file(samples: torch.Tensor) -> dict[str, torch.Tensor]:
    """ComfyUI's SaveLatent format; the version key makes LoadLatent take the values as they are (no 1/0.18215)."""
    return {"latent_tensor": samples.contiguous(), "latent_format_version_0": torch.tensor([])}


@pytest.fixture(scope="module")
def bad_files(comfy_host):
    """The damaged and overflowing model files and the two latent files, in the server's folders; removed after."""
    models = comfy_host.models_dir
    dit = load_file(str(model_path(models, DISTILLED.dit_file)))
    vae = load_file(str(model_path(models, STAGE1_VAE_FILE)))
    inputs = comfy_host.base_dir / "input"
    inputs.mkdir(exist_ok=True)
    files = {
        models / "diffusion_models" / DIT_NAN_FILE: with_nan(dit, DIT_NAN_TENSOR),
        models / "diffusion_models" / DIT_HUGE_FILE: scaled(dit, DIT_HUGE_TENSOR, DIT_HUGE_FACTOR),
        models / "vae" / VAE_NAN_FILE: with_nan(vae, VAE_NAN_TENSOR),
        models / "vae" / VAE_FP16_FILE: scaled(vae, VAE_FP16_TENSOR, VAE_FP16_FACTOR),
        inputs / FINITE_LATENT: latent_file(noise(SMALL, seed=8)),
        inputs / NAN_LATENT: with_nan(latent_file(noise(CELLS, seed=7)), "latent_tensor"),
    }
    for path, state in files.items():
        save_file(state, str(path))
    yield
    for path in files:
        path.unlink(missing_ok=True)


# --- graphs and asserts -----------------------------------------------------------------------------------------


def workflow(case: str, seed: int) -> dict:
    return saving_as(f"non_finite_{case}", seed)


def loaded_latent(graph: dict, latent: str, into: str) -> dict:
    """``graph`` with ComfyUI's LoadLatent reading ``latent`` from the input folder into node ``into``."""
    graph[LOAD_LATENT] = {"class_type": "LoadLatent", "inputs": {"latent": latent}}
    graph[into]["inputs"]["latent"] = [LOAD_LATENT, 0]
    return graph


def decode_only(case: str, vae_name: str, latent: str, precision: str) -> dict:
    """LoadLatent -> the pack's VAE Decode (file ``vae_name``, ``precision``) -> SaveImage: no DiT, no sampling."""
    graph = workflow(case, seed=0)
    graph = {node: graph[node] for node in (VAE_LOADER, DECODE, SAVE)}
    graph[VAE_LOADER]["inputs"]["vae_name"] = vae_name
    graph[DECODE]["inputs"]["precision"] = precision
    return loaded_latent(graph, latent, DECODE)


def assert_says(message: str, *fragments: str) -> None:
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


# --- damaged files: refused at load ----------------------------------------------------------------------------


def test_dit_with_a_nan_weight_is_refused_by_the_loader(comfy, comfy_host, bad_files):
    graph = workflow("dit_nan", seed=1201)
    graph[DIT_LOADER]["inputs"]["dit_name"] = DIT_NAN_FILE
    message = refused(comfy, comfy_host, graph, DIT_LOADER, "DiTCheckpointError")
    assert_says(message, f"{DIT_NAN_FILE}: tensor {DIT_NAN_TENSOR} {DAMAGED}; download it again")
    expect_next_prompt_runs(comfy, seed=1202)


def test_vae_with_a_nan_weight_is_refused_by_the_loader(comfy, comfy_host, bad_files):
    graph = workflow("vae_nan", seed=1211)
    graph[VAE_LOADER]["inputs"]["vae_name"] = VAE_NAN_FILE
    message = refused(comfy, comfy_host, graph, VAE_LOADER, "VAECheckpointError")
    assert_says(message, f"{VAE_NAN_FILE}: tensor {VAE_NAN_TENSOR} {DAMAGED}; download it again")
    expect_next_prompt_runs(comfy, seed=1212)


# --- finite weights that overflow: stopped at the step --------------------------------------------------------


def test_dit_output_overflowing_stops_the_sampler_at_the_step(comfy, comfy_host, bad_files):
    graph = workflow("dit_overflow", seed=1221)
    graph[DIT_LOADER]["inputs"]["dit_name"] = DIT_HUGE_FILE
    message = refused(comfy, comfy_host, graph, SAMPLER, "NonFiniteError")
    pattern = r"the DiT's output holds NaN or infinite values at step (\d+) of (\d+) \(sigma ([\d.]+)\): "
    step = re.search(pattern, message)
    assert step, message
    assert step.groups() == ("1", str(DISTILLED.steps), "1"), "the first call (sigma 1) of the 8 official steps"
    assert_says(
        message,
        "a LoRA or model patch too strong for this model (lower its strength or remove it), or a DiT file whose "
        "values are finite but wrong (download it again)",
    )
    assert "fp16" not in message, "the DiT computes in bf16: the fp16 fix does not apply"
    expect_next_prompt_runs(comfy, seed=1222)


def test_vae_decode_overflowing_in_fp16_names_the_precision_fix(comfy, comfy_host, bad_files):
    message = refused(
        comfy, comfy_host, decode_only("vae_fp16", VAE_FP16_FILE, FINITE_LATENT, "fp16"), DECODE, "NonFiniteError"
    )
    assert_says(
        message,
        f"{DECODE_NODE}: decoding gave NaN or infinite values: decoding in fp16 overflowed: set {DECODE_NODE}'s "
        "precision to bf16 or fp32",
    )
    for precision in ("fp32", "bf16"):  # the fix works on the same file and latent
        graph = decode_only(f"vae_{precision}", VAE_FP16_FILE, FINITE_LATENT, precision)
        image = image_of(comfy, comfy.run(graph).raise_for_error())
        assert image.shape == (32 * SMALL[0], 32 * SMALL[1], 3) and image.std() > 1, precision
    # the stock tiny VAE decodes that latent in fp16: the scaled layer, not fp16 on this machine, overflowed
    stock = decode_only("vae_stock_fp16", STAGE1_VAE_FILE.name, FINITE_LATENT, "fp16")
    assert image_of(comfy, comfy.run(stock).raise_for_error()).shape == (32 * SMALL[0], 32 * SMALL[1], 3)
    expect_next_prompt_runs(comfy, seed=1232)


# --- a NaN latent: stopped where it arrives ---------------------------------------------------------------------


def test_nan_latent_is_refused_by_the_vae_decode(comfy, comfy_host, bad_files):
    message = refused(
        comfy,
        comfy_host,
        decode_only("latent_decode", STAGE1_VAE_FILE.name, NAN_LATENT, "fp32"),
        DECODE,
        "NonFiniteError",
    )
    assert_says(message, f"{DECODE_NODE}: {BLACK_LATENT}")
    expect_next_prompt_runs(comfy, seed=1242)


def test_nan_latent_is_refused_by_the_sampler(comfy, comfy_host, bad_files):
    """Even at denoise 1 the input latent enters the first noisy latent (``sigma * noise + (1 - sigma) * latent``
    gives NaN for a NaN latent at sigma 1), so the sampler refuses it before sampling."""
    graph = loaded_latent(workflow("latent_sampler", seed=1251), NAN_LATENT, SAMPLER)
    del graph[LATENT]
    message = refused(comfy, comfy_host, graph, SAMPLER, "NonFiniteError")
    assert_says(message, f"{SAMPLER_NODE}: {BLACK_LATENT}")
    expect_next_prompt_runs(comfy, seed=1252)
