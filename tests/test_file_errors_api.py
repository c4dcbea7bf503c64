"""Model files that are not what their loader expects, through POST /prompt on the shared server: one vocabulary.

Each refusal names the file, says what it appears to be (``hunyuan_core.checkpoints.identify``) or what is wrong with
it (``hunyuan_core.checkpoints.files``: empty, corrupt, a pickle that holds code), and says what to do; the error
type shows as ``HunyuanImage21.<ErrorClass>``, never as the pack's install path (``checkpoints.errors``); nothing is
saved, and the next valid prompt runs. The files go into the host's models folders for this module only and are
written from the tiny model set (scripts/hy21_host/tiny_models.py) or, for the look-alikes, from the tests' own
writers (an SDXL checkpoint's key layout, an sd-scripts LoRA), so every case costs a few kilobytes.

The last case is the other side of the pickle rule: the official VAE layout in torch's old (pre-zip) pickle format
is plain data, so it loads, and renders the image the shipped safetensors VAE renders.
"""

from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from test_lora_api import BLOCK_LINEARS, RunsCodeWhenUnpickled, kohya, kohya_lora
from test_vae_checkpoint import decoder_only, full_sdxl_checkpoint
from test_workflows_api import SAMPLER, expect_next_prompt_runs, image_of, refused, saving_as
from vae_files import official_ckpt

from hunyuan_core.variants import GLYPH_FILE, STAGE1_VAE_FILE
from hy21_host.tiny_models import model_path

pytestmark = pytest.mark.server

DIT_LOADER, TEXT_LOADER, VAE_LOADER = "1", "2", "3"

SDXL_FILE = "hy21_test_sdxl_full_checkpoint.safetensors"
DECODER_FILE = "hy21_test_vae_decoder_only.safetensors"
LORA_FILE = "hy21_test_lora_in_diffusion_models.safetensors"
PICKLE_FILE = "hy21_test_vae_with_code.pt"
EMPTY_FILE = "hy21_test_vae_zero_bytes.safetensors"
CORRUPT_FILE = "hy21_test_byt5_corrupt_header.safetensors"
LEGACY_FILE = "hy21_test_vae_torch_legacy_format.pt"

NOT_THE_VAE = "is not a HunyuanImage-2.1 stage-1 VAE: it appears to be"
VAE_EXPECTED = (
    "Expected the HunyuanImage-2.1 stage-1 VAE (64 latent channels, 32x): the official vae/vae_2_1/pytorch_model.ckpt, "
    "Comfy-Org's hunyuan_image_2.1_vae_fp16.safetensors or a diffusers AutoencoderKLHunyuanImage."
)
DIT_EXPECTED = (
    "Expected a HunyuanImage-2.1 diffusion model (base, distilled or refiner, e.g. hunyuanimage2.1_bf16.safetensors "
    "or hunyuanimage2.1_refiner_bf16.safetensors) in models/diffusion_models."
)
READ_AS_VAE = "as a HunyuanImage-2.1 stage-1 VAE: "


# --- files ------------------------------------------------------------------------------------------------------


def corrupt_header(data: bytes) -> bytes:
    """A safetensors file whose 8-byte header length is intact but whose JSON header starts with garbage, as a bad
    sector or a botched copy leaves it."""
    (length,) = struct.unpack("<Q", data[:8])
    garbage = bytes((0xDE, 0xAD, 0xBE, 0xEF)) * 16
    assert length > len(garbage)
    return data[:8] + garbage + data[8 + len(garbage) :]


@pytest.fixture(scope="module")
def files(comfy_host, tmp_path_factory):
    """The refused files and the legacy-format VAE in the server's models folders, removed afterwards; the path of
    the marker file that unpickling the code-carrying pickle would create."""
    models = comfy_host.models_dir
    vae = load_file(str(model_path(models, STAGE1_VAE_FILE)))
    official = official_ckpt({name: tensor.float() for name, tensor in vae.items()})  # Tencent's .ckpt is fp32
    markers = tmp_path_factory.mktemp("file_error_markers")
    marker = markers / "served_vae_pickle_ran_code"
    safetensors = {
        models / "vae" / SDXL_FILE: full_sdxl_checkpoint(),
        models / "vae" / DECODER_FILE: decoder_only(vae),
        models / "diffusion_models" / LORA_FILE: kohya_lora([(kohya(n), r, c) for n, r, c in BLOCK_LINEARS], seed=41),
    }
    for path, state in safetensors.items():
        save_file(state, str(path))
    with_code, legacy, empty = models / "vae" / PICKLE_FILE, models / "vae" / LEGACY_FILE, models / "vae" / EMPTY_FILE
    # real VAE tensors in the official layout, plus one object: only the object can be the reason for a refusal
    payload = {"state_dict": {**official["state_dict"], "payload": RunsCodeWhenUnpickled(marker)}}
    torch.save(payload, with_code)
    torch.save(official, legacy, _use_new_zipfile_serialization=False)
    empty.write_bytes(b"")
    corrupt = models / "text_encoders" / CORRUPT_FILE
    corrupt.write_bytes(corrupt_header(model_path(models, GLYPH_FILE).read_bytes()))
    written = [*safetensors, with_code, legacy, empty, corrupt]
    # the payload is real: the same pickle, loaded without weights_only, creates its marker
    control_marker = markers / "control_pickle_ran_code"
    control = markers / "control.pt"
    torch.save({"payload": RunsCodeWhenUnpickled(control_marker)}, control)
    torch.load(control, weights_only=False)["payload"].close()
    assert control_marker.exists(), "the pickle's payload does not run; the refusal test would prove nothing"
    assert not zipfile.is_zipfile(legacy), "torch wrote its zip format: the legacy-format case would prove nothing"
    yield marker
    for path in written:
        path.unlink(missing_ok=True)


# --- graphs and asserts -----------------------------------------------------------------------------------------


def workflow(case: str, seed: int) -> dict:
    return saving_as(f"file_errors_{case}", seed)


@dataclass(frozen=True)
class Case:
    """One refused file: the loader node and input it is picked in, the error class, the exact fragments."""

    node: str
    input: str
    file: str
    error: str
    says: tuple[str, ...]


CASES = {
    "full_sdxl_checkpoint_as_vae": Case(
        VAE_LOADER, "vae_name", SDXL_FILE, "VAECheckpointError",
        (f"{SDXL_FILE} {NOT_THE_VAE} a full SDXL checkpoint (diffusion model, text encoder and VAE in one file; it "
         f"belongs in models/checkpoints, for a checkpoint loader). {VAE_EXPECTED}",),
    ),
    "decoder_only_vae": Case(
        VAE_LOADER, "vae_name", DECODER_FILE, "VAECheckpointError",
        (f"{DECODER_FILE} {NOT_THE_VAE} a VAE decoder alone (no encoder weights; a decode-only export): pick the "
         f"full VAE file. {VAE_EXPECTED}",),
    ),
    "lora_as_dit": Case(
        DIT_LOADER, "dit_name", LORA_FILE, "DiTCheckpointError",
        (f"{LORA_FILE} is not a HunyuanImage-2.1 DiT: it appears to be a LoRA (changes to a model, not a model): put "
         f"it in models/loras and apply it with a LoRA loader. {DIT_EXPECTED}",),
    ),
    "pickle_with_code_as_vae": Case(
        VAE_LOADER, "vae_name", PICKLE_FILE, "VAECheckpointError",
        (f"cannot read {PICKLE_FILE} {READ_AS_VAE}{PICKLE_FILE} is a pickle that holds Python objects besides "
         "tensors; it was not opened, since unpickling such objects can run code: use the .safetensors release of "
         "this file",),
    ),
    "zero_byte_vae": Case(
        VAE_LOADER, "vae_name", EMPTY_FILE, "VAECheckpointError",
        (f"cannot read {EMPTY_FILE} {READ_AS_VAE}{EMPTY_FILE} is empty or truncated (0 bytes; an interrupted download "
         "or copy): download it again",),
    ),
    "corrupt_header_glyph_encoder": Case(
        TEXT_LOADER, "byt5", CORRUPT_FILE, "TextEncoderError",
        (f"cannot read {CORRUPT_FILE} as the ByT5 glyph encoder: {CORRUPT_FILE} has a corrupt safetensors header (",
         "): the file is damaged; download it again"),
    ),
}  # fmt: skip


# --- refused files ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_wrong_file_is_named_with_what_it_is_and_what_to_do(comfy, comfy_host, files, name):
    case = CASES[name]
    seed = 1300 + 10 * list(CASES).index(name)
    graph = workflow(name, seed=seed)
    graph[case.node]["inputs"][case.input] = case.file
    message = refused(comfy, comfy_host, graph, case.node, case.error)
    assert case.file in message
    for fragment in case.says:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    if name == "pickle_with_code_as_vae":
        assert not files.exists(), "loading the VAE pickle ran its code"
        assert "weights_only=False" not in message, "the message points at the unsafe way to open the file"
    expect_next_prompt_runs(comfy, seed=seed + 1)


# --- torch's legacy pickle format: plain data, so it loads ----------------------------------------------------------


def test_vae_in_torch_legacy_pickle_format_loads_and_renders_the_same_image(comfy, comfy_host, files):
    normal = image_of(comfy, comfy.run(workflow("legacy_reference", seed=1390)).raise_for_error())
    graph = workflow("legacy_pt", seed=1390)
    graph[VAE_LOADER]["inputs"]["vae_name"] = LEGACY_FILE
    result = comfy.run(graph).raise_for_error()
    executed = {e["data"]["node"] for e in result.events if e["type"] == "executing"}
    assert VAE_LOADER in executed, "the VAE loader was served from the cache: the legacy file was not read"
    assert SAMPLER not in executed, "the same seed should reuse the sampled latent, leaving the VAE the only change"
    assert f"loaded {LEGACY_FILE}: HunyuanImage-2.1 stage-1 VAE, original layout (prefix 'vae.'), float32 weights" in (
        comfy_host.log_text()
    )
    assert np.array_equal(image_of(comfy, result), normal), "the legacy-format VAE renders another image"
