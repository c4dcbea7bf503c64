"""The official prompt rewriting ("reprompt") step: PromptEnhancer's instruction, greedy decoding, and parsing.

The official pipeline (``hyimage/models/reprompt/reprompt_32b.py``, optional, off by default) sends one user message,
the instruction ``OFFICIAL_INSTRUCTION``, a newline and the prompt, through the model's chat template with the
generation prompt, decodes greedily for at most 2048 new tokens, and keeps the text after the last ``think>`` tag of
an output that has exactly two; ASCII single-quoted words then become double-quoted and curly single quotes curly
double ones. Any failure keeps the original prompt.

Decoding here is ``transformers``' greedy search step for step: the causal LM runs once over the prompt, then once
per new token on its key/value cache; the next token is the argmax of the last position's logits in float32, after
the repetition penalty of the model folder's ``generation_config.json`` when it sets one (transformers applies it
in greedy search too); it stops after an end-of-sequence token or ``max_new_tokens``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

OFFICIAL_INSTRUCTION = "请根据用户的输入，生成思考过程的思维链并改写提示词："
MAX_NEW_TOKENS = 2048  # the official limit
THINK_TAG = "think>"
# Qwen2.5-VL's chat template, as it renders one text-only user message with the generation prompt (the template's
# default system message included); used when the model folder carries no chat template of its own.
DEFAULT_CHAT = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
)
SINGLE_QUOTED = re.compile(r"\B'([^']*)'\B")


def user_message(prompt: str, extra_instruction: str = "") -> str:
    """The official user message (instruction, newline, prompt); an extra instruction goes on its own line after
    the official one (not official: empty by default)."""
    instruction = OFFICIAL_INSTRUCTION + (f"\n{extra_instruction.strip()}" if extra_instruction.strip() else "")
    return f"{instruction}\n{prompt}"


def replace_single_quotes(text: str) -> str:
    """The official clean-up: ``'x'`` between non-word boundaries becomes ``"x"``, ‘ ’ become “ ”, so the quoted
    text reaches the glyph encoder (which reads only double and curly quotes)."""
    return SINGLE_QUOTED.sub(r'"\1"', text).replace("’", "”").replace("‘", "“")


@dataclass(frozen=True)
class Enhanced:
    """What the enhancer made of a prompt: the prompt to encode, the model's reasoning (its text between the two
    ``think>`` tags), and whether it is the rewrite (False: the output did not parse, the original is kept)."""

    prompt: str
    reasoning: str
    rewritten: bool


def parse_output(output: str, original: str) -> Enhanced:
    """The official parsing: exactly two ``think>`` tags, the text after the last (one leading newline dropped),
    quotes normalised; anything else keeps ``original`` (the whole output is then returned as the reasoning)."""
    if output.count(THINK_TAG) != 2:
        return Enhanced(original, output.strip(), False)
    _, thought, answer = output.split(THINK_TAG)
    answer = answer.removeprefix("\n")
    return Enhanced(replace_single_quotes(answer), thought.removesuffix("</").strip(), True)


@dataclass(frozen=True)
class GenerationSettings:
    """What a model folder's ``generation_config.json`` changes in greedy search: end tokens and the repetition
    penalty (sampling settings there do not apply: the official call decodes greedily)."""

    eos_token_ids: tuple[int, ...]
    repetition_penalty: float = 1.0

    @classmethod
    def from_folder(cls, folder: Path, fallback_eos: Iterable[int]) -> GenerationSettings:
        path = folder / "generation_config.json"
        config = json.loads(path.read_text()) if path.is_file() else {}
        eos = config.get("eos_token_id")
        eos_ids = tuple(eos) if isinstance(eos, list) else (eos,) if isinstance(eos, int) else tuple(fallback_eos)
        return cls(eos_ids, float(config.get("repetition_penalty") or 1.0))


def penalise_repeats(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """transformers' repetition penalty on ``logits [V]`` for the token ids in ``seen`` (prompt and generated):
    a positive logit divided by ``penalty``, a negative one multiplied."""
    if penalty == 1.0:
        return logits
    picked = logits.gather(0, seen)
    logits = logits.clone()
    logits.scatter_(0, seen, torch.where(picked < 0, picked * penalty, picked / penalty))
    return logits


@torch.no_grad()
def greedy_generate(
    model: nn.Module,
    head: nn.Module,
    input_ids: torch.Tensor,
    settings: GenerationSettings,
    max_new_tokens: int = MAX_NEW_TOKENS,
    on_token: Callable[[int, int], None] | None = None,
) -> list[int]:
    """Greedy decoding with a key/value cache: ``model`` is the causal LM's decoder (returns ``last_hidden_state``),
    ``head`` its LM head, ``input_ids [1, L]`` the tokenized chat text. Returns the new tokens (the end token
    included when one came). ``on_token(count, token)`` is called after every token (progress, Cancel)."""
    from transformers import DynamicCache

    if input_ids.ndim != 2 or input_ids.shape[0] != 1:
        raise ValueError(f"greedy_generate takes one tokenized prompt [1, L], got {tuple(input_ids.shape)}")
    cache = DynamicCache()
    seen = input_ids[0]
    step_ids = input_ids
    length = input_ids.shape[1]
    new: list[int] = []
    while len(new) < max_new_tokens:
        positions = torch.arange(length - step_ids.shape[1], length, device=input_ids.device)
        hidden = model(
            input_ids=step_ids, past_key_values=cache, use_cache=True, cache_position=positions
        ).last_hidden_state[:, -1]
        logits = penalise_repeats(head(hidden)[0].float(), seen, settings.repetition_penalty)
        token = int(logits.argmax())
        new.append(token)
        if on_token is not None:
            on_token(len(new), token)
        if token in settings.eos_token_ids:
            break
        step_ids = torch.tensor([[token]], device=input_ids.device)
        seen = torch.cat([seen, step_ids[0]])
        length += 1
    return new
