"""Benchmark: one DiT forward with fp8 weights (weight-only, and the opt-in fp8 matmul) and with Q4_K weights, against
the same model in bf16, on the CPU.

Three models of one shape, full width (hidden 3584, 28 heads x 128, MLLM text 3584) and reduced depth (1 double
block, 1 single block and, as in the memory test, no token-refiner block, so the blocks' share of the weights is
near the full model's 97 %):

- bf16: random weights (fan-in scaled), as a bf16 file loads;
- fp8: the same weights with every Linear weight in the double and single blocks quantized to e4m3 with a
  per-tensor scale at load (``load_dit(..., quantize_fp8=True)``'s reader: the official FP8 path, weight-only:
  each layer expands its weight to bf16 per call, activations stay bf16);
- fp8_fast: the fp8 model with ``fp8_matmul`` on (each fp8 layer one ``torch._scaled_mm``, activations quantized
  to e4m3 per tensor; off by default, not the official arithmetic): its time and its output against weight-only fp8;
- Q4_K: the same bf16 rest, the block Linear weights random valid Q4_K blocks as a GGUF holds them (what a
  QuantStack file quantizes; its embedders, token refiner and final layer stay bf16), dequantized per call.

All three are built through the pack's loader (``checkpoints.meta.build_and_load``, a reader per format) from
tensors made here, so no file is written. The input is a 256x256 image's latent (8x8 = 64 tokens) and a 16-token
prompt, batch 1. After one warm-up forward each, ``--repeats`` rounds run the three models one after the other (the
order rotating each round); the table gives each model's median time, and the ratios fp8 / bf16 and Q4_K / bf16
are the medians of each round's own ratios (the three runs of a round are adjacent, so load from other processes
on a shared machine moves them together). With 80 tokens a forward is mostly weight traffic: the quantized models
pay for expanding every block weight to bf16 per call, and all three pay for bf16 matrix products, which are slow on
a CPU without bf16 instructions (so the ratios are smaller there than where bf16 products are fast).

Outputs are checked too: all finite, and the fp8 model's output against the bf16 model's (same weights) as a
relative L2 error, printed beside the fp8 rounding error of the weights themselves (relative L2 over the block
linears), which bounds what the output should differ by.

Run: .venv/bin/python bench/bench_quantized_forward.py [--repeats 5] [--threads N] [--quick]
     (--quick: hidden 256, 2 heads: a smoke test in seconds, not a measurement)
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from hunyuan_core.checkpoints.errors import CheckpointError  # noqa: E402
from hunyuan_core.checkpoints.fp8 import Fp8Weight, quantize_fp8  # noqa: E402
from hunyuan_core.checkpoints.gguf_file import GGMLWeight  # noqa: E402
from hunyuan_core.checkpoints.gguf_quants import block_of  # noqa: E402
from hunyuan_core.checkpoints.meta import build_and_load, meta_shapes, on_meta  # noqa: E402
from hunyuan_core.dit import DiTConfig, HunyuanImageDiT  # noqa: E402
from hunyuan_core.dit.checkpoint import official_fp8_weights  # noqa: E402

GIB = 1024**3
FORMATS = ("bf16", "fp8", "Q4_K", "fp8_fast")
LATENT_SIDE, TEXT_TOKENS = 8, 16  # 256x256 pixels: 8x8 latent tokens
Q4K_SCALE = 5e-5  # Q4_K super-block scale: weights of about 1/sqrt(3584) in size, as the bf16 ones


def config(quick: bool) -> DiTConfig:
    """Full width, 1 double + 1 single block, no token-refiner block; ``quick``: hidden 256 (a smoke test)."""
    width = {"hidden_size": 256, "num_heads": 2, "text_dim": 256} if quick else {}
    return DiTConfig(depth_double=1, depth_single=1, refiner_depth=0, **width)


def block_linear_weights(cfg: DiTConfig) -> set[str]:
    """What the fp8 release and the GGUF files quantize: every Linear weight inside the double and single blocks."""
    return official_fp8_weights(on_meta(lambda: HunyuanImageDiT(cfg, dtype=torch.bfloat16)))


def random_state(cfg: DiTConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """bf16 weights N(0, 1/fan_in), norm gains 1 + N(0, 0.05^2), biases N(0, 0.02^2), so activations stay in range."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in meta_shapes(lambda: HunyuanImageDiT(cfg, dtype=torch.bfloat16)).items():
        value = torch.randn(shape, generator=gen, dtype=torch.bfloat16)
        if len(shape) > 1:
            value.mul_(math.prod(shape[1:]) ** -0.5)
        elif name.endswith(".weight"):
            value.mul_(0.05).add_(1)
        else:
            value.mul_(0.02)
        state[name] = value
    return state


def random_q4k(shape: tuple[int, ...], gen: torch.Generator) -> GGMLWeight:
    """Valid Q4_K blocks for a weight of ``shape``: random quants and sub-scales, small float16 scales and mins
    (min about 7.5 x scale, so the values are centred near zero)."""
    block = block_of("Q4_K")
    rows, cols = shape
    blocks = torch.randint(0, 256, (rows * cols // block.block_size, block.type_size), generator=gen, dtype=torch.uint8)
    scale = (torch.rand(blocks.shape[0], generator=gen) * 0.5 + 0.5) * Q4K_SCALE
    for offset, value in zip(block.scales_at, (scale, 7.5 * scale), strict=True):
        blocks[:, offset : offset + 2] = value.to(torch.float16).view(torch.uint8).reshape(-1, 2)
    return GGMLWeight(blocks.reshape(rows, -1), block.type_id, (rows, cols))


def build_models(cfg: DiTConfig) -> tuple[dict[str, HunyuanImageDiT], float]:
    """The three models (sharing the tensors they hold alike) and the fp8 weights' relative L2 rounding error."""
    state = random_state(cfg)
    quantized = block_linear_weights(cfg)
    gen = torch.Generator().manual_seed(1)
    error, norm = [0.0], [0.0]

    def fp8(name: str) -> torch.Tensor | Fp8Weight:
        if name not in quantized:
            return state[name]
        weight = Fp8Weight(*quantize_fp8(state[name]))
        reference = state[name].float()
        error[0] += float((weight.dequantized() - reference).square().sum())
        norm[0] += float(reference.square().sum())
        return weight

    def q4k(name: str) -> torch.Tensor | GGMLWeight:
        return random_q4k(tuple(state[name].shape), gen) if name in quantized else state[name]

    readers: dict[str, Callable] = {"bf16": state.__getitem__, "fp8": fp8, "Q4_K": q4k}
    models = {}
    for fmt, read in readers.items():
        models[fmt] = build_and_load(
            lambda ops: HunyuanImageDiT(cfg, dtype=torch.bfloat16, operations=ops), nn, read,
            dtype=torch.bfloat16, device="cpu", error=CheckpointError, file_name=f"random {fmt} weights",
        )  # fmt: skip
    rounding = math.sqrt(error[0] / norm[0])
    # fp8_fast: a copy of the fp8 model whose fp8 layers each run as one torch._scaled_mm (``fp8_matmul``)
    models["fp8_fast"] = copy.deepcopy(models["fp8"])
    for module in models["fp8_fast"].modules():
        if getattr(module, "weight_format", None) == "fp8":
            module.fp8_matmul = True
    return models, rounding


def model_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))


def make_inputs(cfg: DiTConfig) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(2)
    return {
        "x": torch.randn(1, cfg.in_channels, LATENT_SIDE, LATENT_SIDE, generator=gen).to(torch.bfloat16),
        "t": torch.tensor([700.0]),
        "text": torch.randn(1, TEXT_TOKENS, cfg.text_dim, generator=gen).to(torch.bfloat16),
        "text_mask": torch.ones(1, TEXT_TOKENS, dtype=torch.long),
    }


def time_interleaved(
    models: dict[str, HunyuanImageDiT], inputs: dict[str, torch.Tensor], repeats: int
) -> tuple[dict[str, list[float]], dict[str, torch.Tensor]]:
    """Each model's seconds per forward over ``repeats`` rounds (the order rotating), after one warm-up each; and
    each model's output."""
    names = list(models)
    times: dict[str, list[float]] = {name: [] for name in names}
    with torch.inference_mode():
        outputs = {name: models[name](**inputs).float() for name in names}
        for round_ in range(repeats):
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                start = time.perf_counter()
                models[name](**inputs)
                times[name].append(time.perf_counter() - start)
    return times, outputs


def relative_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (median)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="hidden 256, 2 heads: a smoke test, not a measurement")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = config(args.quick)
    start = time.perf_counter()
    models, rounding = build_models(cfg)
    built = time.perf_counter() - start
    times, outputs = time_interleaved(models, make_inputs(cfg), args.repeats)

    medians = {name: statistics.median(runs) for name, runs in times.items()}
    ratios = {
        name: statistics.median(t / base for t, base in zip(times[name], times["bf16"], strict=True))
        for name in FORMATS
    }
    print(f"DiT forward on the CPU ({torch.get_num_threads()} threads), bf16 activations: hidden {cfg.hidden_size}, "
          f"{cfg.num_heads} heads, {cfg.depth_double} double + {cfg.depth_single} single blocks, no token-refiner "
          f"block; {LATENT_SIDE}x{LATENT_SIDE} latent tokens + {TEXT_TOKENS} text tokens, batch 1; median of "
          f"{args.repeats} interleaved runs after a warm-up (models built in {built:.0f} s)")  # fmt: skip
    print(f"{'weights':<8}{'GiB':>8}{'forward s':>11}{'/ bf16':>8}  runs (s)")
    for name, runs in times.items():
        each = ", ".join(f"{r:.2f}" for r in runs)
        print(f"{name:<8}{model_bytes(models[name]) / GIB:>8.3f}{medians[name]:>11.3f}{ratios[name]:>8.3f}  {each}")
    print("ratio " + ", ".join(f"{name} / bf16: {ratios[name]:.3f}" for name in FORMATS[1:]))
    finite = all(bool(torch.isfinite(out).all()) for out in outputs.values())
    print(f"outputs finite: {'yes' if finite else 'NO'}")
    error = relative_l2(outputs["fp8"], outputs["bf16"])
    print(f"fp8 output vs bf16 output (same weights): relative L2 error {error:.4f} "
          f"(fp8 rounding of the block weights: relative L2 {rounding:.4f})")  # fmt: skip
    fast_error = relative_l2(outputs["fp8_fast"], outputs["fp8"])
    print(
        f"fp8_fast output vs fp8 weight-only output: relative L2 error {fast_error:.4f} (activations rounded to "
        "e4m3 per tensor; the official path is weight-only)"
    )


if __name__ == "__main__":
    main()
