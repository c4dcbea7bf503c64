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
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

TARGET = 0.95
GENERATION = {"bos_token_id": 151643, "eos_token_id": [151645, 151643], "repetition_penalty": 1.05}


def write_folder(folder: Path, args: argparse.Namespace) -> None:
    """A random Qwen2.5-VL folder as transformers saves it, with the host's Qwen tokenizer."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from hy21_host import find_comfyui

    heads = args.hidden // 128
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": 152064, "hidden_size": args.hidden, "intermediate_size": args.intermediate,
            "num_hidden_layers": args.layers, "num_attention_heads": heads, "num_key_value_heads": max(heads // 7, 1),
            "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}, "tie_word_embeddings": False,
        },
        vision_config={"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                       "out_hidden_size": args.hidden, "fullatt_block_indexes": [0]},
        tie_word_embeddings=False,
    )  # fmt: skip
    torch.manual_seed(0)
    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(config)
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, p.shape[-1] ** -0.5 if p.ndim > 1 else 0.02)
    model.save_pretrained(folder)
    (folder / "generation_config.json").write_text(json.dumps(GENERATION))
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        shutil.copy(find_comfyui() / "comfy" / "text_encoders" / "qwen25_tokenizer" / name, folder / name)


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

    if args.threads:
        torch.set_num_threads(args.threads)
    message = user_message("A lighthouse on a cliff at dusk, a sign reading 'OPEN'")
    with tempfile.TemporaryDirectory(prefix="hy21_enhancer_") as tmp:
        folder = Path(tmp) / "PromptEnhancer-bench"
        write_folder(folder, args)
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
        f"152064, fp32 on the CPU, {prompt_tokens} prompt tokens, {args.tokens} new tokens, {args.repeats} repeats"
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
