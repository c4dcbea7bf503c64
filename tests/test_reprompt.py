"""The prompt enhancer's core: the official parsing on fixed strings, the official message and chat text, and greedy
decoding token for token against ``transformers``' own ``generate`` on a tiny random Qwen2.5-VL causal LM saved in
the Hugging Face layout with the host ComfyUI's Qwen tokenizer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from hunyuan_core.text.reprompt import (
    DEFAULT_CHAT,
    OFFICIAL_INSTRUCTION,
    GenerationSettings,
    greedy_generate,
    parse_output,
    replace_single_quotes,
    user_message,
)
from hy21_host import find_comfyui

pytestmark = pytest.mark.parity


@pytest.mark.parametrize(
    ("output", "prompt", "reasoning", "rewritten"),
    [
        (
            "<think>\nA cat, so: fur.\n</think>\nA fluffy cat on a sofa.",
            "A fluffy cat on a sofa.",
            "A cat, so: fur.",
            True,
        ),
        ("<think>why</think>A sign reading 'OPEN' at ‘dusk’.", 'A sign reading "OPEN" at “dusk”.', "why", True),
        ("<think>a</think>\n\ntwo newlines", "\ntwo newlines", "a", True),  # only one leading newline goes
        ("no tags at all", "the original", "no tags at all", False),
        ("<think>unfinished", "the original", "<think>unfinished", False),
        ("<think>a</think>b<think>c</think>d", "the original", "<think>a</think>b<think>c</think>d", False),
        ("", "the original", "", False),
        ("<think>a</think>", "", "a", True),  # official: an empty rewrite is kept as it is
    ],
    ids=["two-tags", "quotes", "newlines", "none", "one", "four", "empty", "empty-rewrite"],
)
def test_parsing_follows_the_official_rules(output, prompt, reasoning, rewritten):
    got = parse_output(output, "the original")
    assert (got.prompt, got.reasoning, got.rewritten) == (prompt, reasoning, rewritten)


def test_single_quotes_become_double_only_around_words_and_curly_ones_curly_double():
    assert replace_single_quotes("it's 'HELLO' and don't") == "it's \"HELLO\" and don't"
    assert replace_single_quotes("‘你好’") == "“你好”"


def test_the_user_message_is_the_official_instruction_a_newline_and_the_prompt():
    assert user_message("a cat") == OFFICIAL_INSTRUCTION + "\na cat"
    assert user_message("a cat", "  keep it short ") == OFFICIAL_INSTRUCTION + "\nkeep it short\na cat"
    assert user_message("a cat", "   ") == OFFICIAL_INSTRUCTION + "\na cat"


@pytest.fixture(scope="module")
def tiny_enhancer(tmp_path_factory) -> Path:
    """A Qwen2.5-VL causal LM folder as Hugging Face saves it: config, safetensors, generation config (the
    Instruct release's repetition penalty 1.05 and end tokens), the host's Qwen tokenizer files."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    folder = tmp_path_factory.mktemp("PromptEnhancer-tiny")
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": 151936, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "rope_scaling": {"type": "mrope",
            "mrope_section": [2, 3, 3]}, "max_position_embeddings": 4096, "tie_word_embeddings": False,
        },
        vision_config={"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64,
                       "fullatt_block_indexes": [0]},
        tie_word_embeddings=False,
    )  # fmt: skip
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    model.save_pretrained(folder)
    generation = {"bos_token_id": 151643, "eos_token_id": [151645, 151643], "repetition_penalty": 1.05,
                  "do_sample": True, "temperature": 0.1, "top_p": 0.001, "top_k": 1}  # fmt: skip
    (folder / "generation_config.json").write_text(json.dumps(generation))
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        shutil.copy(find_comfyui() / "comfy" / "text_encoders" / "qwen25_tokenizer" / name, folder / name)
    return folder


def reference_and_ours(folder: Path, prompt: str, max_new_tokens: int, eos: list[int] | None = None):
    from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(folder, torch_dtype=torch.float32).eval()
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": user_message(prompt)}], tokenize=False, add_generation_prompt=True
    )
    ids = tokenizer([text], return_tensors="pt")
    extra = {} if eos is None else {"eos_token_id": eos}
    with torch.no_grad():
        want = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, temperature=0.0, top_k=5,
                              top_p=0.9, **extra)[0, ids.input_ids.shape[1]:].tolist()  # fmt: skip
    settings = GenerationSettings.from_folder(folder, [tokenizer.eos_token_id])
    if eos is not None:
        settings = GenerationSettings(tuple(eos), settings.repetition_penalty)
    calls = []
    got = greedy_generate(
        model.model.language_model, model.lm_head, ids.input_ids, settings, max_new_tokens,
        on_token=lambda count, token: calls.append((count, token)),
    )  # fmt: skip
    return text, want, got, calls, settings


def test_the_chat_text_is_qwen25_vl_default_rendering(tiny_enhancer):
    text, *_ = reference_and_ours(tiny_enhancer, "a cat", 1)
    assert text == DEFAULT_CHAT.format(user_message("a cat"))


def test_greedy_decoding_equals_transformers_generate_token_for_token(tiny_enhancer):
    _, want, got, calls, settings = reference_and_ours(tiny_enhancer, "一只猫 'on' a sofa", 40)
    assert settings == GenerationSettings((151645, 151643), 1.05)
    assert len(want) == 40 and got == want
    assert calls == list(enumerate(want, start=1))


def test_decoding_stops_at_an_end_token_as_generate_does(tiny_enhancer):
    _, free, *_ = reference_and_ours(tiny_enhancer, "a red fox", 12)
    stop = free[5]  # make the sixth token an end token: both must stop right after it
    _, want, got, _, _ = reference_and_ours(tiny_enhancer, "a red fox", 12, eos=[stop])
    assert got == want == free[: free.index(stop) + 1]


def test_without_a_repetition_penalty_decoding_is_plain_argmax(tiny_enhancer, tmp_path):
    folder = tmp_path / "no_penalty"
    shutil.copytree(tiny_enhancer, folder)
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": 151645}))
    _, want, got, _, settings = reference_and_ours(folder, "a cat", 16)
    assert settings == GenerationSettings((151645,), 1.0)
    assert got == want
