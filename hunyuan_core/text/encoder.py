"""Prompt -> conditioning: Qwen states for the whole prompt, ByT5 states for its quoted text."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .byt5 import GlyphEncoder
from .prompt import GLYPH_MAX_TOKENS, STAGE1_TEMPLATE, PromptTemplate, extract_quoted, glyph_prompt
from .qwen import QwenPromptEncoder


@dataclass
class PromptEmbedding:
    """One encoded prompt. ByT5 states are empty ([1, 0, D]) when the prompt has no quoted text."""

    mllm: torch.Tensor  # [1, L, 3584]
    mllm_mask: torch.Tensor  # [1, L]
    byt5: torch.Tensor  # [1, Lb, 1472]
    byt5_mask: torch.Tensor  # [1, Lb]
    has_quoted_text: bool
    glyph_text: str = ""


def glyph_texts_of(prompt: str, glyph_texts: list[str] | None = None) -> list[str]:
    """The texts to render for a prompt: ``glyph_texts`` when given, else the prompt's quoted spans."""
    return extract_quoted(prompt) if glyph_texts is None else glyph_texts


def glyph_problem(glyph: GlyphEncoder | None, texts: list[str]) -> str | None:
    """Why ``texts`` cannot be rendered whole (None when they can): the glyph encoder reads at most
    ``GLYPH_MAX_TOKENS`` ByT5 tokens of ``Text "…". `` input, and the official pipeline drops the rest silently."""
    if glyph is None or not texts:
        return None
    count = glyph.token_count(glyph_prompt(texts))
    if count <= GLYPH_MAX_TOKENS:
        return None
    return (
        f"the text to render ({len(texts)} span(s), {sum(map(len, texts))} characters) is {count} ByT5 tokens long as "
        f'the glyph encoder reads it (Text "…". per span, one token per byte) but it reads at most {GLYPH_MAX_TOKENS}: '
        "shorten it (the official pipeline silently drops the rest)"
    )


def encode_prompt(
    qwen: QwenPromptEncoder,
    glyph: GlyphEncoder | None,
    prompt: str,
    glyph_texts: list[str] | None = None,
    template: PromptTemplate = STAGE1_TEMPLATE,
) -> PromptEmbedding:
    """Encode one prompt the official way; ``glyph_texts`` (when given) replaces the quote extraction.

    ``has_quoted_text`` follows the prompt's own quotes (it selects the guidance schedule). The official pipeline
    lets a non-empty negative prompt overwrite that flag, a side effect of encoding order; this does not.
    """
    mllm = qwen.encode(prompt, template)
    texts = glyph_texts_of(prompt, glyph_texts)
    width = glyph.width if glyph is not None else 0
    if texts and glyph is not None:
        text = glyph_prompt(texts)
        byt5 = glyph.encode(text)
        return PromptEmbedding(mllm.states, mllm.mask, byt5.states, byt5.mask, True, text)
    device = mllm.states.device
    empty = torch.zeros(1, 0, width, device=device)
    no_mask = torch.zeros(1, 0, dtype=torch.int64, device=device)
    return PromptEmbedding(mllm.states, mllm.mask, empty, no_mask, bool(texts))
