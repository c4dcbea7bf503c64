"""The Glyph-SDXL-v2 ByT5 encoder that reads quoted text for HunyuanImage-2.1.

It is a T5 encoder (byt5-small widened to a 1510-token vocabulary with colour and font tokens). It runs in fp32
as in the official pipeline. Text is encoded without padding: padded positions are masked out of T5's
bidirectional attention, so the valid tokens come out identical to the official 128-token padded run.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from ..checkpoints.complete import redownload, require_complete
from ..checkpoints.files import TensorFile, open_checkpoint
from ..checkpoints.identify import describe_checkpoint
from ..checkpoints.meta import load_weights, on_meta, parameter_shapes
from ..checkpoints.operations import adopt_operations
from ..variants import GLYPH_FILE
from .prompt import GLYPH_MAX_TOKENS
from .qwen import EncodedText, TextEncoderError

log = logging.getLogger(__name__)

GLYPH_WIDTH = 1472  # Glyph-SDXL-v2's d_model; HunyuanImage-2.1's byt5_in expects it
GLYPH_VOCAB = 1510
# Official Glyph-SDXL-v2 checkpoints wrap the encoder stack in a training module.
STACK_PREFIXES = ("module.text_tower.encoder.", "text_tower.encoder.")
COLOR_LIST = "color_idx.json"
FONT_LIST = "multilingual_10-lang_idx.json"
OFFICIAL_NAME = Path(GLYPH_FILE.official).name  # Glyph-SDXL-v2's byt5_model.pt
FIX = redownload([GLYPH_FILE.name, OFFICIAL_NAME], GLYPH_FILE.folder)


def _stack_names(file: TensorFile) -> dict[str, str]:
    """Map T5EncoderModel parameter names to the file's keys, whatever wrapper the file uses."""
    keys = list(file)
    for prefix in STACK_PREFIXES:
        if any(k.startswith(prefix) for k in keys):
            inner = {k[len(prefix) :]: k for k in keys if k.startswith(prefix)}
            break
    else:
        inner = {k.removeprefix("encoder."): k for k in keys if k.startswith("encoder.") or k == "shared.weight"}
        if "shared.weight" in inner and "embed_tokens.weight" not in inner:
            inner["embed_tokens.weight"] = inner.pop("shared.weight")
    if "block.0.layer.0.SelfAttention.q.weight" not in inner or "embed_tokens.weight" not in inner:
        found = describe_checkpoint(keys, file.shape)
        raise TextEncoderError(
            f"{file.path.name} is not a ByT5 glyph encoder: it appears to be {found}. Expected "
            f"{GLYPH_FILE.name} or Glyph-SDXL-v2's {OFFICIAL_NAME} in models/{GLYPH_FILE.folder}."
        )
    return {("shared.weight" if k == "embed_tokens.weight" else f"encoder.{k}"): v for k, v in inner.items()}


def _t5_config(file: TensorFile, names: dict[str, str]):
    from transformers import T5Config

    vocab, width = file.shape(names["shared.weight"])
    layers = 1 + max(int(k.split(".")[2]) for k in names if k.startswith("encoder.block."))
    inner, _ = file.shape(names["encoder.block.0.layer.0.SelfAttention.q.weight"])
    bias = file.shape(names["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"])
    d_ff = file.shape(names["encoder.block.0.layer.1.DenseReluDense.wi_0.weight"])[0]
    heads = bias[1]
    return T5Config(
        vocab_size=vocab, d_model=width, d_kv=inner // heads, d_ff=d_ff, num_layers=layers, num_heads=heads,
        relative_attention_num_buckets=bias[0], feed_forward_proj="gated-gelu", is_encoder_decoder=False,
        use_cache=False, layer_norm_epsilon=1e-6, dropout_rate=0.0, tie_word_embeddings=False,
    )  # fmt: skip


def glyph_tokens(assets: Path) -> list[str]:
    """Glyph-SDXL-v2's added tokens, in the order they were added: colours, then fonts."""
    colors = json.loads((assets / COLOR_LIST).read_text())
    fonts = json.loads((assets / FONT_LIST).read_text())
    return [f"<color-{i}>" for i in range(len(colors))] + [f"<{code[:2]}-font-{fonts[code]}>" for code in fonts]


def load_glyph_tokenizer(candidates: list[Path], vocab: int):
    """A ByT5 tokenizer, with the colour/font tokens added when the Glyph-SDXL-v2 lists are found."""
    from transformers import ByT5Tokenizer

    for folder in candidates:
        if folder and (folder / "tokenizer_config.json").is_file():
            tokenizer = ByT5Tokenizer.from_pretrained(str(folder))
            break
    else:
        tokenizer = ByT5Tokenizer()  # byte-level: needs no vocabulary file
    for folder in candidates:
        for assets in (folder, folder / "assets") if folder else ():
            if (assets / COLOR_LIST).is_file() and (assets / FONT_LIST).is_file() and len(tokenizer) < vocab:
                tokenizer.add_tokens(glyph_tokens(assets), special_tokens=True)
    if len(tokenizer) > vocab:
        raise TextEncoderError(f"the ByT5 tokenizer has {len(tokenizer)} tokens but the model only {vocab}")
    return tokenizer


class GlyphEncoder(nn.Module):
    """Encode ``Text "…". `` strings to at most 128 ByT5 states (EOS included)."""

    def __init__(self, model: nn.Module, tokenizer) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer

    @property
    def width(self) -> int:
        return self.model.config.d_model

    @property
    def weight_device(self) -> torch.device:
        return self.model.shared.weight.device

    def token_count(self, text: str) -> int:
        """How many ByT5 tokens ``text`` takes (EOS included), before any truncation."""
        return len(self.tokenizer(text, add_special_tokens=True)["input_ids"])

    @torch.no_grad()
    def encode(self, text: str) -> EncodedText:
        ids = self.tokenizer(text, truncation=True, max_length=GLYPH_MAX_TOKENS, add_special_tokens=True)["input_ids"]
        input_ids = torch.tensor([ids], device=self.weight_device)
        states = self.model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).last_hidden_state
        return EncodedText(states, torch.ones(states.shape[:2], dtype=torch.int64, device=states.device))


def load_glyph_encoder(
    path: str | Path,
    device: torch.device | str = "cpu",
    tokenizer_dirs: list[str | Path] = (),
    expected_width: int | None = GLYPH_WIDTH,
    operations: SimpleNamespace = nn,
) -> GlyphEncoder:
    """Load Comfy-Org's ``byt5_small_glyphxl_fp16.safetensors`` or Glyph-SDXL-v2's ``byt5_model.pt``, in fp32.

    Its ``Linear`` and ``Embedding`` layers are ``operations``' classes (ComfyUI's ``comfy.ops`` in the nodes).
    """
    from transformers import T5EncoderModel

    path = Path(path)
    file = open_checkpoint(path, "the ByT5 glyph encoder", TextEncoderError)
    names = _stack_names(file)
    config = _t5_config(file, names)
    if expected_width is not None and config.d_model != expected_width:
        raise TextEncoderError(
            f"{path.name} is a T5 encoder of width {config.d_model}, but HunyuanImage-2.1 needs the Glyph-SDXL-v2 "
            f"ByT5 encoder of width {expected_width} ({GLYPH_FILE.name})"
        )
    model = on_meta(lambda: T5EncoderModel(config))
    expected = parameter_shapes(model)  # the embedding once: encoder.embed_tokens is shared.weight
    require_complete(
        expected, names.__contains__, lambda name: file.shape(names[name]), error=TextEncoderError,
        file_name=path.name, what="ByT5 glyph encoder", fix=FIX,
    )  # fmt: skip
    on_meta(lambda: adopt_operations(model, operations))
    load_weights(
        model, expected, lambda name: file.get(names[name]), dtype=torch.float32, device=device,
        error=TextEncoderError, file_name=path.name, operations=operations,
    )  # fmt: skip
    model.encoder.embed_tokens = model.shared
    folder = path.parent
    tokenizer = load_glyph_tokenizer([folder, *map(Path, tokenizer_dirs)], config.vocab_size)
    log.info("loaded ByT5 glyph encoder from %s (width %d, vocab %d)", path.name, config.d_model, config.vocab_size)
    return GlyphEncoder(model.eval(), tokenizer)
