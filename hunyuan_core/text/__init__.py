"""Text conditioning of HunyuanImage-2.1: Qwen2.5-VL hidden states plus the ByT5 glyph encoder.

transformers is imported only when a model is loaded, never at import time.
"""

from .prompt import GLYPH_MAX_TOKENS, REFINER_TEMPLATE, STAGE1_TEMPLATE, PromptTemplate, extract_quoted, glyph_prompt

__all__ = [
    "GLYPH_MAX_TOKENS",
    "REFINER_TEMPLATE",
    "STAGE1_TEMPLATE",
    "PromptTemplate",
    "extract_quoted",
    "glyph_prompt",
]
