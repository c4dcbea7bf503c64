"""Prompt encoding against diffusers 0.39.0's ``HunyuanImagePipeline.encode_prompt`` on tiny random encoders."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_close
from text_files import (
    BYT5_TOKENIZER,
    QWEN_TOKENIZER,
    save_glyph_comfy,
    save_qwen_folder,
    tiny_glyph_t5,
    tiny_qwen_vl,
)

from hunyuan_core.text import STAGE1_TEMPLATE
from hunyuan_core.text.byt5 import load_glyph_encoder
from hunyuan_core.text.encoder import encode_prompt
from hunyuan_core.text.qwen import load_qwen_encoder

pytestmark = pytest.mark.parity

REL_TOL = 1e-5
PROMPTS = [
    "A watercolor fox sleeping under a maple tree, soft morning light",
    'A neon sign that says "OPEN 24H" above a diner door, and a mug printed with “咖啡”',
    "",
]


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    from diffusers import HunyuanImagePipeline
    from transformers import ByT5Tokenizer, Qwen2Tokenizer

    folder = tmp_path_factory.mktemp("qwen")
    qwen_vl = tiny_qwen_vl()
    t5 = tiny_glyph_t5()
    save_qwen_folder(qwen_vl, folder / "Qwen2.5-VL-tiny")
    glyph_path = save_glyph_comfy(t5, folder / "byt5_small_glyphxl_fp16.safetensors")
    t5 = t5.half().float()  # the file is fp16: compare against the same rounded weights
    pipe = HunyuanImagePipeline(
        scheduler=None, vae=None, transformer=None,
        text_encoder=qwen_vl.float(), tokenizer=Qwen2Tokenizer.from_pretrained(str(QWEN_TOKENIZER)),
        text_encoder_2=t5, tokenizer_2=ByT5Tokenizer.from_pretrained(str(BYT5_TOKENIZER)),
    )  # fmt: skip
    qwen = load_qwen_encoder(folder / "Qwen2.5-VL-tiny", dtype=torch.float32)
    glyph = load_glyph_encoder(glyph_path, tokenizer_dirs=[BYT5_TOKENIZER], expected_width=None)
    return pipe, qwen, glyph


@pytest.mark.parametrize("prompt", PROMPTS, ids=["plain", "quoted", "empty"])
def test_encode_prompt_matches_diffusers(encoders, prompt):
    pipe, qwen, glyph = encoders
    with torch.no_grad():
        ref, ref_mask, ref2, ref_mask2 = pipe.encode_prompt(prompt, device=torch.device("cpu"))
    ours = encode_prompt(qwen, glyph, prompt)
    n = int(ref_mask.sum())
    assert ref_mask.shape == (1, 1000) and torch.equal(ref_mask[0, :n], torch.ones(n, dtype=ref_mask.dtype))
    assert ours.mllm.shape[1] == n and torch.equal(ours.mllm_mask, torch.ones(1, n, dtype=torch.int64))
    assert_close(ours.mllm.float(), ref[:, :n].float(), REL_TOL, min_scale=0.0)
    nb = int(ref_mask2.sum())
    assert ours.has_quoted_text == (nb > 0)
    assert ours.byt5.shape[1] == nb and int(ours.byt5_mask.sum()) == nb
    if nb:
        assert torch.equal(ref_mask2[0, :nb], torch.ones(nb, dtype=ref_mask2.dtype))
        assert_close(ours.byt5, ref2[:, :nb], REL_TOL, min_scale=0.0)
    else:
        assert not ref2.any()


def test_unpadded_equals_padded_on_valid_tokens(encoders):
    """The official run pads to 1034 tokens; ours does not. Valid states must not change."""
    _, qwen, _ = encoders
    prompt = PROMPTS[0]
    ids = qwen.tokenizer(STAGE1_TEMPLATE.format(prompt), add_special_tokens=False)["input_ids"]
    padded = torch.full((1, STAGE1_TEMPLATE.max_length), qwen.tokenizer.pad_token_id)
    padded[0, : len(ids)] = torch.tensor(ids)
    mask = torch.zeros_like(padded)
    mask[0, : len(ids)] = 1
    with torch.no_grad():
        full = qwen.model(input_ids=padded, attention_mask=mask, use_cache=False).last_hidden_state
    ours = qwen.encode(prompt)
    assert_close(ours.states, full[:, STAGE1_TEMPLATE.crop : len(ids)], REL_TOL, min_scale=0.0)


def test_explicit_glyph_text_replaces_extraction(encoders):
    _, qwen, glyph = encoders
    out = encode_prompt(qwen, glyph, "A plain prompt without quotes", glyph_texts=["SALE"])
    assert out.has_quoted_text and out.glyph_text == 'Text "SALE". '
    assert torch.equal(out.byt5, glyph.encode('Text "SALE". ').states)


def test_long_prompt_is_truncated_with_a_warning(encoders, caplog):
    _, qwen, _ = encoders
    prompt = " ".join(["word"] * 1200)
    with caplog.at_level("WARNING"):
        out = qwen.encode(prompt)
    assert out.states.shape[1] == 1000 and out.truncated_from is not None and out.truncated_from > 1000
    assert "the model reads at most 1000" in caplog.text
