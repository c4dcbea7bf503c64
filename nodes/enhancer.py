"""The prompt-enhancer nodes: the official reprompt step on a local Qwen2.5-VL causal LM (``hunyuan_core.text``).

The loader reads a Hugging Face folder or a GGUF from ``models/LLM`` (or ``models/text_encoders``, where the text
encoder's own file serves when it carries the LM head) and hands the model to ComfyUI's model management like the
text encoder (offloaded after use, Cancel checked at every layer). The enhancer node is STRING in, STRING out:
greedy decoding needs no seed, so the same prompt gives the same text and ComfyUI's cache skips the node when
nothing changed.
"""

from __future__ import annotations

import logging
import os

import comfy.model_management as mm
import comfy.utils
import folder_paths
import torch
from comfy_api.latest import io

from ..hunyuan_core.text.enhancer import carries_lm_head, load_prompt_enhancer
from ..hunyuan_core.text.reprompt import MAX_NEW_TOKENS
from . import host, management, widgets
from .types import PromptEnhancer

log = logging.getLogger(__name__)

FOLDERS = ("LLM", "text_encoders")  # LLM first: where users keep language models for other packs too
WEIGHT_DTYPES = ("auto", "fp32", "fp8_e4m3fn")
FILE_SUFFIXES = (".safetensors", ".gguf")
GET_ENHANCER = (
    "Download the whole PromptEnhancer-7B folder (https://huggingface.co/PromptEnhancer/PromptEnhancer-7B: "
    "config.json, tokenizer files, *.safetensors) into models/LLM/PromptEnhancer-7B/, or put a GGUF of it in "
    "models/LLM, then refresh (R)"
)
PROGRESS_EVERY = 8  # tokens per progress update


def register_llm_folder() -> None:
    """``models/LLM``, where LLM packs keep their models; ComfyUI itself has no such folder."""
    if "LLM" not in folder_paths.folder_names_and_paths:
        folder_paths.add_model_folder_path("LLM", os.path.join(folder_paths.models_dir, "LLM"))


def enhancer_choices() -> list[str]:
    """What the loader offers, as ``<models folder>/<name>``: every Hugging Face folder (``name/``, with a
    config.json) in models/LLM and models/text_encoders, the ``.safetensors`` / ``.gguf`` files of models/LLM that are
    not inside such a folder, and the text encoder files that carry an LM head (Qwen2.5-VL-7B-Instruct itself can
    then rewrite, with no second model)."""
    register_llm_folder()
    choices = []
    for kind in FOLDERS:
        folders = management.model_folders(kind)
        choices += [f"{kind}/{name}" for name in folders]
        for name in management.model_files(kind):
            if not name.lower().endswith(FILE_SUFFIXES) or name.split("/")[0] + "/" in folders:
                continue
            if kind == "LLM" or _carries_lm_head(kind, name):
                choices.append(f"{kind}/{name}")
    return choices


def _carries_lm_head(kind: str, name: str) -> bool:
    """``carries_lm_head`` of a listed file, remembered while the file is unchanged (the list is built for every
    /object_info request)."""
    path = name
    try:
        path = management.resolve(kind, name)
        stat = os.stat(path)
        key = (path, stat.st_size, stat.st_mtime_ns)
        if key not in _HEAD_CACHE:
            _HEAD_CACHE[key] = carries_lm_head(path)
        return _HEAD_CACHE[key]
    except Exception as exc:  # one unreadable file must not take the node list down with it
        log.warning("HunyuanImage-2.1 prompt enhancer: %s left out of the list, it cannot be read: %s", path, exc)
        return False


_HEAD_CACHE: dict[tuple[str, int, int], bool] = {}


def resolve_choice(choice: str) -> str:
    """The path of an ``enhancer_choices`` entry."""
    kind, _, name = choice.partition("/")
    if kind not in FOLDERS or not name:
        raise FileNotFoundError(f"model: {choice!r} is not in models/LLM or models/text_encoders. {GET_ENHANCER}")
    return management.resolve(kind, name)


class HunyuanImage21PromptEnhancerLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return host.build(
            io.Schema,
            node_id="HunyuanImage21PromptEnhancerLoader",
            display_name="HunyuanImage 2.1 Prompt Enhancer Loader",
            category="HunyuanImage/loaders",
            description=(
                "Loads the model of the official prompt rewriting step, a Qwen2.5-VL causal LM (only its language "
                "model and LM head): a Hugging Face folder in models/LLM (or models/text_encoders), PromptEnhancer-7B, "
                "PromptEnhancer-32B (the official default) or Qwen2.5-VL-7B-Instruct; a GGUF of one in models/LLM; or "
                "the text encoder's own Qwen2.5-VL file when it carries the LM head (listed from models/text_encoders: "
                "no second model is needed, but Qwen2.5-VL-7B-Instruct is not the official rewrite model). Folders "
                "that need remote code are refused: the pack never runs a model's own Python code."
            ),
            inputs=[
                io.Combo.Input(
                    "model",
                    options=enhancer_choices(),
                    tooltip="A Hugging Face folder (config.json, tokenizer, *.safetensors) or a GGUF in models/LLM, "
                    "or a text encoder file that carries the LM head.",
                ),
                widgets.combo_input(
                    "weight_dtype",
                    WEIGHT_DTYPES,
                    default="auto",
                    tooltip="auto: bf16 (official; fp16 on GPUs without bf16). fp32: full precision (CPU). "
                    "fp8_e4m3fn stores the decoder weights in fp8 as they load (about half the memory; the rewrite "
                    "may change slightly). fp8 and GGUF files stay as they are stored.",
                ),
            ],
            outputs=[PromptEnhancer.Output(display_name="enhancer", tooltip="For the Prompt Enhancer node.")],
            search_aliases=host.aliases("prompt enhancer", "reprompt", "llm", "promptenhancer"),
        )

    @classmethod
    def validate_inputs(cls, model: str | None = None) -> bool | str:
        if model is None or model in enhancer_choices():
            return True
        return f"model: {model!r} is not in models/LLM or models/text_encoders. {GET_ENHANCER}"

    @classmethod
    def execute(cls, model: str, weight_dtype: str) -> io.NodeOutput:
        widgets.require(widgets.choice_problem("weight_dtype", weight_dtype, WEIGHT_DTYPES))
        with widgets.for_input("model"):
            enhancer = load_prompt_enhancer(
                resolve_choice(model),
                dtype=torch.float32 if weight_dtype == "fp32" else management.no_bf16_dtype() or torch.bfloat16,
                tokenizer_dirs=[management.host_tokenizer_dir("qwen25_tokenizer")],
                operations=management.operations(),
                quantize_fp8=weight_dtype == "fp8_e4m3fn",
            )
        if model.startswith("text_encoders/") and not model.endswith("/"):
            log.info(
                "HunyuanImage-2.1 prompt enhancer: the text encoder's own file %s rewrites (its LM head; "
                "Qwen2.5-VL-7B-Instruct, not the official PromptEnhancer model; no second model needed)", model
            )  # fmt: skip
        else:
            log.info("HunyuanImage-2.1 prompt enhancer: %s rewrites", model)
        return io.NodeOutput(management.patch(enhancer, "text"))


class HunyuanImage21PromptEnhancer(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return host.build(
            io.Schema,
            node_id="HunyuanImage21PromptEnhancer",
            display_name="HunyuanImage 2.1 Prompt Enhancer",
            category="HunyuanImage/conditioning",
            description=(
                "The official prompt rewriting step: the model thinks about the prompt, then rewrites it in detail "
                "(official instruction, greedy decoding, the text after its reasoning, 'single' quotes made "
                '"double" so quoted text is rendered). If the output does not parse, the original prompt comes '
                "out. Deterministic: an unchanged prompt is not generated again."
            ),
            inputs=[
                PromptEnhancer.Input("enhancer", tooltip="From the HunyuanImage 2.1 Prompt Enhancer Loader."),
                io.String.Input("prompt", multiline=True, tooltip="The prompt to rewrite."),
                io.String.Input(
                    "extra_instruction",
                    multiline=True,
                    default="",
                    tooltip="Optional, not official: one more instruction after the official one.",
                ),
                io.Int.Input(
                    "max_new_tokens",
                    default=MAX_NEW_TOKENS,
                    min=16,
                    max=8192,
                    tooltip=f"The most tokens to generate (official {MAX_NEW_TOKENS}, reasoning included).",
                ),
            ],
            outputs=[
                io.String.Output(display_name="prompt", tooltip="The rewritten prompt, for the Text Encode node."),
                io.String.Output(display_name="reasoning", tooltip="The model's reasoning about the prompt."),
            ],
            search_aliases=host.aliases("prompt enhancer", "reprompt", "rewrite prompt", "expand prompt"),
        )

    @classmethod
    def execute(cls, enhancer, prompt: str, extra_instruction: str, max_new_tokens: int) -> io.NodeOutput:
        if not prompt.strip():
            raise ValueError("prompt: the prompt to enhance is empty; write a prompt (the enhancer rewrites it)")
        management.load(enhancer)
        model = enhancer.model
        bar = comfy.utils.ProgressBar(max_new_tokens)

        def on_token(count: int, token: int) -> None:
            mm.throw_exception_if_processing_interrupted()
            if count % PROGRESS_EVERY == 0:
                bar.update_absolute(count)

        result = model.enhance(prompt, extra_instruction, max_new_tokens, on_token)
        bar.update_absolute(max_new_tokens)
        log.info("HunyuanImage-2.1 prompt enhancer (%s): %s", model.name, "rewritten" if result.rewritten else "kept")
        return io.NodeOutput(result.prompt, result.reasoning)
