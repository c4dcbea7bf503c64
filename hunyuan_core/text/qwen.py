"""Qwen2.5-VL-7B's language model as HunyuanImage-2.1's prompt encoder (the vision tower is never loaded).

The official encoder takes ``hidden_states[-3]`` without the final norm. This module builds the language model
only up to that layer (the last two layers and the final norm are never loaded or run), and encodes without
padding: in a causal model trailing padding cannot change earlier states, so the valid tokens come out identical
to the official 1034-token padded run at a fraction of the cost.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from ..checkpoints.complete import redownload, require_complete
from ..checkpoints.errors import CheckpointError
from ..checkpoints.files import TensorFile, open_checkpoint
from ..checkpoints.fp8 import FP8_DTYPES, Fp8Weight
from ..checkpoints.identify import describe_checkpoint
from ..checkpoints.meta import load_weights, on_meta, parameter_shapes
from ..checkpoints.operations import adopt_operations
from ..variants import QWEN_FILE, QWEN_FP8_FILE
from .prompt import STAGE1_TEMPLATE, PromptTemplate

log = logging.getLogger(__name__)

HIDDEN_STATE_SKIP = 2  # hidden_states[-(2 + 1)]
QWEN_HEAD_DIM = 128
TOKENIZER_FILES = ("tokenizer.json", "vocab.json")
# Prefixes under which checkpoints store the language model (HF release, newer transformers saves, ComfyUI).
LM_PREFIXES = ("model.language_model.", "language_model.model.", "model.", "")
WHAT = "the Qwen2.5-VL text encoder"
OFFICIAL_FOLDER = QWEN_FILE.official.rstrip("/")  # Qwen2.5-VL-7B-Instruct, as Hugging Face ships it
FIX = redownload([QWEN_FILE.name, QWEN_FP8_FILE.name], QWEN_FILE.folder)


class TextEncoderError(CheckpointError):
    """A text-encoder file, folder or tokenizer that cannot serve as HunyuanImage-2.1's prompt encoder."""


@dataclass
class EncodedText:
    states: torch.Tensor  # [1, L, D], valid tokens only
    mask: torch.Tensor  # [1, L] int64, all ones
    truncated_from: int | None = None  # prompt token count before truncation, when it was cut


def _weight_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
        if not files:
            raise TextEncoderError(f"{path} holds no .safetensors or .bin weight files")
        return files
    return [path]


def _open_all(files: list[Path]) -> list[TensorFile]:
    return [open_checkpoint(f, WHAT, TextEncoderError) for f in files]


class _Tensors:
    """The language model's tensors across one or more files, under plain ``layers.N...`` names."""

    def __init__(self, files: list[TensorFile]) -> None:
        self.where: dict[str, tuple[TensorFile, str]] = {}
        keys = [k for f in files for k in f]
        prefix = next((p for p in LM_PREFIXES if f"{p}embed_tokens.weight" in keys), None)
        if prefix is None:
            found = describe_checkpoint(keys, lambda k: next(f.shape(k) for f in files if k in f))
            raise TextEncoderError(
                f"{files[0].path.name} is not a Qwen2.5-VL text encoder: it appears to be {found}. Expected "
                f"{QWEN_FILE.name} (or {QWEN_FP8_FILE.name}) or a {OFFICIAL_FOLDER} folder in "
                f"models/{QWEN_FILE.folder}."
            )
        for f in files:
            for key in f:
                if key.startswith(prefix) and not key.startswith(("visual.", "model.visual.", "lm_head.")):
                    self.where[key[len(prefix) :]] = (f, key)
        self.prefix = prefix
        # How messages name the encoder: its file, or the folder of its shards.
        self.file_name = files[0].path.name if len(files) == 1 else files[0].path.parent.name
        if not any(re.match(r"layers\.\d+\.self_attn\.q_proj\.weight$", k) for k in self.where):
            raise TextEncoderError(f"{files[0].path.name} has token embeddings but no decoder layers")

    def __contains__(self, name: str) -> bool:
        return name in self.where

    def shape(self, name: str) -> tuple[int, ...]:
        f, key = self.where[name]
        return f.shape(key)

    def dtype(self, name: str) -> torch.dtype:
        f, key = self.where[name]
        return f.dtype(key)

    def get(self, name: str) -> torch.Tensor:
        f, key = self.where[name]
        return f.get(key)

    def read(self, name: str) -> torch.Tensor | Fp8Weight:
        """One parameter; an fp8 tensor comes with its scale (1 when the file has none: a plain cast)."""
        tensor = self.get(name)
        if tensor.dtype not in FP8_DTYPES:
            return tensor
        scale = self.scale_for(name)
        return Fp8Weight(tensor, torch.ones(()) if scale is None else scale)

    def scale_for(self, name: str) -> torch.Tensor | None:
        """ComfyUI's scaled-fp8 files keep a per-tensor ``scale_weight`` beside each fp8 weight."""
        module = name.removesuffix(".weight")
        for suffix in (".scale_weight", ".weight_scale"):
            if module + suffix in self.where:
                return self.get(module + suffix).float()
        return None


def _text_config(tensors: _Tensors, folder_config: dict | None):
    from transformers import Qwen2_5_VLTextConfig

    if folder_config is not None:
        text = folder_config.get("text_config") or folder_config
        return Qwen2_5_VLTextConfig(**{k: v for k, v in text.items() if k not in ("architectures", "model_type")})
    vocab, hidden = tensors.shape("embed_tokens.weight")
    layers = 1 + max(int(m[1]) for k in tensors.where if (m := re.match(r"layers\.(\d+)\.", k)))
    heads = tensors.shape("layers.0.self_attn.q_proj.weight")[0] // QWEN_HEAD_DIM
    kv_heads = tensors.shape("layers.0.self_attn.k_proj.weight")[0] // QWEN_HEAD_DIM
    if heads * QWEN_HEAD_DIM != hidden or kv_heads < 1:
        raise TextEncoderError(
            f"the Qwen file's shapes (hidden {hidden}, q_proj {tensors.shape('layers.0.self_attn.q_proj.weight')}) "
            f"do not fit Qwen2.5's {QWEN_HEAD_DIM}-dim heads; use the model's folder with its config.json"
        )
    # Qwen2.5-VL-7B's values for everything shapes cannot tell.
    return Qwen2_5_VLTextConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=tensors.shape("layers.0.mlp.gate_proj.weight")[0],
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        rms_norm_eps=1e-6,
        rope_theta=1_000_000.0,
        max_position_embeddings=128000,
        rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]},
        hidden_act="silu",
        tie_word_embeddings=False,
    )


def load_tokenizer(candidates: list[Path]):
    """The first Qwen2 tokenizer found among ``candidates`` (the model folder, then the host's copy)."""
    from transformers import Qwen2TokenizerFast

    for folder in candidates:
        if folder and any((folder / name).is_file() for name in TOKENIZER_FILES):
            return Qwen2TokenizerFast.from_pretrained(str(folder))
    searched = ", ".join(str(c) for c in candidates if c) or "nowhere"
    raise TextEncoderError(
        "no Qwen2.5 tokenizer found (searched: " + searched + "). A single-file text encoder carries no tokenizer: "
        "run inside ComfyUI (which ships comfy/text_encoders/qwen25_tokenizer) or put tokenizer.json / vocab.json "
        "+ merges.txt next to the model"
    )


class QwenPromptEncoder(nn.Module):
    """Tokenize with a template, run the truncated language model, crop the template tokens."""

    def __init__(self, model: nn.Module, tokenizer, skip: int = HIDDEN_STATE_SKIP) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.skip = skip

    @property
    def dtype(self) -> torch.dtype:
        return self.model.embed_tokens.weight.dtype

    @property
    def weight_device(self) -> torch.device:
        return self.model.embed_tokens.weight.device

    def check_template(self, template: PromptTemplate) -> None:
        cost = len(self.tokenizer(template.prefix, add_special_tokens=False)["input_ids"])
        if cost != template.crop:
            raise TextEncoderError(
                f"the tokenizer turns the {template.name} template into {cost} tokens, the model expects "
                f"{template.crop}: this is not Qwen2.5's tokenizer"
            )

    @torch.no_grad()
    def encode(self, prompt: str, template: PromptTemplate = STAGE1_TEMPLATE) -> EncodedText:
        ids = self.tokenizer(template.format(prompt), add_special_tokens=False)["input_ids"]
        truncated_from = None
        if len(ids) > template.max_length:
            truncated_from = len(ids) - template.crop
            log.warning(
                "HunyuanImage-2.1: the prompt has %d tokens; the model reads at most %d, the rest is dropped",
                truncated_from,
                template.max_tokens,
            )
            ids = ids[: template.max_length]
        input_ids = torch.tensor([ids], device=self.weight_device)
        out = self.model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), use_cache=False)
        states = out.last_hidden_state[:, template.crop :]
        mask = torch.ones(states.shape[:2], dtype=torch.int64, device=states.device)
        return EncodedText(states, mask, truncated_from)


def _read_folder_config(path: Path) -> dict | None:
    config = path / "config.json" if path.is_dir() else None
    return json.loads(config.read_text()) if config and config.is_file() else None


def load_qwen_encoder(
    path: str | Path,
    dtype: torch.dtype | None = torch.bfloat16,
    device: torch.device | str = "cpu",
    tokenizer_dirs: list[str | Path] = (),
    operations: SimpleNamespace = nn,
) -> QwenPromptEncoder:
    """Load a Qwen2.5-VL folder or single file (bf16 or fp8-scaled) as the stage-1/refiner prompt encoder.

    Its ``Linear`` and ``Embedding`` layers are ``operations``' classes (ComfyUI's ``comfy.ops`` in the nodes).

    Tokenizer: the folder's own, else the first of ``tokenizer_dirs`` that has one (the nodes pass the host
    ComfyUI's ``qwen25_tokenizer``).
    """
    from transformers import Qwen2_5_VLTextModel

    path = Path(path)
    if not path.exists():
        raise TextEncoderError(f"{path} does not exist")
    tensors = _Tensors(_open_all(_weight_files(path)))
    config = _text_config(tensors, _read_folder_config(path))
    used_layers = config.num_hidden_layers - HIDDEN_STATE_SKIP
    if used_layers < 1:
        raise TextEncoderError(f"the text encoder has only {config.num_hidden_layers} layers")
    config.num_hidden_layers = used_layers
    config.layer_types = config.layer_types[:used_layers] if getattr(config, "layer_types", None) else None
    config._attn_implementation = "sdpa"
    first_weight = "layers.0.self_attn.q_proj.weight"
    file_dtype = tensors.dtype(first_weight)
    compute = dtype or (torch.bfloat16 if file_dtype in FP8_DTYPES else file_dtype)
    model = on_meta(lambda: Qwen2_5_VLTextModel(config))
    model.norm = nn.Identity()  # hidden_states[-3] is taken before the final norm
    expected = parameter_shapes(model)
    file_name = tensors.file_name
    require_complete(
        expected, tensors.__contains__, tensors.shape, error=TextEncoderError, file_name=file_name,
        what="Qwen2.5-VL text encoder", fix=FIX,
    )  # fmt: skip
    on_meta(lambda: adopt_operations(model, operations))
    load_weights(model, expected, tensors.read, dtype=compute, device=device, error=TextEncoderError,
                 file_name=file_name, operations=operations)  # fmt: skip
    _rebuild_rotary(model, config, device)
    tokenizer = load_tokenizer([path if path.is_dir() else path.parent, *map(Path, tokenizer_dirs)])
    encoder = QwenPromptEncoder(model.eval(), tokenizer)
    encoder.check_template(STAGE1_TEMPLATE)
    log.info(
        "loaded Qwen2.5-VL text encoder from %s (%d of %d layers, hidden %d, %s)",
        path.name, used_layers, used_layers + HIDDEN_STATE_SKIP, config.hidden_size, file_dtype,
    )  # fmt: skip
    return encoder


def _rebuild_rotary(model: nn.Module, config, device) -> None:
    """Rotary tables are computed buffers, not weights: build them for real after the meta-device construction."""
    rotary = type(model.rotary_emb)
    for name, module in list(model.named_modules()):
        if isinstance(module, rotary):
            parent, _, child = name.rpartition(".")
            with torch.device(device):
                setattr(model.get_submodule(parent) if parent else model, child, rotary(config=config))
    left = [n for n, b in model.named_buffers() if b.is_meta]
    if left:
        raise TextEncoderError(f"internal: buffers left on the meta device after loading: {left[:3]}")
