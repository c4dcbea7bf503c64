"""Benchmark: prompt encoding unpadded (this pack) versus padded to 1034 tokens (diffusers' way), on the CPU.

Runs a full-width Qwen2.5-VL-7B language model (hidden 3584, 28 heads, 4 KV heads, MLP 18944, vocab 152064) of
reduced depth with random weights on the same ~50-token prompt, once with the valid tokens only and once padded to
the official 1034 tokens with an attention mask, and prints both times and their ratio (target <= 0.2).
Run: .venv/bin/python bench/bench_text.py [--layers 2] [--repeats 3] [--dtype fp32|bf16]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from hunyuan_core.text import STAGE1_TEMPLATE

PROMPT = (
    "A cozy reading nook by a rain-streaked window, a ginger cat curled on a knitted blanket, a steaming mug of "
    "tea on a wooden side table, warm lamplight, shelves of worn books, soft film grain"
)


def build_model(layers: int, dtype: torch.dtype):
    from transformers import Qwen2_5_VLTextConfig, Qwen2_5_VLTextModel

    config = Qwen2_5_VLTextConfig(
        vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=layers,
        num_attention_heads=28, num_key_value_heads=4, rms_norm_eps=1e-6, rope_theta=1_000_000.0,
        rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]}, max_position_embeddings=128000,
    )  # fmt: skip
    config._attn_implementation = "sdpa"
    with torch.device("meta"):
        model = Qwen2_5_VLTextModel(config)
    model = model.to_empty(device="cpu").to(dtype)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float32).mul_(0.02).to(dtype))
    model.rotary_emb = type(model.rotary_emb)(config=config)
    model.norm = torch.nn.Identity()
    return model.eval()


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    args = parser.parse_args()
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]

    from transformers import Qwen2TokenizerFast

    from hy21_host import find_comfyui

    tokenizer = Qwen2TokenizerFast.from_pretrained(str(find_comfyui() / "comfy/text_encoders/qwen25_tokenizer"))
    ids = tokenizer(STAGE1_TEMPLATE.format(PROMPT), add_special_tokens=False)["input_ids"]
    valid = torch.tensor([ids])
    padded = torch.full((1, STAGE1_TEMPLATE.max_length), tokenizer.pad_token_id)
    padded[0, : len(ids)] = valid[0]
    mask = torch.zeros_like(padded)
    mask[0, : len(ids)] = 1
    model = build_model(args.layers, dtype)

    def run(input_ids, attention_mask):
        with torch.inference_mode():
            return model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state

    ours = timed(lambda: run(valid, torch.ones_like(valid)), args.repeats)
    theirs = timed(lambda: run(padded, mask), args.repeats)
    same = (run(valid, torch.ones_like(valid)) - run(padded, mask)[:, : len(ids)]).abs().max().item()
    print(f"Qwen2.5-VL-7B width, {args.layers} layers, {args.dtype}, prompt {len(ids) - STAGE1_TEMPLATE.crop} tokens")
    print(f"  unpadded ({len(ids)} tokens):    {ours * 1000:9.1f} ms")
    print(f"  padded to {STAGE1_TEMPLATE.max_length} (diffusers): {theirs * 1000:9.1f} ms")
    print(f"  ratio unpadded/padded: {ours / theirs:.3f}   (target <= 0.2)")
    print(f"  max abs difference on valid tokens: {same:.2e}")


if __name__ == "__main__":
    main()
