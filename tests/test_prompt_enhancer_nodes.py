"""The prompt-enhancer nodes inside ComfyUI (in-process): the loader lists and loads a tiny random Qwen2.5-VL folder
from models/LLM, the enhancer node generates exactly what transformers' ``generate`` generates (greedy, the same
chat text), with a progress bar; Cancel stops it and the next run works; bad input gets a clear message."""

from __future__ import annotations

import pytest
import torch
from qwen_gguf_files import language_model_state, llama_cpp_metadata, llama_cpp_tensors, write_llama_cpp_gguf
from safetensors.torch import load_file, save_file

from hy21_host import IMPORT_PACK, run_in_comfyui
from hy21_host.tiny_models import write_tiny_enhancer

pytestmark = pytest.mark.parity

PROBE = (
    IMPORT_PACK
    + """
import logging
import torch
import comfy.model_management as mm
import comfy.utils
import folder_paths
from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration
from hy21_pack.hunyuan_core.text.reprompt import user_message
from hy21_pack.nodes.enhancer import HunyuanImage21PromptEnhancer, HunyuanImage21PromptEnhancerLoader

models = sys.argv[3]
folder_paths.add_model_folder_path("LLM", models + "/LLM")
folder_paths.add_model_folder_path("text_encoders", models + "/text_encoders", is_default=True)
result = {"listed": HunyuanImage21PromptEnhancerLoader.define_schema().inputs[0].options}

said = []
class Said(logging.Handler):
    def emit(self, record):
        said.append(record.getMessage())
logging.getLogger().addHandler(Said())
logging.getLogger().setLevel(logging.INFO)
own = HunyuanImage21PromptEnhancerLoader.execute("text_encoders/qwen_2.5_vl_7b.safetensors", "fp32").result[0]
result["own_file"] = HunyuanImage21PromptEnhancer.execute(own, "a red fox", "", 8).result[1] != ""
result["said"] = [m for m in said if "prompt enhancer" in m]
quantized = HunyuanImage21PromptEnhancerLoader.execute("LLM/PromptEnhancer-7B-Q8_0.gguf", "auto").result[0]
result["gguf_head"] = type(quantized.model.head).__name__
result["gguf_text"] = HunyuanImage21PromptEnhancer.execute(quantized, "a red fox", "", 8).result[1] != ""
result["missing"] = HunyuanImage21PromptEnhancerLoader.validate_inputs("LLM/PromptEnhancer-7B/")
enhancer = HunyuanImage21PromptEnhancerLoader.execute("LLM/PromptEnhancer-tiny/", "fp32").result[0]

progress = []
comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: progress.append((value, total)))
prompt, reasoning = HunyuanImage21PromptEnhancer.execute(enhancer, "a red fox", "", 24).result

folder = models + "/LLM/PromptEnhancer-tiny"
tokenizer = AutoTokenizer.from_pretrained(folder)
reference = Qwen2_5_VLForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
text = tokenizer.apply_chat_template([{"role": "user", "content": user_message("a red fox")}], tokenize=False,
                                     add_generation_prompt=True)
ids = tokenizer([text], return_tensors="pt")
with torch.no_grad():
    want = reference.generate(**ids, max_new_tokens=24, do_sample=False)[0, ids.input_ids.shape[1]:]
result.update(prompt=prompt, reasoning=reasoning, progress=progress,
              want=tokenizer.decode(want, skip_special_tokens=True, clean_up_tokenization_spaces=False).strip())

mm.interrupt_current_processing(True)
try:
    HunyuanImage21PromptEnhancer.execute(enhancer, "a red fox", "", 24)
    result["cancel"] = "not interrupted"
except mm.InterruptProcessingException:
    result["cancel"] = "interrupted"
mm.interrupt_current_processing(False)
result["after_cancel"] = HunyuanImage21PromptEnhancer.execute(enhancer, "a red fox", "", 24).result[1] == reasoning

for name, call in (("empty", lambda: HunyuanImage21PromptEnhancer.execute(enhancer, "  ", "", 24)),
                   ("bad_folder", lambda: HunyuanImage21PromptEnhancerLoader.execute("LLM/not-qwen/", "auto"))):
    try:
        call()
        result[name] = "accepted"
    except Exception as exc:
        result[name] = f"{type(exc).__name__}: {exc}"
"""
)


def write_gguf(folder, path) -> None:
    """The folder's language model and head as llama.cpp writes a Q8_0 GGUF (random valid blocks)."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(folder, dtype=torch.float32)
    config = model.config.text_config
    types = dict.fromkeys(("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down",
                           "token_embd", "output"), "Q8_0")  # fmt: skip
    tensors, _ = llama_cpp_tensors(language_model_state(model), config.num_hidden_layers, types)
    write_llama_cpp_gguf(path, tensors, "qwen2vl", llama_cpp_metadata(config))


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    models = tmp_path_factory.mktemp("models")
    write_tiny_enhancer(models / "LLM" / "PromptEnhancer-tiny")
    other = models / "LLM" / "not-qwen"
    other.mkdir()
    (other / "config.json").write_text('{"architectures": ["LlamaForCausalLM"], "model_type": "llama"}')
    # a GGUF in models/LLM is offered as it is; text encoder files only when they carry the LM head
    own = write_tiny_enhancer(tmp_path_factory.mktemp("own") / "Qwen2.5-VL-tiny", qwen_heads=True)
    write_gguf(own, models / "LLM" / "PromptEnhancer-7B-Q8_0.gguf")
    state = load_file(str(own / "model.safetensors"))
    encoders = models / "text_encoders"
    encoders.mkdir()
    save_file(state, str(encoders / "qwen_2.5_vl_7b.safetensors"))
    save_file(
        {k: v for k, v in state.items() if k != "lm_head.weight"}, str(encoders / "qwen_without_head.safetensors")
    )
    save_file({"encoder.weight": torch.zeros(2)}, str(encoders / "byt5_small_glyphxl_fp16.safetensors"))
    (encoders / "damaged.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    (encoders / "moved.safetensors").symlink_to(encoders / "gone.safetensors")  # a dangling link
    return run_in_comfyui(PROBE, models, timeout=600)


def test_the_loader_lists_folders_and_ggufs_of_models_llm_and_text_encoders_with_their_lm_head(results):
    assert results["listed"] == [
        "LLM/PromptEnhancer-tiny/", "LLM/not-qwen/", "LLM/PromptEnhancer-7B-Q8_0.gguf",
        "text_encoders/qwen_2.5_vl_7b.safetensors",
    ], results["listed"]  # fmt: skip


def test_a_gguf_enhances_with_its_head_kept_quantized(results):
    assert results["gguf_text"] is True
    assert "Quantized" in results["gguf_head"] or "GGUF" in results["gguf_head"], results["gguf_head"]


def test_the_text_encoders_own_file_enhances_and_the_log_says_so(results):
    assert results["own_file"] is True
    assert any("the text encoder's own file text_encoders/qwen_2.5_vl_7b.safetensors rewrites" in m
               for m in results["said"]), results["said"]  # fmt: skip


def test_the_node_generates_what_transformers_generates_and_keeps_an_unparsed_prompt(results):
    assert results["prompt"] == "a red fox"  # a random model writes no think> tags: the original comes out
    assert results["reasoning"] == results["want"] and results["want"]


def test_the_progress_bar_advances_with_the_tokens(results):
    assert results["progress"][:3] == [[8, 24], [16, 24], [24, 24]]


def test_cancel_stops_generation_and_the_next_run_works(results):
    assert results["cancel"] == "interrupted" and results["after_cancel"] is True


def test_bad_input_gets_a_message_that_names_it(results):
    assert "the prompt to enhance is empty" in results["empty"]
    assert results["missing"].startswith("model: 'LLM/PromptEnhancer-7B/' is not in models/LLM")
    assert "huggingface.co/PromptEnhancer/PromptEnhancer-7B" in results["missing"]
    assert "model: not-qwen is a LlamaForCausalLM model, not a Qwen2.5-VL causal LM" in results["bad_folder"]
