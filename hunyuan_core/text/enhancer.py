"""The prompt enhancer model: a Qwen2.5-VL causal LM, its language model and LM head only (the vision tower is
never loaded). It comes from a Hugging Face folder (PromptEnhancer-7B / -32B, or Qwen2.5-VL-7B-Instruct), a llama.cpp
GGUF of one, or the text encoder's own Qwen2.5-VL-7B-Instruct file when that file carries the LM head (then no
second model is needed: Qwen2.5-VL-7B-Instruct itself rewrites, which is not the official rewrite model).

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
from ..checkpoints.gguf_quants import SUPPORTED_TYPES
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
HEAD = "lm_head.weight"
END_TOKENS = ("<|im_end|>", "<|endoftext|>")  # Qwen2.5-VL-7B-Instruct's generation_config.json eos_token_id
INSTRUCT_REPETITION_PENALTY = 1.05  # the same file's repetition_penalty
INSTRUCT = "Qwen2.5-VL-7B-Instruct's release"


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
    """Load a Qwen2.5-VL causal LM as the prompt enhancer, computing in ``dtype`` (bf16 officially): a Hugging Face
    folder, or one file (a llama.cpp GGUF, or a text encoder's safetensors that carries ``lm_head.weight``).
    ``quantize_fp8`` stores the decoder layers' linear weights in e4m3 with per-tensor scales as they are read; GGUF
    blocks and fp8 files stay as they are stored.

    A single file has no ``config.json``: its sizes come from the tensor shapes (and GGUF metadata), its chat
    template from the GGUF metadata or Qwen2.5-VL's default, its generation settings from a ``generation_config.json``
    beside it or else Qwen2.5-VL-7B-Instruct's (the release every such file derives from)."""
    from transformers import Qwen2_5_VLTextModel

    source = Path(path)
    if not source.exists():
        raise PromptEnhancerError(f"{source} does not exist")
    folder_config = read_config(source) if source.is_dir() else None
    files = open_weight_files(weight_files(source))
    tensors = QwenTensors.from_files(files)
    config = detect_or_damaged(
        lambda: read_text_config(tensors, folder_config), error=PromptEnhancerError, file_name=source.name,
        what="a Qwen2.5-VL causal LM", fix=f"download {RECOMMENDED} again",
    )  # fmt: skip
    head_source = lm_head_tensors(files, tensors, folder_config, source.name)
    config._attn_implementation = "sdpa"
    model = on_meta(lambda: Qwen2_5_VLTextModel(config))
    expected = parameter_shapes(model)
    require_complete(
        expected, tensors.__contains__, tensors.shape, error=PromptEnhancerError, file_name=source.name,
        what="Qwen2.5-VL causal LM", fix=f"download {RECOMMENDED} again", key=tensors.file_key,
    )  # fmt: skip
    decoder_linears = linear_weights(model, ("layers.",))
    on_meta(lambda: adopt_operations(model, operations))
    read = quantizing_reader(tensors.read, decoder_linears) if quantize_fp8 else tensors.read
    load_weights(model, expected, read, dtype=dtype, device=device, error=PromptEnhancerError,
                 file_name=source.name, operations=operations)  # fmt: skip
    rebuild_rotary(model, config, device)
    head = _load_lm_head(head_source, model, config, dtype, device, operations, source.name)
    home = source if source.is_dir() else source.parent
    tokenizer = load_tokenizer([home, *map(Path, tokenizer_dirs)])
    if source.is_dir():
        template, parts = folder_chat_template(source, tokenizer)
    else:  # a GGUF carries the tokenizer's template; a text encoder's file has none: Qwen2.5-VL's default then
        template, parts = (tensors.gguf.metadata.get("tokenizer.chat_template") if tensors.gguf else None), False
    end_tokens = [tokenizer.convert_tokens_to_ids(t) for t in END_TOKENS]
    if source.is_dir() or (home / "generation_config.json").is_file():  # a folder: as transformers reads it
        settings, settings_from = GenerationSettings.from_folder(home, end_tokens[:1]), "the folder"
    else:
        settings, settings_from = GenerationSettings(tuple(end_tokens), INSTRUCT_REPETITION_PENALTY), INSTRUCT
    log.info(
        "loaded the prompt enhancer %s (%d layers, hidden %d, %s; repetition penalty %g from %s)",
        source.name, config.num_hidden_layers, config.hidden_size, tensors.weight_format(),
        settings.repetition_penalty, settings_from,
    )  # fmt: skip
    return PromptEnhancer(model.eval(), head, tokenizer, settings, template, parts, source.name)


def lm_head_tensors(files: list, tensors: QwenTensors, folder_config: dict | None, name: str) -> QwenTensors | None:
    """Where the LM head's weight is, as ``lm_head.weight`` (with its fp8 scale when it has one): the file's own
    head (``lm_head.weight``; llama.cpp's ``output.weight``), or None when it is tied to the token embedding (a
    GGUF's tied head is its quantized ``token_embd``). A text encoder's copy without the head cannot generate and is
    refused."""
    if tensors.gguf is not None:
        gguf = tensors.gguf
        # llama.cpp leaves ``output.weight`` out exactly when the head is the token embedding
        key = "output.weight" if "output.weight" in gguf else "token_embd.weight"
        kind = gguf.unsupported_types().get(key)
        if kind is not None:
            raise PromptEnhancerError(
                f"{name} stores its LM head ({key}) as GGML type {kind}, which this pack cannot dequantize (the text "
                f"encoder never reads the head, the enhancer does). Supported: {', '.join(SUPPORTED_TYPES)}; use a "
                "file of one of those quantizations (Q8_0, Q6_K, Q5_K_M, Q4_K_M ... are)"
            )
        return QwenTensors({HEAD: (gguf, key)}, name)
    for file in files:
        key = next((k for k in file if k == HEAD or k.endswith("." + HEAD)), None)
        if key is not None:
            where = {HEAD: (file, key)}
            for suffix in (".scale_weight", ".weight_scale"):
                if key.removesuffix(".weight") + suffix in file:
                    where["lm_head" + suffix] = (file, key.removesuffix(".weight") + suffix)
            return QwenTensors(where, name)
    if (folder_config or {}).get("tie_word_embeddings"):
        return None
    raise PromptEnhancerError(
        f"{name} has no LM head (lm_head.weight) and untied embeddings: it is a text encoder's copy without the "
        f"head, which can encode but not generate; use {RECOMMENDED} in models/LLM"
    )


def carries_lm_head(path: str | Path) -> bool:
    """Whether one weights file is a Qwen2.5-VL language model with its LM head, so the enhancer can run from it:
    the loader's own checks on the file's tensor table (no tensor is read), for listing a models folder."""
    path = Path(path)
    try:
        files = open_weight_files([path])
        lm_head_tensors(files, QwenTensors.from_files(files), None, path.name)
    except TextEncoderError:  # PromptEnhancerError too: not Qwen, no head, a head it cannot read
        return False
    return True


def _load_lm_head(
    where: QwenTensors | None, model: nn.Module, config, dtype: torch.dtype, device, operations, name: str
) -> nn.Module:
    """The LM head as ``operations``' Linear, quantized when its stored weight is (fp8 with its scale, GGUF blocks);
    ``where`` None: tied to the token embedding, whose weight it shares instead of holding a copy."""
    holder = on_meta(lambda: nn.ModuleDict({"lm_head": nn.Linear(config.hidden_size, config.vocab_size, bias=False)}))
    on_meta(lambda: adopt_operations(holder, operations))
    if where is None:
        holder["lm_head"].weight = model.embed_tokens.weight
    else:
        load_weights(holder, [HEAD], where.read, dtype=dtype, device=device, error=PromptEnhancerError,
                     file_name=name, operations=operations)  # fmt: skip
    return holder["lm_head"].eval()
