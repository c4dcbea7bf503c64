"""Which DiT weight each module of a LoRA file patches, whatever trainer wrote it.

LoRA files name the layers they adapt after the model their trainer used:
- sd-scripts (kohya): ``lora_unet_`` + the official module path with ``_`` for ``.``
  (``lora_unet_double_blocks_0_img_attn_qkv``), or its ComfyUI-converted spelling (``img_mlp_0``, ``img_mod_lin``);
- diffusion-pipe and other PEFT trainers: ``diffusion_model.`` + the official or ComfyUI's internal module path;
- diffusers' PEFT integration: ``transformer.`` + diffusers' names, with q, k, v (and a single block's MLP input) as
  separate layers that make one fused weight here;
- ComfyUI's own saves (``diffusion_model.``), LyCORIS (same module names, other tensor suffixes), and wrappers that
  add ``base_model.model.``.
``dit_lora_targets`` lists, for one DiT config, every module name those spellings can use and the weight (and, for a
part of a fused weight, the rows) it lands on, from the same layout tables the checkpoint loader uses (``dit/keys``),
so a LoRA and a checkpoint of one layout always agree.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from ..checkpoints.meta import on_meta
from ..dit import keys as K
from ..dit.config import DiTConfig
from ..dit.model import HunyuanImageDiT

# Prefixes trainers and wrappers put before a module path, longest first.
PREFIXES = ("base_model.model.diffusion_model.", "base_model.model.", "model.diffusion_model.", "diffusion_model.",
            "transformer.", "unet.")  # fmt: skip
KOHYA_PREFIX = "lora_unet_"


@dataclass(frozen=True)
class Target:
    """Where one LoRA module's product ``up @ down`` goes: ``param`` (official name of a weight), and for a part of
    a fused weight the rows ``(offset, length)`` of ``param`` it replaces (None: the whole weight). ``source_rows``
    takes rows of the product itself (diffusers' final modulation stores its two halves swapped)."""

    param: str
    rows: tuple[int, int] | None = None
    source_rows: tuple[int, int] | None = None
    in_features: int = 0  # the weight's input width: a LoRA whose down weight is wider or narrower is for another model
    out_features: int = 0  # the weight's output rows (all of them, also for a part)

    @property
    def product_rows(self) -> int:
        """How many rows the module's product ``up @ down`` has: its part of a fused weight, or the whole weight."""
        return self.out_features if self.rows is None or self.source_rows is not None else self.rows[1]


def _linear_weights(cfg: DiTConfig) -> dict[str, tuple[int, int]]:
    """Official module path -> (out, in) of every Linear in the DiT."""
    model = on_meta(lambda: HunyuanImageDiT(cfg, dtype=torch.float32))
    return {name: tuple(m.weight.shape) for name, m in model.named_modules() if isinstance(m, nn.Linear)}


def _part_sizes(out_features: int, parts: int, hidden: int) -> list[int]:
    if parts == 4:  # a single block's linear1: q, k, v, then the MLP input
        return [hidden, hidden, hidden, out_features - 3 * hidden]
    return [out_features // parts] * parts


def _module_of(key: str) -> str:
    return key.removesuffix(".weight")


@functools.cache
def dit_lora_targets(cfg: DiTConfig) -> dict[str, list[Target]]:
    """Every LoRA module name (without prefix) a HunyuanImage-2.1 LoRA may use -> where it lands."""
    targets: dict[str, list[Target]] = {}

    def add(name: str, target: Target) -> None:
        targets.setdefault(name, []).append(target)

    for module, (out_features, in_features) in _linear_weights(cfg).items():
        param = f"{module}.weight"
        whole = Target(param, in_features=in_features, out_features=out_features)
        comfy = _module_of(K.source_of(param, K.COMFY).keys[0])
        for name in {module, comfy}:
            add(name, whole)
            add(KOHYA_PREFIX + name.replace(".", "_"), whole)
        split = K.source_of(param, K.OFFICIAL_SPLIT).keys
        if len(split) == 1 and split[0] != param:  # the official code's own name (a single block's linear2.fc)
            add(_module_of(split[0]), whole)
            add(KOHYA_PREFIX + _module_of(split[0]).replace(".", "_"), whole)
        if len(split) > 1:  # separate q / k / v (/ mlp) modules, official spelling
            sizes = _part_sizes(out_features, len(split), cfg.hidden_size)
            for key, offset, size in zip(split, _offsets(sizes), sizes, strict=True):
                part = Target(param, (offset, size), in_features=in_features, out_features=out_features)
                add(_module_of(key), part)
                add(KOHYA_PREFIX + _module_of(key).replace(".", "_"), part)
        source = K.source_of(param, K.DIFFUSERS)
        if source.swap_halves:  # our rows [0:h] are diffusers' [h:2h] and the other way round
            half = out_features // 2
            name = _module_of(source.keys[0])
            add(name, Target(param, (0, half), (half, half), in_features, out_features))
            add(name, Target(param, (half, half), (0, half), in_features, out_features))
        elif len(source.keys) == 1:
            add(_module_of(source.keys[0]), whole)
        else:
            sizes = _part_sizes(out_features, len(source.keys), cfg.hidden_size)
            for key, offset, size in zip(source.keys, _offsets(sizes), sizes, strict=True):
                add(_module_of(key), Target(param, (offset, size), in_features=in_features, out_features=out_features))
    return {name: list(dict.fromkeys(found)) for name, found in targets.items()}


def _offsets(sizes: list[int]) -> list[int]:
    found, total = [], 0
    for size in sizes:
        found.append(total)
        total += size
    return found


@dataclass(frozen=True)
class Placement:
    """Where one LoRA module lands, as a weight patcher needs it: the official weight ``param``, the rows
    ``(offset, length)`` of it the module's product replaces (None: all), and ``swap_halves`` when the product's two
    row halves go to the weight's other halves (diffusers' final modulation)."""

    param: str
    rows: tuple[int, int] | None = None
    swap_halves: bool = False


def _placement(name: str, found: list[Target]) -> Placement:
    if len(found) == 1 and found[0].source_rows is None:
        return Placement(found[0].param, found[0].rows)
    halves = {(t.rows, t.source_rows) for t in found}
    (param,) = {t.param for t in found}
    if (
        len(found) == 2
        and len(halves) == 2
        and all(t.rows and t.source_rows and t.rows[0] != t.source_rows[0] for t in found)
    ):
        return Placement(param, None, swap_halves=True)
    raise ValueError(f"LoRA module {name!r} lands on {found}, which no weight patch can express")


# The spellings a LoRA file may put before a (dotted) module name: none, or a trainer's or wrapper's prefix.
FILE_PREFIXES = ("", *PREFIXES)


@functools.cache
def lora_placements(cfg: DiTConfig) -> dict[str, Placement]:
    """Every module name as LoRA files spell it (prefix included) -> where it lands on this DiT.

    sd-scripts' ``lora_unet_`` names are used bare; dotted names with every prefix in ``FILE_PREFIXES``. Cached per
    config: a full-size DiT has a few thousand module spellings.
    """
    placements: dict[str, Placement] = {}
    for name, found in dit_lora_targets(cfg).items():
        placement = _placement(name, found)
        spellings = [name] if name.startswith(KOHYA_PREFIX) else [prefix + name for prefix in FILE_PREFIXES]
        for spelling in spellings:
            placements[spelling] = placement
    return placements


def strip_prefix(name: str) -> str:
    """A LoRA module name without the wrapper prefix its trainer added."""
    for prefix in PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


# Tensor-name endings of one LoRA module in the formats ComfyUI's loader reads (LoRA, LoCon, LoHa, LoKr, DoRA, ...).
SUFFIXES = (
    ".lora_up.weight", ".lora_down.weight", ".lora_mid.weight", ".lora_A.weight", ".lora_B.weight",
    ".lora.up.weight", ".lora.down.weight", ".lora_linear_layer.up.weight", ".lora_linear_layer.down.weight",
    ".alpha", ".dora_scale", ".diff", ".diff_b", ".set_weight",
    ".hada_w1_a", ".hada_w1_b", ".hada_w2_a", ".hada_w2_b", ".hada_t1", ".hada_t2",
    ".lokr_w1", ".lokr_w2", ".lokr_w1_a", ".lokr_w1_b", ".lokr_w2_a", ".lokr_w2_b", ".lokr_t2",
    ".a1.weight", ".a2.weight", ".b1.weight", ".b2.weight", ".w_norm", ".b_norm",
)  # fmt: skip


def lora_modules(keys: Iterable[str]) -> dict[str, list[str]]:
    """The LoRA file's tensors grouped by the module they adapt (name as written in the file)."""
    modules: dict[str, list[str]] = {}
    for key in keys:
        suffix = next((s for s in SUFFIXES if key.endswith(s)), None)
        if suffix is not None:
            modules.setdefault(key[: -len(suffix)], []).append(key)
    return modules


@dataclass
class LoraMatch:
    """How a LoRA file's modules meet the DiT: the naming it uses, the modules that land (and where), the ones
    that do not, those whose name fits but whose input width does not (``misfit``: module -> (its width, the
    width of the layer it names)), and the ranks found."""

    naming: str
    matched: dict[str, list[Target]]
    unmatched: list[str]
    ranks: list[int]
    misfit: dict[str, tuple[int, int]]
    tensors: dict[str, list[str]]  # every module of the file -> its tensor names (``lora_modules``)

    def summary(self, file_name: str) -> str:
        """One log line: naming, modules matched / total, ranks, the first unmatched names."""
        total = len(self.matched) + len(self.unmatched) + len(self.misfit)
        ranks = "/".join(map(str, self.ranks)) or "n/a"
        line = f"{file_name}: {self.naming}, {len(self.matched)}/{total} modules matched, rank {ranks}"
        if self.unmatched:
            line += f"; unmatched: {', '.join(self.unmatched[:5])}" + (" ..." if len(self.unmatched) > 5 else "")
        return line


def naming_of(modules: Iterable[str], keys: Iterable[str]) -> str:
    """Which trainer's naming a LoRA uses, from its module and tensor names."""
    modules, keys = list(modules), list(keys)
    kind = (
        "LyCORIS LoKr"
        if any(".lokr_" in k for k in keys)
        else "LyCORIS LoHa"
        if any(".hada_" in k for k in keys)
        else ""
    )
    if any(m.startswith(KOHYA_PREFIX) for m in modules):
        naming = "sd-scripts (kohya) names"
    elif any(strip_prefix(m).startswith(("transformer_blocks.", "single_transformer_blocks.")) for m in modules):
        naming = "diffusers names"
    elif any(".img_attn.qkv" in m or ".img_mod.lin" in m or ".modulation.lin" in m for m in modules):
        naming = "ComfyUI's internal names"
    else:
        naming = "official module names"
    if any(k.endswith((".lora_A.weight", ".lora_B.weight")) for k in keys):
        naming += " (PEFT lora_A / lora_B)"
    return f"{kind} with {naming}" if kind else naming


def match_lora(keys: Iterable[str], shape_of, targets: dict[str, list[Target]]) -> LoraMatch:
    """Match a LoRA file's modules against ``targets`` (``dit_lora_targets``); ranks from the down / A weights."""
    keys = list(keys)
    modules = lora_modules(keys)
    matched, unmatched, ranks, misfit = {}, [], set(), {}
    for module, tensors in modules.items():
        found = targets.get(strip_prefix(module))
        if found is None:
            unmatched.append(module)
            continue
        down = next((k for k in tensors if k.endswith(DOWN_SUFFIXES)), None)
        if down is not None:
            shape = tuple(shape_of(down))
            width = shape[1] if len(shape) > 1 else 0
            if found[0].in_features and width and width != found[0].in_features:
                misfit[module] = (width, found[0].in_features)
                continue
            ranks.add(shape[0])
        matched[module] = found
    return LoraMatch(naming_of(modules, keys), matched, sorted(unmatched), sorted(ranks), misfit, modules)


DOWN_SUFFIXES = (".lora_down.weight", ".lora_A.weight", ".lora.down.weight", ".lora_linear_layer.down.weight")
# Families whose LoRAs a user may pick by mistake, told apart by their module names (and, for the ones that share
# HunyuanImage's block names, their width).
FOREIGN_NAMES = (
    ("lora_te1_", "SDXL"), ("lora_te2_", "SDXL"),
    ("lora_unet_input_blocks_", "Stable Diffusion 1.x / SDXL"),
    ("lora_unet_down_blocks_", "Stable Diffusion 1.x / SDXL"),
    ("lora_te_", "Stable Diffusion 1.x / 2.x"),
    ("joint_blocks.", "Stable Diffusion 3"), ("lora_unet_joint_blocks_", "Stable Diffusion 3"),
    (".self_attn.q.", "Wan"), ("lora_unet_blocks_", "Wan"),
    ("transformer_blocks.0.img_mod.", "Qwen-Image"), ("lora_unet_transformer_blocks_", "Qwen-Image or another DiT"),
)  # fmt: skip
WIDTH_FAMILIES = {3072: "Flux or HunyuanVideo (3072 wide)"}


def foreign_family(match: LoraMatch, keys: Iterable[str]) -> str | None:
    """What a LoRA that did not fit appears to be for (None when nothing tells)."""
    if match.misfit:
        width, expected = next(iter(match.misfit.values()))
        return WIDTH_FAMILIES.get(width, f"another model with {width}-wide layers (this DiT's are {expected})")
    keys = list(keys)
    for pattern, family in FOREIGN_NAMES:
        if any(pattern in strip_prefix(k) or k.startswith(pattern) for k in keys):
            return family
    return None


def _matrix(shape_of, key: str) -> tuple[int, int]:
    shape = tuple(shape_of(key))
    return (shape[0], math.prod(shape[1:])) if shape else (1, 1)


def product_shape(module: str, tensor_keys: Iterable[str], shape_of) -> tuple[int, int] | None:
    """The (rows, columns) of the weight change one LoRA module makes, from its tensor shapes (None when its kind
    is not one of LoRA, LoHa, LoKr or a plain difference); raises ``ValueError`` when its factors do not fit each
    other (a damaged file)."""
    have = {key[len(module) :]: key for key in tensor_keys}

    def dims(suffix: str) -> tuple[int, int]:
        return _matrix(shape_of, have[suffix])

    def product(a: str, b: str) -> tuple[int, int]:
        (rows, inner), (inner_b, cols) = dims(a), dims(b)
        if inner != inner_b:
            raise ValueError(f"{module}: {a.lstrip('.')} has rank {inner} but {b.lstrip('.')} has rank {inner_b}")
        return rows, cols

    for up, down in (
        (".lora_up.weight", ".lora_down.weight"), (".lora_B.weight", ".lora_A.weight"),
        (".lora.up.weight", ".lora.down.weight"), (".lora_linear_layer.up.weight", ".lora_linear_layer.down.weight"),
    ):  # fmt: skip
        if up in have and down in have:
            if ".lora_mid.weight" in have:  # LoCon with a mid (conv) factor: only the outer sizes matter here
                return dims(up)[0], dims(down)[1]
            return product(up, down)
    if ".hada_w1_a" in have and ".hada_w1_b" in have:
        first = product(".hada_w1_a", ".hada_w1_b")
        if ".hada_w2_a" in have and ".hada_w2_b" in have and product(".hada_w2_a", ".hada_w2_b") != first:
            raise ValueError(f"{module}: the two LoHa products differ in shape")
        return first
    if any(s in have for s in (".lokr_w1", ".lokr_w1_a")) and any(s in have for s in (".lokr_w2", ".lokr_w2_a")):
        w1 = dims(".lokr_w1") if ".lokr_w1" in have else product(".lokr_w1_a", ".lokr_w1_b")
        w2 = dims(".lokr_w2") if ".lokr_w2" in have else product(".lokr_w2_a", ".lokr_w2_b")
        return w1[0] * w2[0], w1[1] * w2[1]
    if ".diff" in have:
        return dims(".diff")
    return None


def shape_problems(match: LoraMatch, shape_of) -> dict[str, str]:
    """Matched modules whose weight change does not have the shape of what it patches: module -> the problem."""
    problems = {}
    for module, found in match.matched.items():
        target = found[0]
        want = (target.product_rows, target.in_features)
        try:
            got = product_shape(module, match.tensors[module], shape_of)
        except ValueError as exc:
            problems[module] = str(exc)
            continue
        if got is not None and got != want:
            problems[module] = (
                f"{module}: its weight change is {got[0]}x{got[1]}, the weight it patches is {want[0]}x{want[1]}"
            )
    return problems
