"""The one place that decides what a DiT checkpoint is, and loads it.

From keys and shapes alone: the layout (official fused or split, ComfyUI's internal names, diffusers), the
variant (base / distilled / refiner) and the full config. Loading builds the model on the meta device and fills
each parameter straight from the file (``checkpoints.meta``), so peak memory stays close to the model's own size;
fp8 weights stay fp8 (with their scales from the file or the official ``*_scale.safetensors`` beside it), and GGUF
files (QuantStack's, converted by city96's tools: architecture ``hyvid``, the official names) keep their quantized
weights as GGML blocks, dequantized per layer at compute time.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from ..checkpoints.complete import detect_or_damaged, redownload, require_complete
from ..checkpoints.errors import CheckpointError
from ..checkpoints.files import TensorFile, open_checkpoint
from ..checkpoints.fp8 import FP8_DTYPES, Fp8Weight, linear_weights, quantizing_reader
from ..checkpoints.gguf_file import GGMLWeight, GGUFFile, cat_rows
from ..checkpoints.gguf_quants import SUPPORTED_TYPES
from ..checkpoints.identify import describe_checkpoint
from ..checkpoints.meta import load_weights, meta_shapes, on_meta, state_shapes
from ..checkpoints.views import names_under
from ..variants import BASE, REFINER, VARIANTS
from . import keys as K
from .config import DiTConfig
from .model import HunyuanImageDiT

log = logging.getLogger(__name__)

# Above this, an fp8 value cannot be a plain cast of a DiT weight: the file was scaled and its scales are missing.
UNSCALED_FP8_LIMIT = 16.0
WHAT = "a HunyuanImage-2.1 DiT"
EXPECTED = (
    "Expected a HunyuanImage-2.1 diffusion model (base, distilled or refiner, e.g. "
    f"{BASE.dit_file.name} or {REFINER.dit_file.name}) in models/{BASE.dit_file.folder}."
)
ALL_FILES = [v.dit_file.name for v in VARIANTS.values()]


class DiTCheckpointError(CheckpointError):
    """The file is not a (complete) HunyuanImage-2.1 DiT; the message says what it appears to be."""


@dataclass(frozen=True)
class DiTCheckpointInfo:
    path: Path
    layout: str
    prefix: str
    config: DiTConfig
    weight_dtype: torch.dtype  # uint8 for a block-quantized GGUF (its bytes); see ``weight_format``
    fp8_scales: str | None  # where fp8 scales come from: "file", a scale file name, "none" (plain cast)
    gguf_types: dict[str, int] | None = None  # a GGUF file's tensor count per GGML type

    @property
    def weight_format(self) -> str:
        """What the block weights are stored as: "bfloat16", "float8_e4m3fn", "GGUF Q4_K" ..."""
        if self.gguf_types is not None:
            quantized = [t for t in self.gguf_types if t not in ("F32", "F16", "BF16")]
            return f"GGUF {'/'.join(quantized or list(self.gguf_types))}"
        return str(self.weight_dtype).replace("torch.", "")

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype the model computes in by default: the file's float dtype, bf16 for fp8 and GGUF files."""
        if self.gguf_types is not None or self.weight_dtype in FP8_DTYPES:
            return torch.bfloat16
        return self.weight_dtype

    @property
    def variant(self) -> str:
        return self.config.variant

    def describe(self) -> str:
        c = self.config
        parts = [
            f"HunyuanImage-2.1 {c.variant} DiT",
            f"{self.layout} layout",
            f"{self.weight_format} weights",
            f"hidden {c.hidden_size}, {c.num_heads} heads, {c.depth_double}+{c.depth_single} blocks",
        ]
        if self.fp8_scales:
            parts.append(f"fp8 scales: {self.fp8_scales}")
        if self.gguf_types:
            parts.append("tensor types " + ", ".join(f"{k} {v}" for k, v in self.gguf_types.items()))
        return ", ".join(parts)


class _View:
    """The DiT's tensors in a file, under official fused names, with layout and prefix resolved."""

    def __init__(self, file: TensorFile, layout: str, prefix: str) -> None:
        self.file = file
        self.layout = layout
        self.prefix = prefix

    def source(self, name: str) -> K.Source:
        return K.source_of(name, self.layout)

    def file_keys(self, name: str) -> tuple[str, ...]:
        return tuple(self.prefix + k for k in self.source(name).keys)

    def has(self, name: str) -> bool:
        try:
            return all(k in self.file for k in self.file_keys(name))
        except KeyError:
            return False

    def shape(self, name: str) -> tuple[int, ...]:
        shapes = [self.file.shape(k) for k in self.file_keys(name)]
        return (sum(s[0] for s in shapes), *shapes[0][1:])


def _indices(names: set[str], pattern: str) -> set[int]:
    return {int(m[1]) for n in names if (m := re.match(pattern, n))}


def _count(names: set[str], pattern: str) -> int:
    """Depth as the highest block index + 1, so a missing block in the middle is caught as missing."""
    found = _indices(names, pattern)
    return max(found) + 1 if found else 0


def _official_names(view: _View, keys: list[str]) -> set[str]:
    """Official-style module names present, enough to count blocks (works for every layout)."""
    stripped = names_under(keys, view.prefix)
    if view.layout == K.DIFFUSERS:
        renames = (
            (r"^transformer_blocks\.", "double_blocks."),
            (r"^single_transformer_blocks\.", "single_blocks."),
            (r"^context_embedder\.token_refiner\.refiner_blocks\.", "txt_in.individual_token_refiner.blocks."),
        )
        for pattern, new in renames:
            stripped = {re.sub(pattern, new, k) for k in stripped}
    return stripped


def config_from_view(view: _View, keys: list[str]) -> DiTConfig:
    names = _official_names(view, keys)
    img_in = view.shape("img_in.proj.weight")
    hidden, in_channels, patch_dims = img_in[0], img_in[1], len(img_in) - 2
    first = min(_indices(names, r"double_blocks\.(\d+)\."), default=0)  # shapes from any block present
    head_dim = view.shape(f"double_blocks.{first}.img_attn_q_norm.weight")[0]
    meanflow = view.has("time_r_in.mlp.0.weight")
    guidance = view.has("guidance_in.mlp.0.weight")
    byt5 = view.shape("byt5_in.fc1.weight") if view.has("byt5_in.fc1.weight") else None
    if patch_dims == 3:
        t_axis = head_dim // 8
        rope = (t_axis, (head_dim - t_axis) // 2, (head_dim - t_axis) // 2)
    else:
        rope = (head_dim // 2, head_dim // 2)
    variant = "refiner" if patch_dims == 3 else ("distilled" if guidance and meanflow else "base")
    return DiTConfig(
        variant=variant,
        in_channels=in_channels,
        out_channels=view.shape("final_layer.linear.weight")[0],
        hidden_size=hidden,
        num_heads=hidden // head_dim,
        mlp_ratio=view.shape(f"double_blocks.{first}.img_mlp.fc1.weight")[0] / hidden,
        depth_double=_count(names, r"double_blocks\.(\d+)\."),
        depth_single=_count(names, r"single_blocks\.(\d+)\."),
        patch_dims=patch_dims,
        rope_axes=rope,
        text_dim=view.shape("txt_in.input_embedder.weight")[1],
        byt5_dim=byt5[1] if byt5 else None,
        byt5_hidden=byt5[0] if byt5 else 2048,
        guidance_embed=guidance,
        meanflow=meanflow,
        refiner_depth=_count(names, r"txt_in\.individual_token_refiner\.blocks\.(\d+)\."),
    )


def _open(path: str | Path) -> TensorFile:
    return open_checkpoint(path, WHAT, DiTCheckpointError)


def _fix(variant: str) -> str:
    """Re-download advice naming the released file of ``variant``."""
    file = VARIANTS[variant].dit_file
    return redownload([file.name], file.folder)


def _resolve(file: TensorFile) -> _View:
    keys = file.keys()
    prefix = K.strip_prefix(keys)
    layout = K.detect_layout(names_under(keys, prefix))
    view = _View(file, layout, prefix) if layout else None
    is_hunyuan = (
        view is not None
        and view.has("img_in.proj.weight")
        and (view.has("txt_in.input_embedder.weight") or layout == K.DIFFUSERS)
    )
    if not is_hunyuan:
        found = describe_checkpoint(keys, file.shape)
        if isinstance(file, GGUFFile):
            found = f"{found} (GGUF architecture {file.architecture or 'not set'!r})"
        raise DiTCheckpointError(f"{file.path.name} is not {WHAT}: it appears to be {found}. {EXPECTED}")
    if isinstance(file, GGUFFile) and (unsupported := file.unsupported_types()):
        types = sorted(set(unsupported.values()))
        raise DiTCheckpointError(
            f"{file.path.name} stores {len(unsupported)} tensors as GGML type {', '.join(types)} (e.g. "
            f"{next(iter(unsupported))}), which this pack cannot dequantize. Supported: {', '.join(SUPPORTED_TYPES)}; "
            "use a file of one of those quantizations (Q8_0, Q6_K, Q5_K_M, Q4_K_M ... are)"
        )
    return view


def _scale_file(path: Path) -> Path | None:
    """The official ``<name>_scale.safetensors`` beside an fp8 file, if there is one."""
    candidate = path.with_name(f"{path.stem}_scale{path.suffix}")
    return candidate if candidate.is_file() else None


class _Scales:
    """fp8 scale lookup by module name, from the checkpoint itself and/or a separate scale file."""

    SUFFIXES = (".weight_scale", ".scale_weight", "")

    def __init__(self, view: _View, scale_path: Path | None) -> None:
        self.view = view
        self.extra = open_checkpoint(scale_path, "fp8 scales", DiTCheckpointError) if scale_path else None
        self.origin = scale_path.name if scale_path else None

    def find(self, weight_key: str) -> torch.Tensor | None:
        module = weight_key.removesuffix(".weight")
        bare = module[len(self.view.prefix) :]
        for source in (self.view.file, self.extra):
            if source is None:
                continue
            for name in (module, bare):
                for suffix in self.SUFFIXES:
                    if name + suffix in source and name + suffix != weight_key:
                        if source is self.view.file and self.origin is None:
                            self.origin = "in the checkpoint"
                        return source.get(name + suffix).float()
        return None


def inspect_dit(path: str | Path, scale_path: str | Path | None = None) -> DiTCheckpointInfo:
    """Identify a DiT checkpoint from its keys and shapes; raise DiTCheckpointError naming what it is instead."""
    return _inspect(path, scale_path)[0]


def _inspect(path: str | Path, scale_path: str | Path | None) -> tuple[DiTCheckpointInfo, _View, _Scales | None]:
    """``inspect_dit``, also handing back the opened file's view and its fp8 scales, so loading reads no header
    twice."""
    file = _open(path)
    view = _resolve(file)
    config = detect_or_damaged(
        lambda: config_from_view(view, file.keys()), error=DiTCheckpointError, file_name=file.path.name,
        what=f"{WHAT} ({view.layout} layout)", fix=redownload(ALL_FILES, BASE.dit_file.folder),
    )  # fmt: skip
    require_complete(
        meta_shapes(lambda: HunyuanImageDiT(config, dtype=torch.float32)), view.has, view.shape,
        error=DiTCheckpointError, file_name=file.path.name,
        what=f"HunyuanImage-2.1 {config.variant} DiT ({view.layout} layout)", fix=_fix(config.variant),
    )  # fmt: skip
    weight_key = view.file_keys("double_blocks.0.img_attn_qkv.weight")[0]  # present: the file is complete
    weight_dtype = file.dtype(weight_key)
    gguf_types = file.type_counts() if isinstance(file, GGUFFile) else None
    fp8_scales, scales = None, None
    if weight_dtype in FP8_DTYPES:
        scale_file = Path(scale_path) if scale_path else _scale_file(file.path)
        scales = _Scales(view, scale_file)
        found = scales.find(weight_key)
        fp8_scales = scales.origin if found is not None else "none (plain fp8 cast)"
        if found is None and file.get(weight_key).float().abs().max() > UNSCALED_FP8_LIMIT:
            raise DiTCheckpointError(
                f"{file.path.name} holds scaled fp8 weights but no scales were found: put the matching "
                f"{file.path.stem}_scale{file.path.suffix} next to it (the official fp8 release ships both files)"
            )
    info = DiTCheckpointInfo(file.path, view.layout, view.prefix, config, weight_dtype, fp8_scales, gguf_types)
    return info, view, scales


def load_dit(
    path: str | Path,
    dtype: torch.dtype | None = None,
    device: torch.device | str = "cpu",
    operations: SimpleNamespace = nn,
    scale_path: str | Path | None = None,
    attention_backend: str = "sdpa",
    quantize_fp8: bool = False,
    fp8_matmul: bool = False,
) -> HunyuanImageDiT:
    """Load any supported DiT file. ``dtype=None`` keeps the file's dtype; fp8 weights always stay fp8.

    ``quantize_fp8`` stores the block linears of a bf16/fp32 file in e4m3 with per-tensor scales, as the official
    fp8 release does (half the memory, same arithmetic path); embedders and final layer keep ``dtype``.
    ``fp8_matmul`` (off by default, not the official arithmetic) runs fp8 layers as fp8 GEMMs with the activations
    quantized per tensor, where the device has the kernel (Ada/Hopper GPUs); elsewhere they stay weight-only.
    """
    info, view, scales = _inspect(path, scale_path)
    file = view.file
    compute = dtype or info.compute_dtype

    def build(ops: SimpleNamespace) -> HunyuanImageDiT:
        return HunyuanImageDiT(info.config, dtype=compute, operations=ops, attention_backend=attention_backend)

    reference = on_meta(lambda: build(nn))  # the names and kinds of every tensor, whatever ``operations`` builds

    def read(name: str) -> torch.Tensor | Fp8Weight | GGMLWeight:
        tensor, scale = _read(view, name, scales)
        return tensor if scale is None else Fp8Weight(tensor, scale)

    if quantize_fp8:
        read = quantizing_reader(read, official_fp8_weights(reference))

    model = on_meta(lambda: build(operations))
    load_weights(
        model, state_shapes(reference), read, dtype=compute, device=device, error=DiTCheckpointError,
        file_name=file.path.name, operations=operations,
    )  # fmt: skip
    if fp8_matmul:
        layers = [m for m in model.modules() if getattr(m, "weight_format", None) == "fp8"]
        for layer in layers:
            layer.fp8_matmul = True
        log.info("fp8 matmul on for %d fp8 layers (activations quantized per tensor; off = official)", len(layers))
    log.info("loaded %s: %s", file.path.name, info.describe())
    return model.eval()


def _read(
    view: _View, name: str, scales: _Scales | None
) -> tuple[torch.Tensor, torch.Tensor | None] | tuple[GGMLWeight, None]:
    """One parameter from the file (concatenating split parts); fp8 weights come with per-row scales, GGUF blocks
    stay quantized (their rows are concatenated or swapped as bytes)."""
    source = view.source(name)
    parts = [view.file.get(k) for k in view.file_keys(name)]
    if any(isinstance(p, GGMLWeight) for p in parts):
        return _read_quantized(name, parts, source.swap_halves), None
    scale = None
    if parts[0].dtype in FP8_DTYPES:
        if scales is None or not name.endswith(".weight"):
            parts = [p.float() for p in parts]
        else:
            part_scales = []
            for key, part in zip(view.file_keys(name), parts, strict=True):
                s = scales.find(key)
                part_scales.append((torch.ones(()) if s is None else s.reshape(())).expand(part.shape[0]))
            scale = torch.cat(part_scales)
            if bool((scale == scale[0]).all()):
                scale = scale[:1].reshape(())
    tensor = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
    if source.swap_halves:
        tensor = torch.cat(tensor.chunk(2, dim=0)[::-1], dim=0)
    return tensor, scale


def official_fp8_weights(model: nn.Module) -> set[str]:
    """The weights the official fp8 release stores in fp8: every Linear inside the double and single blocks."""
    return linear_weights(model, ("double_blocks.", "single_blocks."))


def _read_quantized(name: str, parts: list[torch.Tensor | GGMLWeight], swap_halves: bool) -> GGMLWeight:
    """A GGUF parameter made of quantized parts: rows stacked as bytes, halves swapped as rows."""
    if not all(isinstance(p, GGMLWeight) for p in parts):
        raise DiTCheckpointError(f"{name}: its parts mix quantized and float tensors; the file is not a clean export")
    weight = parts[0] if len(parts) == 1 else cat_rows(parts)
    if swap_halves:
        half = weight.shape[0] // 2
        weight = weight.rows(torch.cat([torch.arange(half, 2 * half), torch.arange(half)]))
    return weight
