"""Templates and quoted-text extraction, against the official rules and the host's real tokenizer."""

from __future__ import annotations

import pytest
from text_files import HOST_TEXT, QWEN_TOKENIZER

from hunyuan_core.text import REFINER_TEMPLATE, STAGE1_TEMPLATE, extract_quoted, glyph_prompt
from hunyuan_core.text.encoder import glyph_problem
from hunyuan_core.text.prompt import GLYPH_MAX_TOKENS

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ('A sign that says "Hello"', ["Hello"]),
        ("A poster reading ‘Tencent’", ["Tencent"]),
        ("A cup printed with “China”", ["China"]),
        ('Two signs: "Open" and "Closed"', ["Open", "Closed"]),
        ('Mixed “second” then "first" then ‘middle’', ["first", "middle", "second"]),  # official pattern order
        ('An empty quote "" here', [""]),
        ("A banner with “腾讯混元” in red", ["腾讯混元"]),
        ("It's the cat's toy and 'not glyph text'", []),  # ASCII single quotes are not extracted
        ("A quiet lake at dawn", []),
        ('An unterminated "quote', []),
    ],
)
def test_quote_extraction_table(prompt, expected):
    assert extract_quoted(prompt) == expected


def test_glyph_prompt_format():
    assert glyph_prompt(["Tencent", "China"]) == 'Text "Tencent". Text "China". '
    assert glyph_prompt([]) == ""


def test_stage1_template_costs_exactly_34_tokens_with_the_host_tokenizer():
    from transformers import Qwen2Tokenizer, Qwen2TokenizerFast

    for cls in (Qwen2Tokenizer, Qwen2TokenizerFast):  # the official code uses the slow one
        tokenizer = cls.from_pretrained(str(QWEN_TOKENIZER))
        assert len(tokenizer(STAGE1_TEMPLATE.prefix, add_special_tokens=False)["input_ids"]) == 34
        ids = tokenizer(STAGE1_TEMPLATE.format("a red apple"), add_special_tokens=False)["input_ids"]
        kept = tokenizer.convert_ids_to_tokens(ids[STAGE1_TEMPLATE.crop :])
        assert kept == ["a", "Ġred", "Ġapple", "<|im_end|>"]


def test_template_constants():
    assert (STAGE1_TEMPLATE.crop, STAGE1_TEMPLATE.max_tokens, STAGE1_TEMPLATE.max_length) == (34, 1000, 1034)
    assert (REFINER_TEMPLATE.crop, REFINER_TEMPLATE.max_tokens) == (36, 256)
    assert STAGE1_TEMPLATE.format("x").endswith("<|im_start|>user\nx<|im_end|>")
    assert "<|start_header_id|>user<|end_header_id|>\n\nx<|eot_id|>" in REFINER_TEMPLATE.format("x")


class CountingGlyph:
    """A glyph encoder as ``glyph_problem`` sees it: the host's real ByT5 tokenizer, no weights."""

    def __init__(self) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(HOST_TEXT / "byt5_tokenizer"))

    def token_count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=True)["input_ids"])


@pytest.mark.parametrize(
    ("texts", "tokens"),
    [
        (["Tencent"], 17),  # 'Text "' + 7 bytes + '". ' + EOS
        (["x" * 118], 128),  # the limit itself
        (["x" * 119], 129),
        (["ab", "c" * 110], 131),  # each span brings its own 9 bytes of format
        (["腾讯" * 20], 130),  # 3 bytes a character
    ],
)
def test_glyph_text_over_the_encoders_limit_is_refused_with_its_count(texts, tokens):
    glyph = CountingGlyph()
    assert glyph.token_count(glyph_prompt(texts)) == tokens  # one token per UTF-8 byte, plus EOS
    problem = glyph_problem(glyph, texts)
    assert (problem is not None) == (tokens > GLYPH_MAX_TOKENS), problem
    if problem:
        assert f"is {tokens} ByT5 tokens long" in problem and f"reads at most {GLYPH_MAX_TOKENS}" in problem
        assert "shorten it" in problem
    assert glyph_problem(None, texts) is None and glyph_problem(glyph, []) is None
