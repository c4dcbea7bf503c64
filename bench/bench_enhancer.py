"""Benchmark: the prompt enhancer's greedy decoding against ``transformers``' ``generate``, tokens per second.

Why: the enhancer decodes up to 2048 tokens per prompt with its own loop (``hunyuan_core.text.reprompt``), so that
the node can show progress and stop on Cancel between tokens; the loop must not be slower than ``generate``.

How: a Qwen2.5-VL causal-LM folder with random weights is written in the Hugging Face layout (full width by
default: hidden 3584, 28 heads, 4 key/value heads, MLP 18944, vocabulary 152064, as Qwen2.5-VL-7B; reduced depth,
``--layers`` 2; the host ComfyUI's Qwen tokenizer; the Instruct release's generation config with its repetition
penalty 1.05), loaded once by ``transformers`` (``Qwen2_5_VLForConditionalGeneration``) and once by the pack's
loader (``load_prompt_enhancer``), both fp32 on the CPU. Each side decodes ``--tokens`` new tokens greedily from
the official message for the same prompt, with its key/value cache, one warm-up run and then ``--repeats`` runs in
alternating order; the fastest run of each counts (other processes only ever slow a run down), the median is shown.
The tokens of the two sides are compared. Target: pack / generate >= 0.95 in tokens per second.

Run: .venv/bin/python bench/bench_enhancer.py [--layers 2] [--tokens 32] [--repeats 3] [--hidden 3584]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

TARGET = 0.95
VOCAB = 152064  # Qwen2.5-VL-7B's embedding rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=3584, help="width (default Qwen2.5-VL-7B's 3584)")
    parser.add_argument("--intermediate", type=int, default=18944, help="MLP width (default 18944)")
    parser.add_argument("--layers", type=int, default=2, help="decoder layers (default 2; the 7B has 28)")
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per run (default 32)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per side (default 3)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    import torch
    from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration

    from hunyuan_core.text.enhancer import load_prompt_enhancer
    from hunyuan_core.text.reprompt import user_message
    from hy21_host.tiny_models import write_enhancer_folder

    if args.threads:
        torch.set_num_threads(args.threads)
    message = user_message("A lighthouse on a cliff at dusk, a sign reading 'OPEN'")
    with tempfile.TemporaryDirectory(prefix="hy21_enhancer_") as tmp:
        folder = Path(tmp) / "PromptEnhancer-bench"
        write_enhancer_folder(
            folder, hidden=args.hidden, heads=args.hidden // 128, kv_heads=max(args.hidden // 128 // 7, 1),
            intermediate=args.intermediate, layers=args.layers, vocab=VOCAB, dtype=torch.float32,
        )  # fmt: skip
        tokenizer = AutoTokenizer.from_pretrained(folder)
        reference = Qwen2_5_VLForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
        ours = load_prompt_enhancer(folder, dtype=torch.float32)
        text = tokenizer.apply_chat_template([{"role": "user", "content": message}], tokenize=False,
                                             add_generation_prompt=True)  # fmt: skip
        inputs = tokenizer([text], return_tensors="pt")
        prompt_tokens = inputs.input_ids.shape[1]

        def run_generate() -> list[int]:
            with torch.no_grad():
                out = reference.generate(**inputs, max_new_tokens=args.tokens, min_new_tokens=args.tokens,
                                         do_sample=False)  # fmt: skip
            return out[0, prompt_tokens:].tolist()

        def run_pack() -> list[int]:
            tokens: list[int] = []
            ours.generate(message, args.tokens, on_token=lambda count, token: tokens.append(token))
            return tokens

        sides = {"pack": run_pack, "generate": run_generate}
        outputs = {name: fn() for name, fn in sides.items()}  # warm-up
        times: dict[str, list[float]] = {name: [] for name in sides}
        for repeat in range(args.repeats):
            for name in sides if repeat % 2 == 0 else reversed(list(sides)):
                start = time.perf_counter()
                sides[name]()
                times[name].append(time.perf_counter() - start)
    rate = {name: len(outputs[name]) / min(t) for name, t in times.items()}
    print(
        f"prompt enhancer decoding: hidden {args.hidden}, {args.layers} layers, MLP {args.intermediate}, vocabulary "
        f"{VOCAB}, fp32 on the CPU, {prompt_tokens} prompt tokens, {args.tokens} new tokens, {args.repeats} repeats"
    )
    print(f"{'side':<9} {'fastest s':>9} {'median s':>9} {'tokens/s':>9}")
    for name, measured in times.items():
        print(f"{name:<9} {min(measured):>9.3f} {statistics.median(measured):>9.3f} {rate[name]:>9.2f}")
    same = outputs["pack"] == outputs["generate"][: len(outputs["pack"])]
    ratio = rate["pack"] / rate["generate"]
    print(f"tokens equal: {'yes' if same else 'no'} ({len(outputs['pack'])} pack, {len(outputs['generate'])} generate)")
    verdict = "yes" if ratio >= TARGET else "no"
    print(f"ratio pack / generate (tokens per second, fastest): {ratio:.3f}; >= {TARGET}: {verdict}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
