"""The prompt enhancer model: a Qwen2.5-VL causal LM (PromptEnhancer-7B / -32B, or Qwen2.5-VL-7B-Instruct itself)
from a Hugging Face folder, its language model and LM head only (the vision tower is never loaded).

Folders are data, never code: a folder whose ``config.json`` asks for remote code (``auto_map``, such as the
Hunyuan-architecture 7B reprompt model of the official repository) or names another architecture is refused, with
the folder to use instead.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from ..checkpoints.complete import detect_or_damaged, require_complete
from ..checkpoints.fp8 import linear_weights, quantizing_reader
from ..checkpoints.meta import load_weights, on_meta, parameter_shapes
from ..checkpoints.operations import adopt_operations
from .qwen import (
    QwenTensors,
    TextEncoderError,
    load_tokenizer,
    open_weight_files,
    read_text_config,
    rebuild_rotary,
    weight_files,
)
from .reprompt import (
    DEFAULT_CHAT,
    MAX_NEW_TOKENS,
    Enhanced,
    GenerationSettings,
    greedy_generate,
    parse_output,
    user_message,
)

log = logging.getLogger(__name__)

ARCHITECTURE = "Qwen2_5_VLForConditionalGeneration"
MODEL_TYPE = "qwen2_5_vl"
RECOMMENDED = "PromptEnhancer-7B (PromptEnhancer/PromptEnhancer-7B, a Qwen2.5-VL model)"


class PromptEnhancerError(TextEncoderError):
    """A folder that is not a prompt enhancer this pack runs; the message names what to use instead."""


def read_config(folder: Path) -> dict:
    """The folder's ``config.json``, refused when it is missing, needs remote code, or is another architecture."""
    path = folder / "config.json"
    if not folder.is_dir() or not path.is_file():
        raise PromptEnhancerError(
            f"{folder.name} is not a Hugging Face model folder (no config.json): put the whole {RECOMMENDED} folder "
            "(config.json, tokenizer, *.safetensors) in models/LLM"
        )
    config = json.loads(path.read_text())
    architectures = config.get("architectures") or []
    if config.get("auto_map") or any("hunyuan" in a.lower() for a in architectures):
        raise PromptEnhancerError(
            f"{folder.name} needs its own Python code to run (trust_remote_code: {', '.join(architectures) or 'its'} "
            f"architecture), which this pack never executes; use {RECOMMENDED} instead"
        )
    if config.get("model_type") != MODEL_TYPE and ARCHITECTURE not in architectures:
        found = ", ".join(architectures) or config.get("model_type") or "an unknown architecture"
        raise PromptEnhancerError(
            f"{folder.name} is a {found} model, not a Qwen2.5-VL causal LM: use {RECOMMENDED}, PromptEnhancer-32B or "
            "Qwen2.5-VL-7B-Instruct"
        )
    return config


def folder_chat_template(folder: Path, tokenizer) -> tuple[str | None, bool]:
    """The chat template the official processor would use, and whether it takes a list of content parts (the
    processor's own ``chat_template.json`` / ``.jinja``) rather than a string (the tokenizer's)."""
    processor = folder / "chat_template.json"
    if processor.is_file():
        return json.loads(processor.read_text()).get("chat_template"), True
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(), True
    return getattr(tokenizer, "chat_template", None), False


class PromptEnhancer(nn.Module):
    """A loaded enhancer: decoder and LM head (the module's weights, for model management), tokenizer, its chat
    template and generation settings."""

    def __init__(
        self, model: nn.Module, head: nn.Module, tokenizer, settings: GenerationSettings, template: str | None,
        content_parts: bool, name: str,
    ) -> None:  # fmt: skip
        super().__init__()
        self.model = model
        self.head = head
        self.tokenizer = tokenizer
        self.settings = settings
        self.template = template
        self.content_parts = content_parts
        self.name = name

    @property
    def weight_device(self) -> torch.device:
        return self.model.embed_tokens.weight.device

    def input_ids(self, message: str) -> torch.Tensor:
        """One user ``message`` through the model's own chat template (Qwen2.5-VL's default rendering when the
        folder has none), with the generation prompt, tokenized."""
        if self.template is None:
            text = DEFAULT_CHAT.format(message)
        else:
            content = [{"type": "text", "text": message}] if self.content_parts else message
            text = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": content}], chat_template=self.template, tokenize=False,
                add_generation_prompt=True,
            )  # fmt: skip
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return torch.tensor([ids], device=self.weight_device)

    def generate(
        self, message: str, max_new_tokens: int = MAX_NEW_TOKENS, on_token: Callable[[int, int], None] | None = None
    ) -> str:
        """The model's answer to one user ``message`` (greedy, special tokens left out)."""
        tokens = greedy_generate(
            self.model, self.head, self.input_ids(message), self.settings, max_new_tokens, on_token
        )
        return self.tokenizer.decode(tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def enhance(
        self,
        prompt: str,
        extra_instruction: str = "",
        max_new_tokens: int = MAX_NEW_TOKENS,
        on_token: Callable[[int, int], None] | None = None,
    ) -> Enhanced:
        """The official reprompt of ``prompt``: the rewrite, or the original when the output does not parse."""
        if not prompt.strip():
            raise ValueError("the prompt to enhance is empty: write a prompt (the enhancer rewrites it, it does not "
                             "invent one)")  # fmt: skip
        output = self.generate(user_message(prompt, extra_instruction), max_new_tokens, on_token)
        enhanced = parse_output(output, prompt)
        if not enhanced.rewritten:
            log.warning("HunyuanImage-2.1 prompt enhancer: the output did not parse (no two think> tags within "
                        "%d tokens), so the original prompt is used", max_new_tokens)  # fmt: skip
        return enhanced


def load_prompt_enhancer(
    path: str | Path,
    dtype: torch.dtype = torch.bfloat16,
    device: torch.device | str = "cpu",
    tokenizer_dirs: list[str | Path] = (),
    operations: SimpleNamespace = nn,
    quantize_fp8: bool = False,
) -> PromptEnhancer:
    """Load a Qwen2.5-VL causal-LM folder as the prompt enhancer, computing in ``dtype`` (bf16 officially);
    ``quantize_fp8`` stores the decoder layers' linear weights in e4m3 with per-tensor scales as they are read."""
    from transformers import Qwen2_5_VLTextModel

    folder = Path(path)
    folder_config = read_config(folder)
    files = open_weight_files(weight_files(folder))
    tensors = QwenTensors.from_files(files)
    config = detect_or_damaged(
        lambda: read_text_config(tensors, folder_config), error=PromptEnhancerError, file_name=folder.name,
        what="a Qwen2.5-VL causal LM", fix=f"download {RECOMMENDED} again",
    )  # fmt: skip
    config._attn_implementation = "sdpa"
    model = on_meta(lambda: Qwen2_5_VLTextModel(config))
    expected = parameter_shapes(model)
    require_complete(
        expected, tensors.__contains__, tensors.shape, error=PromptEnhancerError, file_name=folder.name,
        what="Qwen2.5-VL causal LM", fix=f"download {RECOMMENDED} again", key=tensors.file_key,
    )  # fmt: skip
    decoder_linears = linear_weights(model, ("layers.",))
    on_meta(lambda: adopt_operations(model, operations))
    read = quantizing_reader(tensors.read, decoder_linears) if quantize_fp8 else tensors.read
    load_weights(model, expected, read, dtype=dtype, device=device, error=PromptEnhancerError,
                 file_name=folder.name, operations=operations)  # fmt: skip
    rebuild_rotary(model, config, device)
    head = _lm_head(files, model, config, folder_config, dtype, device, operations)
    tokenizer = load_tokenizer([folder, *map(Path, tokenizer_dirs)])
    template, parts = folder_chat_template(folder, tokenizer)
    settings = GenerationSettings.from_folder(folder, [tokenizer.convert_tokens_to_ids("<|im_end|>")])
    log.info(
        "loaded the prompt enhancer %s (%d layers, hidden %d, %s; repetition penalty %g)",
        folder.name, config.num_hidden_layers, config.hidden_size, tensors.weight_format(), settings.repetition_penalty,
    )  # fmt: skip
    return PromptEnhancer(model.eval(), head, tokenizer, settings, template, parts, folder.name)


def _lm_head(files, model, config, folder_config: dict, dtype, device, operations) -> nn.Module:
    """The LM head: ``lm_head.weight`` from the files, or the token embedding when the weights are tied."""
    head = operations.Linear(config.hidden_size, config.vocab_size, bias=False, dtype=dtype, device=device)
    source = next((f for f in files if "lm_head.weight" in f), None)
    with torch.no_grad():
        if source is not None:
            head.weight = nn.Parameter(source.get("lm_head.weight").to(device, dtype), requires_grad=False)
        elif folder_config.get("tie_word_embeddings") or getattr(config, "tie_word_embeddings", False):
            head.weight = model.embed_tokens.weight
        else:
            raise PromptEnhancerError(
                f"{files[0].path.parent.name} has no LM head (lm_head.weight) and untied embeddings: it is a text "
                f"encoder's copy without the head, which cannot generate; use {RECOMMENDED}"
            )
    return head.eval()
