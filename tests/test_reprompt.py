"""The prompt enhancer's core: the official parsing on fixed strings, the official message and chat text, and greedy
decoding token for token against ``transformers``' own ``generate`` on a tiny random Qwen2.5-VL causal LM saved in
the Hugging Face layout with the host ComfyUI's Qwen tokenizer."""

from __future__ import annotations

import json
import re
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
from hy21_host.tiny_models import write_tiny_enhancer

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
    return write_tiny_enhancer(tmp_path_factory.mktemp("PromptEnhancer-tiny"))


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


# --- the enhancer loaded by the core's own loader ------------------------------------------------------------------


def test_the_loaded_enhancer_generates_what_transformers_generates(tiny_enhancer):
    from hunyuan_core.text.enhancer import load_prompt_enhancer

    enhancer = load_prompt_enhancer(tiny_enhancer, dtype=torch.float32)
    _, want, _, _, _ = reference_and_ours(tiny_enhancer, "a red fox", 24)
    tokens = []
    text = enhancer.generate(user_message("a red fox"), 24, on_token=lambda count, token: tokens.append(token))
    assert tokens == want
    assert text == enhancer.tokenizer.decode(want, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    assert enhancer.settings == GenerationSettings((151645, 151643), 1.05)


def test_an_output_that_does_not_parse_keeps_the_original_prompt(tiny_enhancer):
    from hunyuan_core.text.enhancer import load_prompt_enhancer

    enhanced = load_prompt_enhancer(tiny_enhancer, dtype=torch.float32).enhance("a red fox", max_new_tokens=8)
    assert (enhanced.prompt, enhanced.rewritten) == ("a red fox", False)  # a random model writes no think> tags
    assert enhanced.reasoning


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"architectures": ["HunYuanForCausalLM"], "auto_map": {"AutoModelForCausalLM": "modeling_hunyuan.X"}},
            "needs its own Python code to run (trust_remote_code",
        ),
        (
            {"architectures": ["LlamaForCausalLM"], "model_type": "llama"},
            "is a LlamaForCausalLM model, not a Qwen2.5-VL causal LM: use PromptEnhancer-7B",
        ),
        (None, "is not a Hugging Face model folder (no config.json)"),
    ],
    ids=["remote-code", "other-architecture", "no-config"],
)
def test_folders_it_cannot_run_are_refused_with_what_to_use(tmp_path, config, message):
    from hunyuan_core.text.enhancer import PromptEnhancerError, load_prompt_enhancer

    if config is not None:
        (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(PromptEnhancerError, match=re.escape(message)):
        load_prompt_enhancer(tmp_path)


def test_an_empty_prompt_is_refused(tiny_enhancer):
    from hunyuan_core.text.enhancer import load_prompt_enhancer

    with pytest.raises(ValueError, match="the prompt to enhance is empty"):
        load_prompt_enhancer(tiny_enhancer, dtype=torch.float32).enhance("  ")
