"""Prompt templates and the quoted-text (glyph) extraction, exactly as the official pipeline does them."""

from __future__ import annotations

import re
from dataclasses import dataclass

SYSTEM_PROMPT = (
    "Describe the image by detailing the color, shape, size, texture, quantity, text, spatial relationships of the "
    "objects and background:"
)


@dataclass(frozen=True)
class PromptTemplate:
    """A chat template around the prompt: ``crop`` leading tokens are dropped, ``max_tokens`` kept after them."""

    name: str
    text: str
    crop: int
    max_tokens: int

    def format(self, prompt: str) -> str:
        return self.text.format(prompt)

    @property
    def prefix(self) -> str:
        """The part before the prompt (for the stage-1 template it tokenizes to exactly ``crop`` tokens)."""
        return self.text.split("{}")[0]

    @property
    def max_length(self) -> int:
        return self.crop + self.max_tokens


STAGE1_TEMPLATE = PromptTemplate(
    name="dit-llm-encode-v2",
    text=f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n{{}}<|im_end|>",
    crop=34,
    max_tokens=1000,
)
# The refiner reuses HunyuanVideo's Llama-style template; its headers are plain text to the Qwen tokenizer, so the
# prefix is 61 Qwen tokens while the official crop stays 36 (official, diffusers and ComfyUI all keep the rest).
REFINER_TEMPLATE = PromptTemplate(
    name="dit-llm-encode",
    text=(
        f"<|start_header_id|>system<|end_header_id|>\n\n{SYSTEM_PROMPT}<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"
    ),
    crop=36,
    max_tokens=256,
)

GLYPH_MAX_TOKENS = 128
# The official patterns, in this order: ASCII double quotes, Chinese single, Chinese double. ASCII single quotes
# were removed upstream (apostrophes produced false matches), so "don't" never becomes glyph text.
QUOTE_PATTERNS = (r"\"(.*?)\"", r"‘(.*?)’", r"“(.*?)”")


def extract_quoted(prompt: str) -> list[str]:
    """Every quoted span of ``prompt``: all ASCII-double matches first, then ‘…’, then “…” (official order)."""
    found: list[str] = []
    for pattern in QUOTE_PATTERNS:
        found.extend(re.findall(pattern, prompt))
    return found


def glyph_prompt(texts: list[str]) -> str:
    """The ByT5 input for a list of texts: ``Text "a". Text "b". `` (empty string when there is none)."""
    return "".join(f'Text "{t}". ' for t in texts)
