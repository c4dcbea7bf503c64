"""Tiny HunyuanImage-2.1 LoRA files in every published key layout, and the weight changes they must make.

One canonical LoRA (a ``down`` (rank x in), ``up`` (out x rank) and ``alpha`` on every Linear of a tiny DiT, under
the official module names) is written in each trainer's spelling: sd-scripts (kohya) with official, ComfyUI-converted
or split q/k/v names (each part with its own alpha), PEFT / diffusion-pipe with official or ComfyUI internal names
(no alpha: ``alpha / rank`` is folded into ``lora_B``), diffusers' PEFT names (fused weights split by rows, the final
modulation's halves swapped), ComfyUI's own save and a ``base_model.model.`` wrapper. Every spelling is the same
change to the model, so each must patch the official weights by exactly ``canonical_deltas``.

LyCORIS LoHa and LoKr modules are separate small files; their changes are computed here from LyCORIS' definitions
(``LoHa.delta``, ``LoKr.delta``), placed on the official weights by rows (and halves) stated here, not taken from the
pack's key map. ``merged`` adds changes to a state dict by hand, as a reference model to compare a patched one with.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from dit_files import part_sizes
from torch import nn

from hunyuan_core.checkpoints.meta import on_meta
from hunyuan_core.dit import DiTConfig, HunyuanImageDiT
from hunyuan_core.dit import keys as K

RANK = 4
ALPHA = 2.0  # alpha / rank = 1/2: folding it into up (PEFT) or rescaling per part (split q/k/v) is exact in binary
# Each part of a fused weight (q, k, v, then a single block's MLP input) gets its own alpha in a split-q/k/v file; the
# ratios to ALPHA are powers of two, so rescaling the part's up rows leaves the product exactly as it was.
PART_ALPHAS = (1.0, 4.0, 8.0, 0.5)
KOHYA = "lora_unet_"


@dataclass(frozen=True)
class LoRA:
    """One module of a plain LoRA: ``up @ down * alpha / rank``."""

    down: torch.Tensor
    up: torch.Tensor
    alpha: float

    def delta(self) -> torch.Tensor:
        return (self.up @ self.down) * (self.alpha / self.down.shape[0])


@dataclass(frozen=True)
class LoHa:
    """A LyCORIS LoHa module: ``(w1_a @ w1_b) * (w2_a @ w2_b) * alpha / rank``, rank the inner size of the factors."""

    w1_a: torch.Tensor
    w1_b: torch.Tensor
    w2_a: torch.Tensor
    w2_b: torch.Tensor
    alpha: float

    def delta(self) -> torch.Tensor:
        return (self.w1_a @ self.w1_b) * (self.w2_a @ self.w2_b) * (self.alpha / self.w1_b.shape[0])

    def tensors(self, module: str) -> dict[str, torch.Tensor]:
        names = ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")
        out = {f"{module}.{name}": getattr(self, name.removeprefix("hada_")) for name in names}
        return {**out, f"{module}.alpha": torch.tensor(self.alpha)}


@dataclass(frozen=True)
class LoKr:
    """A LyCORIS LoKr module: ``kron(w1, w2)``, each factor stored whole or as a low-rank pair ``(a, b)``.

    LyCORIS scales by ``alpha / rank`` when a factor is low-rank and by 1 when both are whole (then ``alpha`` in the
    file means nothing)."""

    w1: torch.Tensor | tuple[torch.Tensor, torch.Tensor]
    w2: torch.Tensor | tuple[torch.Tensor, torch.Tensor]
    alpha: float

    def delta(self) -> torch.Tensor:
        def whole(w):
            return w[0] @ w[1] if isinstance(w, tuple) else w

        low_rank = [w for w in (self.w1, self.w2) if isinstance(w, tuple)]
        scale = self.alpha / low_rank[-1][1].shape[0] if low_rank else 1.0
        return torch.kron(whole(self.w1), whole(self.w2)) * scale

    def tensors(self, module: str) -> dict[str, torch.Tensor]:
        out = {f"{module}.alpha": torch.tensor(self.alpha)}
        for name, w in (("lokr_w1", self.w1), ("lokr_w2", self.w2)):
            if isinstance(w, tuple):
                out[f"{module}.{name}_a"], out[f"{module}.{name}_b"] = w
            else:
                out[f"{module}.{name}"] = w
        return out


@dataclass(frozen=True)
class Place:
    """Where a module's change lands: the official weight, the rows ``(offset, length)`` it fills (None: all), and
    whether its two row halves are the weight's other way round (diffusers' final modulation: shift, scale)."""

    param: str
    rows: tuple[int, int] | None = None
    swap: bool = False


def linear_shapes(cfg: DiTConfig) -> dict[str, tuple[int, int]]:
    """Official module name -> (out, in) of every Linear of the DiT."""
    model = on_meta(lambda: HunyuanImageDiT(cfg, dtype=torch.float32))
    return {name: tuple(m.weight.shape) for name, m in model.named_modules() if isinstance(m, nn.Linear)}


def canonical_lora(cfg: DiTConfig, seed: int = 1, rank: int = RANK, alpha: float = ALPHA) -> dict[str, LoRA]:
    """A random LoRA on every Linear of the DiT, by official module name."""
    gen = torch.Generator().manual_seed(seed)
    lora = {}
    for module, (out_features, in_features) in linear_shapes(cfg).items():
        down = torch.randn(rank, in_features, generator=gen) * 0.2
        up = torch.randn(out_features, rank, generator=gen) * 0.2
        lora[module] = LoRA(down, up, alpha)
    return lora


def canonical_deltas(lora: Mapping[str, LoRA]) -> dict[str, torch.Tensor]:
    """What a canonical LoRA changes, in any spelling: official weight name -> change."""
    return {f"{module}.weight": m.delta() for module, m in lora.items()}


# --- the spellings of one canonical LoRA ---------------------------------------------------------------------------


def _name(param: str, layout: str) -> str:
    """The module name of ``param`` (a whole weight) in ``layout``."""
    (key,) = K.source_of(param, layout).keys
    return key.removesuffix(".weight")


def _kohya(module: str) -> str:
    return KOHYA + module.replace(".", "_")


def _up_down(out: dict, module: str, m: LoRA, with_alpha: bool = True) -> None:
    out[f"{module}.lora_down.weight"] = m.down
    out[f"{module}.lora_up.weight"] = m.up
    if with_alpha:
        out[f"{module}.alpha"] = torch.tensor(m.alpha)


def _peft(out: dict, module: str, down: torch.Tensor, up: torch.Tensor, alpha: float) -> None:
    """PEFT's tensors (no alpha in the file: the scale alpha / rank goes into B)."""
    out[f"{module}.lora_A.weight"] = down
    out[f"{module}.lora_B.weight"] = up * (alpha / down.shape[0])


def kohya(lora: Mapping[str, LoRA]) -> dict[str, torch.Tensor]:
    """sd-scripts: ``lora_unet_<official name with _>.lora_down / lora_up / alpha``."""
    out = {}
    for module, m in lora.items():
        _up_down(out, _kohya(module), m)
    return out


def kohya_comfy(lora: Mapping[str, LoRA]) -> dict[str, torch.Tensor]:
    """sd-scripts converted for ComfyUI: ``lora_unet_`` + ComfyUI's internal names (img_mlp_0, img_mod_lin, ...)."""
    out = {}
    for module, m in lora.items():
        _up_down(out, _kohya(_name(f"{module}.weight", K.COMFY)), m)
    return out


def _parts(param: str, layout: str, out_features: int, hidden: int) -> list[tuple[str, int, int]]:
    """(module name, row offset, rows) of each part ``layout`` splits ``param`` into."""
    keys = K.source_of(param, layout).keys
    sizes = part_sizes(param, torch.empty(out_features, 0), len(keys), hidden) if len(keys) > 1 else [out_features]
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    return [(key.removesuffix(".weight"), o, s) for key, o, s in zip(keys, offsets, sizes, strict=True)]


def kohya_split_qkv(lora: Mapping[str, LoRA], cfg: DiTConfig) -> dict[str, torch.Tensor]:
    """sd-scripts on a model with separate q / k / v (and a single block's MLP input) layers, official-split names
    (``lora_unet_double_blocks_0_img_attn_q``), each part with its own alpha; the other modules under the official
    code's names (as ``kohya``, but ``linear2_fc``)."""
    out = {}
    for module, m in lora.items():
        parts = _parts(f"{module}.weight", K.OFFICIAL_SPLIT, m.up.shape[0], cfg.hidden_size)
        if len(parts) == 1:  # the official code's name for the whole layer (a single block's linear2.fc)
            _up_down(out, _kohya(parts[0][0]), m)
            continue
        for (name, offset, rows), alpha in zip(parts, PART_ALPHAS, strict=False):
            up = m.up[offset : offset + rows] * (m.alpha / alpha)
            _up_down(out, _kohya(name), LoRA(m.down.clone(), up.contiguous(), alpha))
    return out


def peft(lora: Mapping[str, LoRA], prefix: str = "diffusion_model.", layout: str = K.OFFICIAL) -> dict:
    """diffusion-pipe and other PEFT trainers: ``<prefix><module>.lora_A / lora_B``, module names of ``layout``
    (official or ComfyUI's internal ones)."""
    out = {}
    for module, m in lora.items():
        _peft(out, prefix + _name(f"{module}.weight", layout), m.down, m.up, m.alpha)
    return out


def diffusers(lora: Mapping[str, LoRA], cfg: DiTConfig, prefix: str = "transformer.") -> dict[str, torch.Tensor]:
    """diffusers' PEFT integration: diffusers' module names, a fused weight's up split by rows into its q / k / v
    (/ proj_mlp) layers (down shared), ``norm_out.linear`` with the two row halves of its change swapped."""
    out = {}
    for module, m in lora.items():
        param = f"{module}.weight"
        up = m.up
        if K.source_of(param, K.DIFFUSERS).swap_halves:
            up = torch.cat(up.chunk(2)[::-1])
        for name, offset, rows in _parts(param, K.DIFFUSERS, up.shape[0], cfg.hidden_size):
            _peft(out, prefix + name, m.down.clone(), up[offset : offset + rows].contiguous(), m.alpha)
    return out


def comfyui_save(lora: Mapping[str, LoRA]) -> dict[str, torch.Tensor]:
    """ComfyUI's own LoRA save: ``diffusion_model.<internal name>.lora_up / lora_down / alpha``."""
    out = {}
    for module, m in lora.items():
        _up_down(out, "diffusion_model." + _name(f"{module}.weight", K.COMFY), m)
    return out


def canonical_files(lora: Mapping[str, LoRA], cfg: DiTConfig) -> dict[str, dict[str, torch.Tensor]]:
    """The canonical LoRA in every published spelling, by format name."""
    return {
        "kohya": kohya(lora),
        "kohya_comfy": kohya_comfy(lora),
        "kohya_split_qkv": kohya_split_qkv(lora, cfg),
        "peft": peft(lora),
        "peft_comfy": peft(lora, layout=K.COMFY),
        "diffusers": diffusers(lora, cfg),
        "comfyui": comfyui_save(lora),
        "base_model": peft(lora, prefix="base_model.model."),
    }


# --- LyCORIS --------------------------------------------------------------------------------------------------------


def _randn(gen: torch.Generator, scale: float, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen) * scale


def _loha(gen: torch.Generator, out_features: int, in_features: int, rank: int, alpha: float) -> LoHa:
    return LoHa(
        _randn(gen, 0.3, out_features, rank), _randn(gen, 0.3, rank, in_features),
        _randn(gen, 0.3, out_features, rank), _randn(gen, 0.3, rank, in_features), alpha,
    )  # fmt: skip


def lycoris_files(
    cfg: DiTConfig, seed: int = 2
) -> dict[str, tuple[dict[str, torch.Tensor], list[tuple[Place, object]]]]:
    """LyCORIS files on some modules, by format name: (tensors, where each module's change lands).

    ``loha`` and ``lokr`` use sd-scripts names (LoKr with both factors whole, w2 low-rank, and both low-rank);
    ``lycoris_diffusers`` puts LoHa and LoKr on diffusers' parts of fused weights and on the swapped final modulation.
    The LoKr factor sizes are those of the 64-wide test DiTs (``dit_files.TINY*``).
    """
    gen = torch.Generator().manual_seed(seed)
    h, mlp = cfg.hidden_size, cfg.mlp_hidden
    shapes = linear_shapes(cfg)

    def whole(module: str) -> Place:
        return Place(f"{module}.weight")

    loha = {
        module: _loha(gen, *shapes[module], rank=r, alpha=a)
        for module, r, a in (
            ("double_blocks.0.img_attn_qkv", 4, 2.0), ("single_blocks.1.linear1", 2, 3.0),
            ("txt_in.individual_token_refiner.blocks.0.mlp.fc2", 4, 4.0), ("final_layer.linear", 8, 1.0),
        )
    }  # fmt: skip
    lokr = {
        # both factors whole: scale 1 whatever alpha says
        "double_blocks.1.img_mlp.fc1": LoKr(_randn(gen, 0.5, 4, 4), _randn(gen, 0.02, 64, 16), alpha=7.0),
        # w2 low-rank (rank 4): alpha / 4
        "single_blocks.0.linear2": LoKr(
            _randn(gen, 0.5, 4, 4), (_randn(gen, 0.1, 16, 4), _randn(gen, 0.1, 4, 80)), alpha=2.0
        ),
        # both low-rank (rank 2): alpha / 2
        "double_blocks.0.txt_mod.linear": LoKr(
            (_randn(gen, 0.5, 8, 2), _randn(gen, 0.5, 2, 4)), (_randn(gen, 0.1, 48, 2), _randn(gen, 0.1, 2, 16)), 1.0
        ),
    }
    files = {}
    for name, modules in (("loha", loha), ("lokr", lokr)):
        tensors = {}
        for module, m in modules.items():
            tensors.update(m.tensors(_kohya(module)))
        files[name] = (tensors, [(whole(module), m) for module, m in modules.items()])
    diffusers_modules = {
        "transformer.transformer_blocks.0.attn.to_k": (
            Place("double_blocks.0.img_attn_qkv.weight", (h, h)), _loha(gen, h, h, rank=4, alpha=2.0),
        ),
        "transformer.transformer_blocks.1.attn.add_v_proj": (
            Place("double_blocks.1.txt_attn_qkv.weight", (2 * h, h)), _loha(gen, h, h, rank=2, alpha=1.0),
        ),
        "transformer.single_transformer_blocks.1.proj_mlp": (
            Place("single_blocks.1.linear1.weight", (3 * h, mlp)),
            LoKr(_randn(gen, 0.5, 4, 4), (_randn(gen, 0.1, mlp // 4, 4), _randn(gen, 0.1, 4, h // 4)), alpha=2.0),
        ),
        "transformer.norm_out.linear": (
            Place("final_layer.adaLN_modulation.1.weight", swap=True),
            LoKr(_randn(gen, 0.5, 4, 4), _randn(gen, 0.02, 2 * h // 4, h // 4), alpha=5.0),
        ),
    }  # fmt: skip
    tensors = {}
    for module, (_, m) in diffusers_modules.items():
        tensors.update(m.tensors(module))
    files["lycoris_diffusers"] = (tensors, list(diffusers_modules.values()))
    return files


def placed_deltas(placed: Iterable[tuple[Place, object]], cfg: DiTConfig) -> dict[str, torch.Tensor]:
    """Official weight name -> the change the modules make to it (each module's ``delta()`` on its rows / halves)."""
    shapes = {f"{m}.weight": shape for m, shape in linear_shapes(cfg).items()}
    deltas: dict[str, torch.Tensor] = {}
    for place, module in placed:
        change = module.delta()
        if place.swap:
            change = torch.cat(change.chunk(2)[::-1])
        full = deltas.setdefault(place.param, torch.zeros(shapes[place.param]))
        (full if place.rows is None else full.narrow(0, *place.rows)).add_(change)
    return deltas


def merged(
    state: Mapping[str, torch.Tensor], *changes: tuple[Mapping[str, torch.Tensor], float]
) -> dict[str, torch.Tensor]:
    """``state`` with each ``(deltas, strength)`` added by hand in float32: W + strength * delta."""
    out = {k: v.float().clone() for k, v in state.items()}
    for deltas, strength in changes:
        for param, delta in deltas.items():
            out[param] += strength * delta
    return out
