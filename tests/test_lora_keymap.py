"""The LoRA key map: every module name a HunyuanImage-2.1 LoRA trainer writes lands on the right DiT weight and rows.

The diffusers naming is checked against diffusers itself: a delta added to each Linear of diffusers'
``HunyuanImageTransformer2DModel`` and carried over by the (parity-tested) diffusers -> ours conversion must equal the
same deltas placed on our fused weights through the key map. The other namings must each cover every Linear weight
exactly once, row for row.
"""

from __future__ import annotations

import pytest
import torch
from dit_files import PARITY, PARITY_DISTILLED, TINY, TINY_DISTILLED, diffusers_pair, from_diffusers
from torch import nn

from hunyuan_core.dit import HunyuanImageDiT
from hunyuan_core.lora import (
    Placement,
    dit_lora_targets,
    foreign_family,
    lora_placements,
    match_lora,
    product_shape,
    shape_problems,
    strip_prefix,
)
from hunyuan_core.lora.keymap import KOHYA_PREFIX

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_thread")]


def place(state: dict[str, torch.Tensor], module: str, delta: torch.Tensor, targets) -> None:
    """Add one LoRA module's product to our weights where the key map says."""
    for target in targets[strip_prefix(module)]:
        part = delta if target.source_rows is None else delta.narrow(0, *target.source_rows)
        weight = state[target.param]
        if target.rows is None:
            weight += part
        else:
            weight.narrow(0, *target.rows).add_(part)


@pytest.mark.parametrize("cfg", [PARITY, PARITY_DISTILLED], ids=["base", "distilled"])
def test_diffusers_peft_names_land_where_diffusers_weights_go(cfg):
    reference, ours = diffusers_pair(cfg, seed=0)
    targets = dit_lora_targets(cfg)
    state = {k: v.clone() for k, v in ours.state_dict().items()}
    g = torch.Generator().manual_seed(1)
    linears = {n: m for n, m in reference.named_modules() if isinstance(m, nn.Linear)}
    assert linears
    with torch.no_grad():
        for name, layer in linears.items():
            delta = torch.randn(layer.weight.shape, generator=g) * 0.01
            layer.weight += delta
            place(state, f"transformer.{name}", delta, targets)  # diffusers' PEFT prefix
    want = from_diffusers(reference, HunyuanImageDiT(cfg, dtype=torch.float32)).state_dict()
    for key, value in want.items():
        assert torch.equal(state[key], value), key


def coverage(cfg, names: list[str]) -> dict[str, torch.Tensor]:
    """How many times each row of each Linear weight is written when every module in ``names`` is applied."""
    targets = dit_lora_targets(cfg)
    model = HunyuanImageDiT(cfg, dtype=torch.float32)
    counts = {
        f"{n}.weight": torch.zeros(m.weight.shape[0]) for n, m in model.named_modules() if isinstance(m, nn.Linear)
    }
    for name in names:
        for target in targets[strip_prefix(name)]:
            rows = counts[target.param]
            (rows if target.rows is None else rows.narrow(0, *target.rows)).add_(1)
    return counts


def official_modules(cfg) -> list[str]:
    model = HunyuanImageDiT(cfg, dtype=torch.float32)
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]


@pytest.mark.parametrize(
    "spell",
    [
        pytest.param(lambda n: f"diffusion_model.{n}", id="peft-official"),
        pytest.param(lambda n: KOHYA_PREFIX + n.replace(".", "_"), id="sd-scripts"),
        pytest.param(lambda n: f"base_model.model.{n}", id="base_model-prefix"),
    ],
)  # fmt: skip
def test_every_linear_is_covered_once_by_each_naming(spell):
    names = [spell(n) for n in official_modules(TINY_DISTILLED)]
    for param, rows in coverage(TINY_DISTILLED, names).items():
        assert torch.equal(rows, torch.ones_like(rows)), param


def test_comfyui_internal_and_sd_scripts_comfy_names():
    """The names sd-scripts' converter writes for ComfyUI (img_mlp_0, img_mod_lin, modulation_lin) and ComfyUI's
    internal module paths land on the same weights as the official names."""
    targets = dit_lora_targets(TINY)
    same = {
        "lora_unet_double_blocks_1_img_mlp_0": "double_blocks.1.img_mlp.fc1.weight",
        "lora_unet_double_blocks_0_txt_mod_lin": "double_blocks.0.txt_mod.linear.weight",
        "lora_unet_single_blocks_1_modulation_lin": "single_blocks.1.modulation.linear.weight",
        "diffusion_model.double_blocks.0.img_attn.qkv": "double_blocks.0.img_attn_qkv.weight",
        "diffusion_model.double_blocks.0.txt_attn.proj": "double_blocks.0.txt_attn_proj.weight",
        "diffusion_model.single_blocks.0.modulation.lin": "single_blocks.0.modulation.linear.weight",
        "diffusion_model.time_in.in_layer": "time_in.mlp.0.weight",
        "lora_unet_single_blocks_1_linear2_fc": "single_blocks.1.linear2.weight",  # the official code's name
        "diffusion_model.single_blocks.0.linear2.fc": "single_blocks.0.linear2.weight",
    }
    for name, param in same.items():
        (target,) = targets[strip_prefix(name)]
        assert (target.param, target.rows) == (param, None), name


def test_split_qkv_modules_land_on_slices_of_the_fused_weights():
    h = TINY.hidden_size
    targets = dit_lora_targets(TINY)
    assert targets["double_blocks.0.img_attn_k"][0].rows == (h, h)
    assert targets["lora_unet_double_blocks_0_txt_attn_v"][0].rows == (2 * h, h)
    mlp = TINY.mlp_hidden
    assert targets["single_blocks.1.linear1_mlp"][0].rows == (3 * h, mlp)
    assert targets["single_transformer_blocks.1.proj_mlp"][0].rows == (3 * h, mlp)


def test_match_reports_naming_counts_ranks_and_unmatched():
    rank = 4
    modules = [KOHYA_PREFIX + n.replace(".", "_") for n in official_modules(TINY)[:5]] + ["lora_unet_foo_bar"]
    keys = [f"{m}.{leaf}" for m in modules for leaf in ("lora_down.weight", "lora_up.weight", "alpha")]
    targets = dit_lora_targets(TINY)

    def shape_of(key: str) -> tuple[int, int]:
        found = targets.get(key.rsplit(".", 2)[0])
        return (rank, found[0].in_features if found else 64) if "lora_down" in key else (64, rank)

    match = match_lora(keys, shape_of, targets)
    assert match.naming == "sd-scripts (kohya) names"
    assert len(match.matched) == 5 and match.unmatched == ["lora_unet_foo_bar"] and match.ranks == [rank]
    summary = match.summary("my_lora.safetensors")
    assert "5/6 modules matched, rank 4; unmatched: lora_unet_foo_bar" in summary


@pytest.mark.parametrize(
    ("keys", "naming"),
    [
        (["transformer.transformer_blocks.0.attn.to_q.lora_A.weight"], "diffusers names (PEFT lora_A / lora_B)"),
        (["diffusion_model.double_blocks.0.img_attn.qkv.lora_up.weight"], "ComfyUI's internal names"),
        (["diffusion_model.double_blocks.0.img_attn_qkv.lora_B.weight"],
         "official module names (PEFT lora_A / lora_B)"),
        (["lora_unet_double_blocks_0_img_attn_qkv.lokr_w1"], "LyCORIS LoKr with sd-scripts (kohya) names"),
        (["lora_unet_single_blocks_0_linear1.hada_w1_a"], "LyCORIS LoHa with sd-scripts (kohya) names"),
    ],
)  # fmt: skip
def test_naming_is_recognised(keys, naming):
    match = match_lora(keys, lambda key: (4, 64), dit_lora_targets(TINY))
    assert match.naming == naming and len(match.matched) == 1


def lora_keys(modules: list[str]) -> list[str]:
    return [f"{m}.{leaf}" for m in modules for leaf in ("lora_down.weight", "lora_up.weight", "alpha")]


def test_flux_width_lora_with_the_same_names_is_named_not_applied():
    """Flux and HunyuanVideo LoRAs from sd-scripts share these block names; their 3072-wide layers give them away."""
    modules = [KOHYA_PREFIX + n.replace(".", "_") for n in official_modules(TINY) if "blocks" in n]
    keys = lora_keys(modules)
    match = match_lora(keys, lambda key: (8, 3072) if "lora_down" in key else (3072, 8), dit_lora_targets(TINY))
    assert match.matched == {} and set(match.misfit) == set(modules)
    assert foreign_family(match, keys) == "Flux or HunyuanVideo (3072 wide)"


@pytest.mark.parametrize(
    ("modules", "family"),
    [
        (["lora_unet_input_blocks_4_1_proj_in", "lora_te1_text_model_encoder_layers_0_mlp_fc1"], "SDXL"),
        (["lora_unet_input_blocks_4_1_proj_in"], "Stable Diffusion 1.x / SDXL"),
        (["diffusion_model.blocks.0.self_attn.q", "diffusion_model.blocks.0.ffn.0"], "Wan"),
        (["transformer.transformer_blocks.0.img_mod.1"], "Qwen-Image"),
    ],
)  # fmt: skip
def test_other_families_are_named(modules, family):
    keys = lora_keys(modules)
    match = match_lora(keys, lambda key: (4, 64), dit_lora_targets(TINY))
    assert match.matched == {} and foreign_family(match, keys) == family


def test_a_hunyuanimage_lora_is_not_called_foreign():
    modules = [KOHYA_PREFIX + n.replace(".", "_") for n in official_modules(TINY)]
    keys = lora_keys(modules)
    targets = dit_lora_targets(TINY)
    widths = {KOHYA_PREFIX + strip_prefix(n).replace(".", "_"): t[0].in_features for n, t in targets.items()}
    match = match_lora(keys, lambda key: (4, widths[key.rsplit(".", 2)[0]]), targets)
    assert len(match.matched) == len(modules) and match.misfit == {} and foreign_family(match, keys) is None


def test_placements_spell_every_prefix_and_express_each_target():
    """Dotted names come with every wrapper prefix, sd-scripts names bare; a part keeps its rows, diffusers' final
    modulation (two targets with swapped halves) becomes one whole-weight placement that swaps the halves."""
    placements = lora_placements(TINY)
    h = TINY.hidden_size
    for prefix in ("", "diffusion_model.", "transformer.", "base_model.model.", "base_model.model.diffusion_model."):
        assert placements[prefix + "double_blocks.0.img_attn_k"] == Placement(
            "double_blocks.0.img_attn_qkv.weight", (h, h)
        )
    assert placements["lora_unet_single_blocks_1_linear2"] == Placement("single_blocks.1.linear2.weight")
    assert "diffusion_model.lora_unet_single_blocks_1_linear2" not in placements
    swap = placements["transformer.norm_out.linear"]
    assert swap == Placement("final_layer.adaLN_modulation.1.weight", None, swap_halves=True)
    assert len(placements) == len({k for k in placements})  # one placement per spelling


def shapes(table: dict[str, tuple[int, ...]]):
    return lambda key: table[key]


@pytest.mark.parametrize(
    ("tensors", "want"),
    [
        ({".lora_up.weight": (96, 4), ".lora_down.weight": (4, 64), ".alpha": ()}, (96, 64)),
        ({".lora_B.weight": (96, 8), ".lora_A.weight": (8, 64)}, (96, 64)),
        ({".hada_w1_a": (96, 4), ".hada_w1_b": (4, 64), ".hada_w2_a": (96, 4), ".hada_w2_b": (4, 64)}, (96, 64)),
        ({".lokr_w1": (4, 8), ".lokr_w2": (24, 8)}, (96, 64)),
        ({".lokr_w1": (4, 8), ".lokr_w2_a": (24, 2), ".lokr_w2_b": (2, 8)}, (96, 64)),
        ({".diff": (96, 64)}, (96, 64)),
        ({".set_weight": (96, 64)}, None),
    ],
)  # fmt: skip
def test_product_shape_of_each_adapter_kind(tensors, want):
    table = {"m" + suffix: shape for suffix, shape in tensors.items()}
    assert product_shape("m", table, shapes(table)) == want


def test_factors_of_different_rank_are_a_damaged_file():
    table = {"m.lora_up.weight": (96, 4), "m.lora_down.weight": (8, 64)}
    with pytest.raises(ValueError, match=r"lora_up\.weight has rank 4 but lora_down\.weight has rank 8"):
        product_shape("m", table, shapes(table))


def test_shape_problems_name_the_module_and_both_shapes():
    """A part of a fused weight must be the part's rows; a whole weight all of them; a damaged module is named."""
    h = TINY.hidden_size
    table = {
        "lora_unet_double_blocks_0_img_attn_q.lora_up.weight": (h, 4),  # right: one third of qkv
        "lora_unet_double_blocks_0_img_attn_q.lora_down.weight": (4, h),
        "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight": (h, 4),  # wrong: the whole qkv has 3h rows
        "lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": (4, h),
        "lora_unet_double_blocks_1_img_attn_proj.lora_up.weight": (h, 4),  # damaged: ranks disagree
        "lora_unet_double_blocks_1_img_attn_proj.lora_down.weight": (2, h),
    }
    match = match_lora(table, shapes(table), dit_lora_targets(TINY))
    problems = shape_problems(match, shapes(table))
    assert set(problems) == {"lora_unet_double_blocks_0_img_attn_qkv", "lora_unet_double_blocks_1_img_attn_proj"}
    assert f"is {h}x{h}, the weight it patches is {3 * h}x{h}" in problems["lora_unet_double_blocks_0_img_attn_qkv"]
    assert "rank 4 but lora_down.weight has rank 2" in problems["lora_unet_double_blocks_1_img_attn_proj"]
