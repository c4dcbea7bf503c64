"""LoRAs on the pack's DiT through POST /prompt on the shared server (tiny model set, shipped distilled workflow).

ComfyUI's own ``LoraLoaderModelOnly`` and the pack's ``HunyuanImage21LoraLoader`` go between the DiT loader and the
sampler: the LoRA changes the image, the graph without it afterwards renders the original image bit for bit
(ComfyUI's unpatch), and prompts that differ only in strength reuse the loaded DiT (the loader is cached and the
file is not read again). The pack's node logs what matched and refuses, with a message naming the problem, a LoRA for
another model family, a damaged LoRA, a truncated file and a pickle that would run code; the server serves on.

The LoRA files are written here in the key layouts trainers use (sd-scripts' ``lora_unet_`` names with ``.alpha``,
diffusers' PEFT ``transformer.`` names with ``lora_A`` / ``lora_B``), at the tiny DiT's widths (hidden 64).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import truncate
from safetensors.torch import save_file
from test_native_nodes_api import wait_for_log
from test_workflows_api import HEIGHT, WIDTH, image_of

from hunyuan_core.variants import DISTILLED
from hy21_host import repo_root

pytestmark = pytest.mark.server

LOADER, SAMPLER, LATENT, SAVE, LORA = "1", "6", "5", "8", "20"
NATIVE, PACK = "LoraLoaderModelOnly", "HunyuanImage21LoraLoader"
HIDDEN, MLP, RANK = 64, 256, 4  # the tiny DiT's width and MLP width (scripts/hy21_host/tiny_models.py)
DIT_READ = re.compile(rf"loaded {re.escape(DISTILLED.dit_file.name)}: ")  # load_dit's line, once per file read

KOHYA_FILE = "hy21_test_lora_kohya.safetensors"
DIFFUSERS_FILE = "hy21_test_lora_diffusers_peft.safetensors"

# (module, out, in) of every Linear of the tiny DiT's double and single block, official names: what sd-scripts'
# HunyuanImage-2.1 LoRAs adapt (``lora_unet_`` + the path with ``_`` for ``.``)
BLOCK_LINEARS = (
    ("double_blocks.0.img_mod.linear", 6 * HIDDEN, HIDDEN), ("double_blocks.0.img_attn_qkv", 3 * HIDDEN, HIDDEN),
    ("double_blocks.0.img_attn_proj", HIDDEN, HIDDEN), ("double_blocks.0.img_mlp.fc1", MLP, HIDDEN),
    ("double_blocks.0.img_mlp.fc2", HIDDEN, MLP), ("double_blocks.0.txt_mod.linear", 6 * HIDDEN, HIDDEN),
    ("double_blocks.0.txt_attn_qkv", 3 * HIDDEN, HIDDEN), ("double_blocks.0.txt_attn_proj", HIDDEN, HIDDEN),
    ("double_blocks.0.txt_mlp.fc1", MLP, HIDDEN), ("double_blocks.0.txt_mlp.fc2", HIDDEN, MLP),
    ("single_blocks.0.linear1", 3 * HIDDEN + MLP, HIDDEN), ("single_blocks.0.linear2", HIDDEN, HIDDEN + MLP),
    ("single_blocks.0.modulation.linear", 3 * HIDDEN, HIDDEN),
)  # fmt: skip
# diffusers' names for the same weights, q / k / v (and a single block's MLP input) as separate layers
DIFFUSERS_LINEARS = (
    ("transformer_blocks.0.norm1.linear", 6 * HIDDEN, HIDDEN), ("transformer_blocks.0.attn.to_q", HIDDEN, HIDDEN),
    ("transformer_blocks.0.attn.to_k", HIDDEN, HIDDEN), ("transformer_blocks.0.attn.to_v", HIDDEN, HIDDEN),
    ("transformer_blocks.0.attn.to_out.0", HIDDEN, HIDDEN), ("transformer_blocks.0.ff.net.0.proj", MLP, HIDDEN),
    ("transformer_blocks.0.ff.net.2", HIDDEN, MLP), ("transformer_blocks.0.norm1_context.linear", 6 * HIDDEN, HIDDEN),
    ("transformer_blocks.0.attn.add_q_proj", HIDDEN, HIDDEN), ("transformer_blocks.0.attn.add_k_proj", HIDDEN, HIDDEN),
    ("transformer_blocks.0.attn.add_v_proj", HIDDEN, HIDDEN), ("transformer_blocks.0.attn.to_add_out", HIDDEN, HIDDEN),
    ("transformer_blocks.0.ff_context.net.0.proj", MLP, HIDDEN), ("transformer_blocks.0.ff_context.net.2", HIDDEN, MLP),
    ("single_transformer_blocks.0.attn.to_q", HIDDEN, HIDDEN),
    ("single_transformer_blocks.0.attn.to_k", HIDDEN, HIDDEN),
    ("single_transformer_blocks.0.attn.to_v", HIDDEN, HIDDEN), ("single_transformer_blocks.0.proj_mlp", MLP, HIDDEN),
    ("single_transformer_blocks.0.proj_out", HIDDEN, HIDDEN + MLP),
    ("single_transformer_blocks.0.norm.linear", 3 * HIDDEN, HIDDEN),
)  # fmt: skip


# --- LoRA files in the trainers' layouts -----------------------------------------------------------------------


def kohya(name: str) -> str:
    """sd-scripts' module name for an official module path."""
    return "lora_unet_" + name.replace(".", "_")


def kohya_lora(
    modules, seed: int, rank: int = RANK, scale: float = 0.2, dtype=torch.bfloat16, up_rank: int | None = None
) -> dict[str, torch.Tensor]:
    """sd-scripts' layout: ``<name>.lora_down.weight`` (rank, in), ``<name>.lora_up.weight`` (out, rank),
    ``<name>.alpha`` (a scalar); ``modules`` are (kohya name, out, in); ``up_rank`` makes the up weights disagree."""
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, rows, cols in modules:
        tensors[f"{name}.lora_down.weight"] = (torch.randn(rank, cols, generator=gen) * scale).to(dtype)
        tensors[f"{name}.lora_up.weight"] = (torch.randn(rows, up_rank or rank, generator=gen) * scale).to(dtype)
        tensors[f"{name}.alpha"] = torch.tensor(float(rank), dtype=dtype)
    return tensors


def peft_lora(modules, seed: int, prefix: str = "transformer.", scale: float = 0.2) -> dict[str, torch.Tensor]:
    """diffusers' PEFT layout: ``transformer.<name>.lora_A.weight`` (rank, in) and ``lora_B.weight`` (out, rank),
    no alpha (scale 1)."""
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, rows, cols in modules:
        tensors[f"{prefix}{name}.lora_A.weight"] = (torch.randn(RANK, cols, generator=gen) * scale).to(torch.bfloat16)
        tensors[f"{prefix}{name}.lora_B.weight"] = (torch.randn(rows, RANK, generator=gen) * scale).to(torch.bfloat16)
    return tensors


def flux_lora() -> dict[str, torch.Tensor]:
    """An sd-scripts Flux.1 LoRA: the same block names as HunyuanImage-2.1, 3072 wide (MLP 12288), two blocks each."""
    width, mlp = 3072, 12288
    modules = []
    for i in range(2):
        modules += [
            (f"lora_unet_double_blocks_{i}_img_attn_qkv", 3 * width, width),
            (f"lora_unet_double_blocks_{i}_img_attn_proj", width, width),
            (f"lora_unet_double_blocks_{i}_img_mlp_0", mlp, width),
            (f"lora_unet_double_blocks_{i}_img_mlp_2", width, mlp),
            (f"lora_unet_double_blocks_{i}_img_mod_lin", 6 * width, width),
            (f"lora_unet_double_blocks_{i}_txt_attn_qkv", 3 * width, width),
            (f"lora_unet_single_blocks_{i}_linear1", 3 * width + mlp, width),
            (f"lora_unet_single_blocks_{i}_linear2", width, width + mlp),
            (f"lora_unet_single_blocks_{i}_modulation_lin", 3 * width, width),
        ]  # fmt: skip
    return kohya_lora(modules, seed=31, rank=2, scale=0.01)


def sdxl_lora() -> dict[str, torch.Tensor]:
    """An sd-scripts SDXL LoRA: U-Net attention (640 / 1280 wide) and both text encoders (768, 1280)."""
    modules = [
        ("lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q", 640, 640),
        ("lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k", 640, 2048),
        ("lora_unet_middle_block_1_transformer_blocks_0_attn1_to_out_0", 1280, 1280),
        ("lora_unet_output_blocks_0_1_transformer_blocks_0_ff_net_0_proj", 10240, 1280),
        ("lora_te1_text_model_encoder_layers_0_self_attn_q_proj", 768, 768),
        ("lora_te2_text_model_encoder_layers_0_mlp_fc1", 5120, 1280),
    ]
    return kohya_lora(modules, seed=32, rank=2, scale=0.01, dtype=torch.float16)


class RunsCodeWhenUnpickled:
    """Pickles as a call of ``open(marker, "w")``: an unsafe ``torch.load`` creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def malicious_pickle(path: Path, marker: Path) -> Path:
    """A ``.pt`` LoRA whose real-looking tensors come with an object that runs code when unpickled unsafely."""
    tensors = kohya_lora([(kohya("double_blocks.0.img_attn_qkv"), 3 * HIDDEN, HIDDEN)], seed=33)
    torch.save({"state_dict": {**tensors, "trainer": RunsCodeWhenUnpickled(marker)}}, path)
    return path


@pytest.fixture(scope="module")
def loras(comfy_host, tmp_path_factory) -> dict[str, Path]:
    """The LoRA files in the server's models/loras: two valid ones and the refused ones; removed afterwards."""
    folder = comfy_host.models_dir / "loras"
    folder.mkdir(exist_ok=True)
    markers = tmp_path_factory.mktemp("lora_markers")
    blocks = [(kohya(name), rows, cols) for name, rows, cols in BLOCK_LINEARS]
    qkv, proj = kohya("double_blocks.0.img_attn_qkv"), kohya("double_blocks.0.img_attn_proj")
    tensors = {
        "kohya": (KOHYA_FILE, kohya_lora(blocks, seed=21)),
        "diffusers": (DIFFUSERS_FILE, peft_lora(DIFFUSERS_LINEARS, seed=22)),
        "flux": ("hy21_test_flux1_dev_lora_kohya.safetensors", flux_lora()),
        "sdxl": ("hy21_test_sdxl_lora_kohya.safetensors", sdxl_lora()),
        "ranks": ("hy21_test_lora_ranks_disagree.safetensors",
                  {**kohya_lora(blocks[2:], seed=23), **kohya_lora([(qkv, 3 * HIDDEN, HIDDEN)], seed=24, up_rank=8)}),
        "rows": ("hy21_test_lora_wrong_rows.safetensors",
                 {**kohya_lora(blocks[2:], seed=25), **kohya_lora([(qkv, 2 * HIDDEN, HIDDEN)], seed=26)}),
        "narrow": ("hy21_test_lora_96_wide.safetensors",
                   kohya_lora([(name, rows * 3 // 2, cols * 3 // 2) for name, rows, cols in blocks], seed=27)),
        "one_too_wide": ("hy21_test_lora_one_module_96_wide.safetensors",
                         {**kohya_lora(blocks[2:], seed=28), **kohya_lora([(proj, HIDDEN, 96)], seed=29)}),
        "truncated": ("hy21_test_lora_partial_download.safetensors", kohya_lora(blocks, seed=30)),
    }  # fmt: skip
    files = {}
    for key, (name, state) in tensors.items():
        files[key] = folder / name
        save_file(state, str(files[key]), metadata={"ss_network_module": "networks.lora"})
    truncate(files["truncated"])
    files["pickle"] = malicious_pickle(folder / "hy21_test_lora_code.pt", markers / "served_pickle_ran_code")
    files["pickle_marker"] = markers / "served_pickle_ran_code"
    # the payload is real: the same object, unpickled without ``weights_only`` in another interpreter, runs its code
    control_marker = markers / "control_pickle_ran_code"
    control = malicious_pickle(markers / "control.pt", control_marker)
    unsafe = f"import torch; torch.load({str(control)!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", unsafe], check=False, capture_output=True, timeout=120)
    assert control_marker.exists(), "the malicious pickle's payload does not run; the refusal test would prove nothing"
    yield files
    for key, path in files.items():
        if key != "pickle_marker":
            path.unlink(missing_ok=True)


# --- graphs -----------------------------------------------------------------------------------------------------


def workflow(seed: int, lora: tuple[str, str, float] | None = None) -> dict:
    """The shipped distilled API twin at the small size; ``lora`` = (node class, file, strength) inserts a LoRA
    loader between the DiT loader and the sampler."""
    graph = json.loads((repo_root() / "workflows/api/hunyuanimage21_distilled_api.json").read_text())
    graph[LATENT]["inputs"].update(size="custom", width=WIDTH, height=HEIGHT)
    graph[SAMPLER]["inputs"]["seed"] = seed
    graph[SAVE]["inputs"]["filename_prefix"] = "hy21_tests/lora"
    if lora is not None:
        node, name, strength = lora
        graph[LORA] = {"class_type": node, "inputs": {"model": [LOADER, 0], "lora_name": name,
                                                      "strength_model": strength}}  # fmt: skip
        graph[SAMPLER]["inputs"]["model"] = [LORA, 0]
    return graph


def cached_nodes(result) -> set[str]:
    """The nodes ComfyUI served from its cache for this prompt (its ``execution_cached`` event)."""
    (event,) = [e for e in result.events if e["type"] == "execution_cached"]
    return set(event["data"]["nodes"])


def dit_reads(comfy_host, start: int) -> int:
    """How often the server read the tiny distilled DiT file since log offset ``start``."""
    return len(DIT_READ.findall(comfy_host.log_text()[start:]))


def differs(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute pixel difference (0..255)."""
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def patch_and_unpatch(comfy, comfy_host, node: str, file: str, seed: int) -> dict[str, np.ndarray]:
    """Without the LoRA, with it at strength 1 and 0.5 back to back, then without it again: the four images, after
    asserting that the DiT was read at most once (for the first prompt) and the sampler really re-ran each time."""
    start = len(comfy_host.log_text())
    results = {"before": comfy.run(workflow(seed)).raise_for_error()}
    if LOADER not in cached_nodes(results["before"]):  # read now: wait for the log to show it
        assert len(wait_for_log(comfy_host, start, DIT_READ)) == 1
    loaded = len(comfy_host.log_text())
    for key, strength in (("full", 1.0), ("half", 0.5)):
        results[key] = comfy.run(workflow(seed, (node, file, strength))).raise_for_error()
    results["after"] = comfy.run(workflow(seed)).raise_for_error()
    assert dit_reads(comfy_host, start) <= 1 and dit_reads(comfy_host, loaded) == 0, "the DiT file was read again"
    for key in ("full", "half", "after"):
        cached = cached_nodes(results[key])
        assert LOADER in cached and SAMPLER not in cached, f"{key}: cached nodes {sorted(cached)}"
    assert LORA not in cached_nodes(results["half"]), "the strength change did not re-run the LoRA node"
    assert "lora key not loaded" not in comfy_host.log_text()[start:]
    images = {key: image_of(comfy, result) for key, result in results.items()}
    assert images["before"].shape == (HEIGHT, WIDTH, 3) and images["before"].std() > 1
    return images


def assert_lora_effect(images: dict[str, np.ndarray], what: str) -> None:
    """The LoRA moved the image, half as strong moved it less, and without it the image is the original's bits."""
    full, half = differs(images["full"], images["before"]), differs(images["half"], images["before"])
    print(f"\n{what}: mean |pixel change| {full:.2f} at strength 1, {half:.2f} at 0.5 (of 255)")  # noqa: T201
    assert full > 1 and 0 < half < full and not np.array_equal(images["half"], images["full"])
    assert np.array_equal(images["after"], images["before"]), "the DiT was not restored after the LoRA"


# --- ComfyUI's LoraLoaderModelOnly ------------------------------------------------------------------------------


def test_native_lora_loader_patches_and_unpatches(comfy, comfy_host, loras):
    images = patch_and_unpatch(comfy, comfy_host, NATIVE, KOHYA_FILE, seed=901)
    assert_lora_effect(images, "native, sd-scripts names")


# --- the pack's HunyuanImage 2.1 LoRA Loader --------------------------------------------------------------------


def test_pack_lora_loader_patches_unpatches_and_logs(comfy, comfy_host, loras):
    start = len(comfy_host.log_text())
    images = patch_and_unpatch(comfy, comfy_host, PACK, DIFFUSERS_FILE, seed=902)
    assert_lora_effect(images, "pack, diffusers names")
    total = len(DIFFUSERS_LINEARS)
    line = re.compile(
        rf"HunyuanImage-2\.1 LoRA {re.escape(DIFFUSERS_FILE)}: diffusers names \(PEFT lora_A / lora_B\), "
        rf"{total}/{total} modules matched, rank {RANK}, strength (1|0\.5)\b"
    )
    strengths = wait_for_log(comfy_host, start, line)
    assert sorted(strengths) == ["0.5", "1"], f"expected one log line per strength, found {strengths}"


def test_pack_and_native_loaders_render_the_same_image(comfy, loras):
    """Both loaders hand ComfyUI the same patches: the same image to the bit, for both key layouts."""
    for file, seed in ((KOHYA_FILE, 903), (DIFFUSERS_FILE, 904)):
        pack = image_of(comfy, comfy.run(workflow(seed, (PACK, file, 0.8))).raise_for_error())
        native = image_of(comfy, comfy.run(workflow(seed, (NATIVE, file, 0.8))).raise_for_error())
        assert np.array_equal(pack, native), file


# --- refusals ---------------------------------------------------------------------------------------------------

REFUSALS = {
    "flux": [r"hy21_test_flux1_dev_lora_kohya\.safetensors is a LoRA for Flux or HunyuanVideo \(3072 wide\)",
             r"not HunyuanImage-2\.1", r"none of its modules fits this DiT"],
    "sdxl": [r"hy21_test_sdxl_lora_kohya\.safetensors is a LoRA for SDXL, not HunyuanImage-2\.1",
             r"not HunyuanImage-2\.1"],
    "ranks": [r"1 module\(s\) do not fit the weights they patch",
              r"lora_unet_double_blocks_0_img_attn_qkv: lora_up\.weight has rank 8 but lora_down\.weight has rank 4"],
    "rows": [r"1 module\(s\) do not fit the weights they patch",
             r"lora_unet_double_blocks_0_img_attn_qkv: its weight change is 128x64, the weight it patches is 192x64"],
    "narrow": [r"is a LoRA for another model with 96-wide layers \(this DiT's are 64\)",
               r"none of its modules fits this DiT"],
    "truncated": [r"hy21_test_lora_partial_download\.safetensors is truncated", r"download it again",
                  r"LoRA file hy21_test_lora_partial_download\.safetensors in models/loras"],
    "pickle": [r"hy21_test_lora_code\.pt is a pickle that holds Python objects besides tensors",
               r"it was not opened, since unpickling such objects can run code", r"use the \.safetensors release",
               r"LoRA file hy21_test_lora_code\.pt in models/loras"],
}  # fmt: skip


@pytest.mark.parametrize("bad", list(REFUSALS))
def test_unusable_lora_is_refused_then_the_next_prompt_runs(comfy, loras, bad):
    result = comfy.run(workflow(910, (PACK, loras[bad].name, 1.0)))
    assert result.status == "error", bad
    assert result.error["node_type"] == PACK and result.error["node_id"] == LORA
    message = result.error["exception_message"]
    for pattern in REFUSALS[bad]:
        assert re.search(pattern, message), f"{bad}: {pattern!r} not in {message}"
    assert not loras["pickle_marker"].exists(), "unpickling the LoRA ran code"
    after = comfy.run(workflow(911 + len(bad), (PACK, KOHYA_FILE, 1.0))).raise_for_error()
    assert image_of(comfy, after).shape == (HEIGHT, WIDTH, 3)


def test_lora_with_one_module_of_another_width_is_refused(comfy, loras):
    """One module naming a real layer but of another width is not dropped while the rest applies: the whole LoRA
    is refused, naming that module, its width and the layer's."""
    result = comfy.run(workflow(920, (PACK, loras["one_too_wide"].name, 1.0)))
    assert result.status == "error"
    message = result.error["exception_message"]
    assert re.search(r"lora_unet_double_blocks_0_img_attn_proj \(96 wide, the layer takes 64\)", message), message
    assert "do not fit the layers they name" in message and "damaged or mixes LoRAs of different models" in message
