"""Qwen2.5-VL-7B's language model as HunyuanImage-2.1's prompt encoder (the vision tower is never loaded).

The official encoder takes ``hidden_states[-3]`` without the final norm. This module builds the language model
only up to that layer (the last two layers and the final norm are never loaded or run), and encodes without
padding: in a causal model trailing padding cannot change earlier states, so the valid tokens come out identical
to the official 1034-token padded run at a fraction of the cost.

Besides safetensors files and Hugging Face folders it reads llama.cpp GGUF files of Qwen2.5-VL-7B(-Instruct), what
users download as e.g. ``Qwen2.5-VL-7B-Instruct-Q4_K_M.gguf`` (architecture ``qwen2vl``; ``qwen2`` is accepted too).
llama.cpp's tensor names are mapped back to transformers' (its converter stores Qwen2's q/k weights unpermuted: its
Qwen2 rope rotates halves as transformers does), the config comes from the shapes, checked against the file's
metadata, and block-quantized weights stay quantized (linear layers and the embedding table, ``checkpoints.meta``).
The tokenizer still comes from the host's folders: a GGUF's embedded vocabulary is not used. Text-only prompts give
M-RoPE three equal position rows (transformers' default when no ``position_ids`` are passed), so whatever file the
weights come from, the rotary embedding is plain 1-D RoPE.
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

from ..checkpoints.complete import detect_or_damaged, redownload, require_complete
from ..checkpoints.errors import CheckpointError
from ..checkpoints.files import TensorFile, open_checkpoint
from ..checkpoints.fp8 import FP8_DTYPES, Fp8Weight, linear_weights, quantizing_reader
from ..checkpoints.gguf_file import GGMLWeight, GGUFFile
from ..checkpoints.gguf_quants import SUPPORTED_TYPES
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
# llama.cpp GGUFs: the architectures its converter gives Qwen2.5-VL's language model (Qwen2VLModel) and plain Qwen2.
GGUF_ARCHITECTURES = ("qwen2vl", "qwen2")
GGUF_EXAMPLE = "Qwen2.5-VL-7B-Instruct-Q4_K_M.gguf"
GGUF_FIX = (
    f"Download a llama.cpp GGUF of Qwen2.5-VL-7B-Instruct again (e.g. {GGUF_EXAMPLE}) into models/{QWEN_FILE.folder}"
)
# llama.cpp's tensor names (gguf-py's ``gguf.constants.TENSOR_NAMES``, matched to Hugging Face's by
# ``gguf.tensor_mapping``) -> transformers' names. ``output`` (the LM head) has no counterpart: it is never used.
GGUF_MODEL_NAMES = {"token_embd": "embed_tokens", "output_norm": "norm"}
GGUF_LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
# GGUF metadata (``{arch}.<key>``) that restates a size the shapes already tell: it must agree with them.
GGUF_SIZE_KEYS = {
    "embedding_length": "hidden_size",
    "block_count": "num_hidden_layers",
    "feed_forward_length": "intermediate_size",
    "attention.head_count": "num_attention_heads",
    "attention.head_count_kv": "num_key_value_heads",
    "vocab_size": "vocab_size",
}
# GGUF metadata the shapes cannot tell, with the config field it sets (Qwen2.5-VL-7B's values when absent).
GGUF_SETTING_KEYS = {
    "rope.freq_base": "rope_theta",
    "attention.layer_norm_rms_epsilon": "rms_norm_eps",
    "context_length": "max_position_embeddings",
}
QWEN_CONSTANTS = {"rms_norm_eps": 1e-6, "rope_theta": 1_000_000.0, "max_position_embeddings": 128000}


class TextEncoderError(CheckpointError):
    """A text-encoder file, folder or tokenizer that cannot serve as HunyuanImage-2.1's prompt encoder."""


@dataclass
class EncodedText:
    states: torch.Tensor  # [1, L, D], valid tokens only
    mask: torch.Tensor  # [1, L] int64, all ones
    truncated_from: int | None = None  # prompt token count before truncation, when it was cut


def weight_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
        if not files:
            raise TextEncoderError(f"{path} holds no .safetensors or .bin weight files")
        return files
    return [path]


def open_weight_files(files: list[Path]) -> list[TensorFile]:
    return [open_checkpoint(f, WHAT, TextEncoderError) for f in files]


class QwenTensors:
    """The language model's tensors across one or more files, under plain ``layers.N...`` names.

    ``gguf`` is the file when it is a llama.cpp GGUF (its names mapped to transformers'), else None."""

    def __init__(self, where: dict[str, tuple[TensorFile | GGUFFile, str]], file_name: str) -> None:
        self.where = where
        self.file_name = file_name  # how messages name the encoder: its file, or the folder of its shards
        self.gguf: GGUFFile | None = None

    @classmethod
    def from_files(cls, files: list[TensorFile | GGUFFile]) -> QwenTensors:
        if len(files) == 1 and isinstance(files[0], GGUFFile):
            return cls.from_gguf(files[0])
        keys = [k for f in files for k in f]
        prefix = next((p for p in LM_PREFIXES if f"{p}embed_tokens.weight" in keys), None)
        if prefix is None:
            found = describe_checkpoint(keys, lambda k: next(f.shape(k) for f in files if k in f))
            raise TextEncoderError(
                f"{files[0].path.name} is not a Qwen2.5-VL text encoder: it appears to be {found}. Expected "
                f"{QWEN_FILE.name} (or {QWEN_FP8_FILE.name}), a {OFFICIAL_FOLDER} folder or a llama.cpp GGUF of it "
                f"(e.g. {GGUF_EXAMPLE}) in models/{QWEN_FILE.folder}."
            )
        where = {}
        for f in files:
            for key in f:
                if key.startswith(prefix) and not key.startswith(("visual.", "model.visual.", "lm_head.")):
                    where[key[len(prefix) :]] = (f, key)
        tensors = cls(where, files[0].path.name if len(files) == 1 else files[0].path.parent.name)
        tensors.require_layers()
        return tensors

    @classmethod
    def from_gguf(cls, file: GGUFFile) -> QwenTensors:
        """A llama.cpp GGUF of Qwen2.5-VL's language model; other architectures and GGML types this pack cannot
        dequantize are refused by name."""
        name = file.path.name
        arch = file.architecture
        if arch not in GGUF_ARCHITECTURES:
            raise TextEncoderError(
                f"{name} is not a Qwen2.5-VL text encoder: it appears to be {_describe_gguf(file)}. Expected a "
                f"llama.cpp GGUF of Qwen2.5-VL-7B-Instruct (architecture 'qwen2vl', e.g. {GGUF_EXAMPLE}), "
                f"{QWEN_FILE.name} or a {OFFICIAL_FOLDER} folder in models/{QWEN_FILE.folder}."
            )
        parts = _metadata_number(file, "split.count")
        if parts is not None and parts > 1:
            index = int(_metadata_number(file, "split.no") or 0) + 1
            raise TextEncoderError(
                f"{name} is part {index} of a Qwen2.5-VL GGUF split into {int(parts)} files, which this pack cannot "
                "read piecewise: merge the parts into one file with llama.cpp's `llama-gguf-split --merge` (or "
                f"download a single-file quantization such as {GGUF_EXAMPLE})"
            )
        where = {mapped: (file, key) for key in file if (mapped := _from_llama_cpp(key)) is not None}
        if "embed_tokens.weight" not in where:
            raise TextEncoderError(
                f"{name} is a GGUF of architecture {arch!r} without the token embedding (token_embd.weight): not a "
                f"complete Qwen2.5-VL language model. {GGUF_FIX}."
            )
        unsupported = {key: kind for key, kind in file.unsupported_types().items() if _from_llama_cpp(key)}
        if unsupported:
            raise TextEncoderError(
                f"{name} is a Qwen2.5-VL GGUF (architecture {arch!r}) that stores {len(unsupported)} of the language "
                f"model's tensors as GGML type {', '.join(sorted(set(unsupported.values())))} (e.g. "
                f"{next(iter(unsupported))}), which this pack cannot dequantize. Supported: "
                f"{', '.join(SUPPORTED_TYPES)}; use a file of one of those quantizations (Q8_0, Q6_K, Q5_K_M, Q4_K_M "
                "... are)"
            )
        if arch == "qwen2":
            log.warning(
                "%s is a plain 'qwen2' GGUF: it works only if it holds Qwen2.5-VL-7B's language model (Qwen2.5-7B "
                "has the same shapes but other weights)",
                name,
            )
        if re.search(r"qwen2[-_ ]vl", file.metadata.get("general.name", ""), re.IGNORECASE):
            title = file.metadata["general.name"]
            log.warning("%s says it is %r: HunyuanImage-2.1 was trained with Qwen2.5-VL, not Qwen2-VL", name, title)
        tensors = cls(where, name)
        tensors.gguf = file
        tensors.require_layers()
        return tensors

    def file_key(self, name: str) -> str:
        """How the file spells a model name (for messages about missing tensors)."""
        if name in self.where:
            return self.where[name][1]
        return _to_llama_cpp(name) if self.gguf else name

    def require_layers(self) -> None:
        if not any(re.match(r"layers\.\d+\.self_attn\.q_proj\.weight$", k) for k in self.where):
            raise TextEncoderError(f"{self.file_name} has token embeddings but no decoder layers")

    def __contains__(self, name: str) -> bool:
        return name in self.where

    def shape(self, name: str) -> tuple[int, ...]:
        f, key = self.where[name]
        return f.shape(key)

    def dtype(self, name: str) -> torch.dtype:
        f, key = self.where[name]
        return f.dtype(key)

    def get(self, name: str) -> torch.Tensor | GGMLWeight:
        f, key = self.where[name]
        return f.get(key)

    def read(self, name: str) -> torch.Tensor | Fp8Weight | GGMLWeight:
        """One parameter; an fp8 tensor comes with its scale (1 when the file has none: a plain cast), GGUF blocks
        stay quantized (``load_weights`` keeps them so in linear layers and expands them elsewhere)."""
        tensor = self.get(name)
        if isinstance(tensor, GGMLWeight) or tensor.dtype not in FP8_DTYPES:
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

    def weight_format(self) -> str:
        """How the weights are stored, for the log: "torch.bfloat16", "GGUF Q4_K 141, F32 141, Q6_K 29" ..."""
        if self.gguf is None:
            return str(self.dtype("layers.0.self_attn.q_proj.weight"))
        counts: dict[str, int] = {}
        for _, key in self.where.values():
            kind = self.gguf.type_name(key)
            counts[kind] = counts.get(kind, 0) + 1
        return "GGUF " + ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items(), key=lambda item: -item[1]))


def _from_llama_cpp(key: str) -> str | None:
    """transformers' name of a llama.cpp tensor name (``blk.3.attn_q.weight`` -> ``layers.3.self_attn.q_proj.weight``);
    None for tensors the encoder does not use (the LM head ``output``, rope tables) or does not know."""
    stem, _, leaf = key.rpartition(".")
    if leaf not in ("weight", "bias"):
        return None
    if stem in GGUF_MODEL_NAMES:
        return f"{GGUF_MODEL_NAMES[stem]}.{leaf}"
    match = re.fullmatch(r"blk\.(\d+)\.(\w+)", stem)
    if match and match[2] in GGUF_LAYER_NAMES:
        return f"layers.{match[1]}.{GGUF_LAYER_NAMES[match[2]]}.{leaf}"
    return None


def _to_llama_cpp(name: str) -> str:
    """llama.cpp's name of a transformers name (the inverse of ``_from_llama_cpp``)."""
    module, _, leaf = name.rpartition(".")
    for gguf_name, ours in GGUF_MODEL_NAMES.items():
        if module == ours:
            return f"{gguf_name}.{leaf}"
    match = re.fullmatch(r"layers\.(\d+)\.(.+)", module)
    for gguf_name, ours in GGUF_LAYER_NAMES.items():
        if match and match[2] == ours:
            return f"blk.{match[1]}.{gguf_name}.{leaf}"
    return name


def _describe_gguf(file: GGUFFile) -> str:
    """What a GGUF of another architecture appears to be, with its architecture, for the refusal."""
    keys = file.keys()
    if file.architecture == "clip" or any(k.startswith(("mm.", "v.blk.")) for k in keys):
        found = "the vision projector (mmproj) of a llama.cpp vision-language model, not its language model"
    elif any(k.startswith("enc.blk.") for k in keys):
        found = "a text encoder (T5)"
    elif any(k.startswith("blk.") for k in keys):
        found = "a llama.cpp GGUF of another language model"
    else:
        found = describe_checkpoint(keys, file.shape)
    return f"{found} (GGUF architecture {file.architecture or 'not set'!r})"


def _metadata_number(file: GGUFFile, key: str) -> float | None:
    """A numeric GGUF metadata value, None when absent; a non-number is a damaged file."""
    text = file.metadata.get(key)
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise TextEncoderError(
            f"{file.path.name}: its GGUF metadata {key} is {text!r}, not a number; the file is damaged. {GGUF_FIX}."
        ) from None


def _gguf_settings(file: GGUFFile, sizes: dict[str, int]) -> dict[str, float | int]:
    """Check the sizes a GGUF's metadata restates against its shapes; return the constants only the metadata has."""
    arch = file.architecture
    for key, field in GGUF_SIZE_KEYS.items():
        value = _metadata_number(file, f"{arch}.{key}")
        if value is not None and value != sizes[field]:
            raise TextEncoderError(
                f"{file.path.name} is an inconsistent Qwen2.5-VL GGUF: its metadata says {arch}.{key} = {value:g}, "
                f"its tensors say {field} = {sizes[field]}. The file was damaged or badly converted. {GGUF_FIX}."
            )
    for key in ("attention.key_length", "attention.value_length"):
        value = _metadata_number(file, f"{arch}.{key}")
        if value is not None and value != QWEN_HEAD_DIM:
            raise TextEncoderError(
                f"{file.path.name} is not Qwen2.5-VL-7B's language model: its metadata says {arch}.{key} = "
                f"{value:g}, Qwen2.5's attention heads are {QWEN_HEAD_DIM} wide. {GGUF_FIX}."
            )
    settings: dict[str, float | int] = {}
    for key, field in GGUF_SETTING_KEYS.items():
        value = _metadata_number(file, f"{arch}.{key}")
        if value is not None:
            settings[field] = int(value) if field == "max_position_embeddings" else value
    return settings


def read_text_config(tensors: QwenTensors, folder_config: dict | None):
    from transformers import Qwen2_5_VLTextConfig

    if folder_config is not None:
        text = folder_config.get("text_config") or folder_config
        return Qwen2_5_VLTextConfig(**{k: v for k, v in text.items() if k not in ("architectures", "model_type")})
    vocab, hidden = tensors.shape("embed_tokens.weight")
    q_rows = tensors.shape("layers.0.self_attn.q_proj.weight")[0]
    sizes = {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": tensors.shape("layers.0.mlp.gate_proj.weight")[0],
        "num_hidden_layers": 1 + max(int(m[1]) for k in tensors.where if (m := re.match(r"layers\.(\d+)\.", k))),
        "num_attention_heads": q_rows // QWEN_HEAD_DIM,
        "num_key_value_heads": tensors.shape("layers.0.self_attn.k_proj.weight")[0] // QWEN_HEAD_DIM,
    }
    gguf = tensors.gguf
    heads = _metadata_number(gguf, f"{gguf.architecture}.attention.head_count") if gguf else None
    if heads and hidden / heads != QWEN_HEAD_DIM:
        raise TextEncoderError(
            f"{tensors.file_name} is not Qwen2.5-VL-7B's language model: its {heads:g} attention heads are "
            f"{hidden / heads:g} wide (hidden {hidden}), Qwen2.5's are {QWEN_HEAD_DIM}. {GGUF_FIX}."
        )
    if sizes["num_attention_heads"] * QWEN_HEAD_DIM != hidden or sizes["num_key_value_heads"] < 1:
        fix = GGUF_FIX if tensors.gguf else "use the model's folder with its config.json"
        raise TextEncoderError(
            f"the Qwen file's shapes (hidden {hidden}, q_proj {tensors.shape('layers.0.self_attn.q_proj.weight')}) "
            f"do not fit Qwen2.5's {QWEN_HEAD_DIM}-dim heads; {fix}"
        )
    settings = _gguf_settings(tensors.gguf, sizes) if tensors.gguf else {}
    # Qwen2.5-VL-7B's values for everything neither shapes nor metadata tell.
    return Qwen2_5_VLTextConfig(
        **sizes,
        **(QWEN_CONSTANTS | settings),
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
        """The compute dtype: a GGUF's quantized embedding table holds bytes, its ``compute_dtype`` is the answer."""
        embed = self.model.embed_tokens
        return getattr(embed, "compute_dtype", None) or embed.weight.dtype

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
    quantize_fp8: bool = False,
) -> QwenPromptEncoder:
    """Load a Qwen2.5-VL folder, single file (bf16 or fp8-scaled) or llama.cpp GGUF as the stage-1/refiner prompt
    encoder. ``dtype=None`` computes in the file's float dtype (bf16 for fp8 and GGUF files). ``quantize_fp8``
    stores the decoder layers' linear weights of a bf16/fp32 file in e4m3 with per-tensor scales as they are read
    (half their memory; the same fp8 layer as fp8-scaled files), computing in bf16.

    Its ``Linear`` and ``Embedding`` layers are ``operations``' classes (ComfyUI's ``comfy.ops`` in the nodes); a
    GGUF's block-quantized weights stay quantized (``operations.QuantizedLinear`` / ``QuantizedEmbedding`` where the
    host has them).

    Tokenizer: the folder's own, else the first of ``tokenizer_dirs`` that has one (the nodes pass the host
    ComfyUI's ``qwen25_tokenizer``).
    """
    from transformers import Qwen2_5_VLTextModel

    path = Path(path)
    if not path.exists():
        raise TextEncoderError(f"{path} does not exist")
    tensors = QwenTensors.from_files(open_weight_files(weight_files(path)))
    fix = GGUF_FIX if tensors.gguf else FIX
    config = detect_or_damaged(
        lambda: read_text_config(tensors, _read_folder_config(path)), error=TextEncoderError,
        file_name=tensors.file_name, what="a Qwen2.5-VL text encoder", fix=fix,
    )  # fmt: skip
    used_layers = config.num_hidden_layers - HIDDEN_STATE_SKIP
    if used_layers < 1:
        raise TextEncoderError(f"the text encoder has only {config.num_hidden_layers} layers")
    config.num_hidden_layers = used_layers
    config.layer_types = config.layer_types[:used_layers] if getattr(config, "layer_types", None) else None
    config._attn_implementation = "sdpa"
    file_dtype = tensors.dtype("layers.0.self_attn.q_proj.weight")  # uint8 for GGUF blocks: never a compute dtype
    stored_compactly = tensors.gguf or file_dtype in FP8_DTYPES or quantize_fp8
    compute = dtype or (torch.bfloat16 if stored_compactly else file_dtype)
    model = on_meta(lambda: Qwen2_5_VLTextModel(config))
    model.norm = nn.Identity()  # hidden_states[-3] is taken before the final norm
    expected = parameter_shapes(model)
    file_name = tensors.file_name
    require_complete(
        expected, tensors.__contains__, tensors.shape, error=TextEncoderError, file_name=file_name,
        what="Qwen2.5-VL text encoder", fix=fix, key=tensors.file_key,
    )  # fmt: skip
    decoder_linears = linear_weights(model, ("layers.",))  # named before the host's classes replace torch's
    on_meta(lambda: adopt_operations(model, operations))
    read = quantizing_reader(tensors.read, decoder_linears) if quantize_fp8 else tensors.read
    load_weights(model, expected, read, dtype=compute, device=device, error=TextEncoderError, file_name=file_name,
                 operations=operations)  # fmt: skip
    rebuild_rotary(model, config, device)
    tokenizer = load_tokenizer([path if path.is_dir() else path.parent, *map(Path, tokenizer_dirs)])
    encoder = QwenPromptEncoder(model.eval(), tokenizer)
    encoder.check_template(STAGE1_TEMPLATE)
    log.info(
        "loaded Qwen2.5-VL text encoder from %s (%d of %d layers, hidden %d, %s)",
        path.name, used_layers, used_layers + HIDDEN_STATE_SKIP, config.hidden_size, tensors.weight_format(),
    )  # fmt: skip
    return encoder


def rebuild_rotary(model: nn.Module, config, device) -> None:
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
