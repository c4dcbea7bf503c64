"""Text encode: prompt and negative prompt through Qwen2.5-VL, quoted text through the ByT5 glyph encoder."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from comfy_api.latest import io

from ..hunyuan_core.sampling import Conditioning as CoreConditioning
from ..hunyuan_core.text import STAGE1_TEMPLATE
from ..hunyuan_core.text.encoder import encode_prompt, glyph_problem, glyph_texts_of
from . import host, management
from .conditioning import to_comfy
from .types import TextEncoderBundle, TextEncoders

log = logging.getLogger(__name__)


def shortened(text: str, limit: int = 200) -> str:
    """``text`` for a log line: quoted, at most ``limit`` characters, the length said when cut."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def parse_glyph_text(glyph_text: str) -> list[str] | None:
    """One glyph text per line; empty means 'use the quoted text found in the prompt'."""
    lines = [line.strip() for line in glyph_text.splitlines() if line.strip()]
    return lines or None


@functools.lru_cache(maxsize=1)
def _host_tokenizer():
    from ..hunyuan_core.text.qwen import load_tokenizer

    return load_tokenizer([Path(management.host_tokenizer_dir("qwen25_tokenizer"))])


def prompt_problem(prompt: str) -> str | None:
    """Refuse, before anything runs, a prompt the model would only read in part."""
    tokens = len(_host_tokenizer()(prompt, add_special_tokens=False)["input_ids"]) + 1  # + the closing <|im_end|>
    if tokens > STAGE1_TEMPLATE.max_tokens:
        return (
            f"the prompt is {tokens} tokens long but HunyuanImage-2.1 reads at most {STAGE1_TEMPLATE.max_tokens}: "
            "shorten it (the official pipeline silently drops the rest)"
        )
    return None


class HunyuanImage21TextEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return host.build(
            io.Schema,
            node_id="HunyuanImage21TextEncode",
            display_name="HunyuanImage 2.1 Text Encode",
            category="HunyuanImage/conditioning",
            description=(
                "Encodes the prompt exactly as the official pipeline: Qwen2.5-VL hidden states (official template, "
                f'up to {STAGE1_TEMPLATE.max_tokens} tokens) plus ByT5 glyph states for text in "double quotes", ‘…’ '
                "or “…”. Quoted text also switches the base model's guidance to its text-rendering schedule."
            ),
            inputs=[
                TextEncoders.Input("text_encoders", tooltip="From the HunyuanImage 2.1 Text Encoder Loader."),
                io.String.Input(
                    "prompt",
                    multiline=True,
                    dynamic_prompts=True,
                    tooltip='What to draw. Put text to render in double quotes, e.g. a sign saying "OPEN".',
                ),
                io.String.Input(
                    "negative_prompt",
                    multiline=True,
                    default="",
                    tooltip="What to avoid (base model only; the distilled model ignores it). Official: empty.",
                ),
                host.build(
                    io.String.Input,
                    "glyph_text",
                    multiline=True,
                    default="",
                    tooltip="Optional: the exact text to render, one item per line, instead of what the prompt quotes.",
                    advanced=True,
                ),
            ],
            outputs=[
                io.Conditioning.Output(
                    display_name="positive",
                    tooltip="The prompt as ComfyUI CONDITIONING (native HunyuanImage layout), for the sampler, a "
                    "guider or any conditioning node; it also carries the prompt text for the refiner.",
                ),
                io.Conditioning.Output(
                    display_name="negative", tooltip="The negative prompt (the base model's second pass)."
                ),
            ],
            search_aliases=host.aliases("clip text encode", "prompt", "text encode", "qwen", "glyph text"),
        )

    @classmethod
    def validate_inputs(cls, prompt: str | None = None) -> bool | str:
        """The prompt's length before the run (the negative prompt's is checked as the node runs)."""
        problem = prompt_problem(prompt) if isinstance(prompt, str) else None
        return f"prompt: {problem}" if problem else True

    @classmethod
    def execute(cls, text_encoders: TextEncoderBundle, prompt: str, negative_prompt: str, glyph_text: str):
        for name, text in (("prompt", prompt), ("negative_prompt", negative_prompt)):  # linked texts arrive here
            problem = prompt_problem(text)
            if problem:
                raise ValueError(f"{name}: {problem}")
        management.load(text_encoders.qwen, text_encoders.glyph)
        qwen = text_encoders.qwen.model
        glyph = None if text_encoders.glyph is None else text_encoders.glyph.model
        explicit = parse_glyph_text(glyph_text)
        for name, texts in (
            ("glyph_text" if explicit else "prompt", glyph_texts_of(prompt, explicit)),
            ("negative_prompt", glyph_texts_of(negative_prompt)),
        ):
            problem = glyph_problem(glyph, texts)
            if problem:
                raise ValueError(f"{name}: {problem}")
        positive = encode_prompt(qwen, glyph, prompt, explicit)
        negative = encode_prompt(qwen, glyph, negative_prompt)
        if positive.has_quoted_text and glyph is None:
            log.warning("HunyuanImage-2.1: the prompt quotes text but no ByT5 glyph encoder is loaded")
        if positive.has_quoted_text:
            log.info("HunyuanImage-2.1: glyph text %s", shortened(positive.glyph_text))
        return io.NodeOutput(
            to_comfy(CoreConditioning.of(positive).to("cpu"), prompt),
            to_comfy(CoreConditioning.of(negative).to("cpu"), negative_prompt),
        )
