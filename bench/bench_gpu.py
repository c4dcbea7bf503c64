"""Benchmark: the stage-1 pipeline's GPU work at full size with random weights, in bf16 and fp8, each row set
against the H200's physical limit. ``bash bench/gpu.sh`` runs it as one prepared script on a lent GPU machine.

Why: the CPU benchmarks measure reduced models; this is the one place that times the real 17.4 B DiT, the samplers
and the VAE where they run, and says how far each is from what the hardware could do at best. Nothing is judged:
the table is the measurement.

What runs, in one process (no downloads, nothing read from disk; only this repository's ``hunyuan_core``, which
never imports ComfyUI, and torch; about 2-3 minutes on one H200 by the README's step times, under 5 with the base
sampling capped by ``--base-max-s``):

- The DiT at full size (20 double + 40 single blocks, hidden 3584, 28 heads x 128, the 2-block token refiner;
  ``--double`` / ``--single`` for fewer blocks), built by the core's own load loop
  (``checkpoints.meta.build_and_load``) from weights drawn on the device (``bench.common.fill``: seeded per
  tensor name; matrices N(0, 1/fan_in), norm gains 1, biases N(0, 0.02^2), so activations stay finite). The
  distilled model is built from the base model's tensors (shared, no second copy) plus its own ``guidance_in`` /
  ``time_r_in``.
- Weights in bf16, then (the bf16 model freed first) fp8: every Linear weight in the double and single blocks
  quantized to e4m3 with a per-tensor scale by the core's ``quantizing_reader`` (``load_dit(quantize_fp8=True)``'s
  path: ``quantize_fp8``, the official per-tensor scale), kept by the core's ``QuantizedLinear``. The core's fp8
  arithmetic is weight-only: each layer expands its weight to bf16 per call (``w.to(bf16) * scale``) and multiplies
  in bf16, so the fp8 rows' limit is the bf16 one. The core's opt-in fp8 matmul (``fp8_matmul``: one
  ``torch._scaled_mm`` per fp8 layer, activations quantized per tensor; not the official arithmetic) is timed as
  its own forward rows, whose limit counts the block Linears at 2x the bf16 peak (fp8 dense) and the rest at 1x.
- Rows: one DiT forward at 1024x1024 (32x32 latent) and 2048x2048 (64x64), batch 1 and batch 2 (negative and
  positive prompt batched, as the base guidance runs), with ``--text-tokens`` Qwen tokens per prompt and no ByT5
  tokens; the distilled model's 8 official steps (``plan_sampling("distilled")``: embedded guidance 3.25 and
  MeanFlow) at 2048x2048; the base model's 50 official steps (``plan_sampling("base")``: CFG 3.5 then APG, negative
  and positive batched in one forward, the default ``batched_cfg=True``) at 2048x2048, both through the core
  sampler ``hunyuan_core.sampling.sample``; the full-size 32x VAE's decode of a 64x64 latent (2048x2048) in bf16.
  When the 50 base steps would take longer than ``--base-max-s`` (estimated from the batch-2 forward), only the
  first steps that fit are run and the time is extrapolated to 50, labelled so in the table.
- Each forward row: ``--warmup`` untimed runs, then the median of ``--repeats`` (``torch.cuda.synchronize`` around
  ``time.perf_counter``); the distilled sampling the median of ``--sample-repeats``; the base sampling one run.
  Peak VRAM is ``torch.cuda.max_memory_allocated`` with the peak reset before each row (weights included). Every
  row's last output is checked to be finite.

Physical limit: a row's FLOPs over the peak (``--peak-tflops``, default 790: an H200's dense bf16 as measured on
this workplace's H200, 788 TFLOP/s; the datasheet says 989). ``x limit`` = measured / limit time. FLOPs are only
the matrix products, counted analytically by ``dit_flops`` (one formula, documented there: ``2 * in * out`` per
row of every Linear, ``4 * S^2 * hidden`` per attention over S tokens); the modulation Linears (4.6 B of the 17.4 B
parameters) act on one conditioning vector per sample, not per token, so a 2048x2048 forward (4096 image + 256 text
tokens) is 97 TFLOP, a 0.12 s limit, not the ~0.2 s that 2 x 17.4 B x 4352 would give. The formula is checked once
per run against ``torch.utils.flop_counter`` over a real forward (attention through SDPA's math kernel, so it is
counted). The VAE's FLOPs are counted by ``torch.utils.flop_counter`` from the layer shapes on the meta device.

Run: bash bench/gpu.sh                      (the GPU run; a machine without CUDA gets one line and status 2)
     .venv/bin/python bench/bench_gpu.py --device cpu --tiny    (every path on a tiny model, seconds; a smoke test)
     options: --double N --single N --sizes 1024,2048 --text-tokens 256 --repeats 5 --formats bf16,fp8,fp8_matmul
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from bench.common import fill  # noqa: E402
from hunyuan_core.checkpoints.errors import CheckpointError  # noqa: E402
from hunyuan_core.checkpoints.fp8 import Fp8Weight, quantizing_reader  # noqa: E402
from hunyuan_core.checkpoints.meta import build_and_load, on_meta, state_shapes  # noqa: E402
from hunyuan_core.dit import DiTConfig, HunyuanImageDiT  # noqa: E402
from hunyuan_core.dit.checkpoint import official_fp8_weights  # noqa: E402
from hunyuan_core.dit.layers import TIME_FEATURES  # noqa: E402
from hunyuan_core.sampling import Conditioning, concat_conditionings, plan_sampling, sample  # noqa: E402
from hunyuan_core.vae import STAGE1_VAE, HunyuanImageVAE, VAEConfig  # noqa: E402
from hunyuan_core.variants import BASE, DISTILLED, STAGE1_LATENT, TIMESTEP_MULTIPLIER  # noqa: E402

BF16 = torch.bfloat16
GIB = 1024**3
NO_GPU = "bench/gpu.sh needs an NVIDIA GPU (torch.cuda.is_available() is False): nothing was measured"
FORMATS = ("bf16", "fp8", "fp8_matmul")
FP8_GEMM_SPEEDUP = 2.0  # fp8 dense tensor-core throughput over bf16 (H100 / H200 datasheets)
FORWARD_SIGMA = 0.7  # the timestep of the forward rows (any value costs the same)
# Tiny: every code path in seconds on a CPU (a smoke test, not a measurement).
TINY_DIT = {
    "hidden_size": 64, "num_heads": 2, "rope_axes": (16, 16), "text_dim": 64, "byt5_dim": 32, "byt5_hidden": 64,
    "refiner_depth": 1, "depth_double": 1, "depth_single": 2,
}  # fmt: skip
TINY_VAE = VAEConfig(block_out_channels=(32, 32, 64, 128), layers_per_block=1, spatial_compression=8)
TINY_SIZES, TINY_TEXT_TOKENS = (64, 128), 8


# --- FLOPs and the physical limit -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flops:
    """Matrix-product FLOPs of a piece of work, split by what the fp8 matmul path can speed up."""

    block_linear: float  # the Linears inside the double and single blocks (what the fp8 model stores in e4m3)
    other_linear: float  # embedders, token refiner, img_in, final layer (and every VAE convolution)
    attention: float

    @property
    def total(self) -> float:
        return self.block_linear + self.other_linear + self.attention

    def times(self, factor: float) -> Flops:
        return Flops(self.block_linear * factor, self.other_linear * factor, self.attention * factor)

    def limit_s(self, peak: float, fp8_gemm: bool = False) -> float:
        """The time at ``peak`` FLOP/s; with ``fp8_gemm`` the block Linears run at ``FP8_GEMM_SPEEDUP`` x peak."""
        block = self.block_linear / (FP8_GEMM_SPEEDUP if fp8_gemm else 1.0)
        return (block + self.other_linear + self.attention) / peak


def dit_flops(cfg: DiTConfig, image_tokens: int, text_tokens: Sequence[int]) -> Flops:
    """FLOPs of one DiT forward over a batch: sample b has ``image_tokens`` (N) image tokens and ``text_tokens[b]``
    (L_b) valid Qwen tokens, no ByT5 tokens; the text stream is padded to L = max L_b for the Linears.

        linear    = 2 * sum over Linears of in * out * rows, rows per sample: N (img_in, the image stream of the
                    double blocks, the final layer), L (token refiner, the text stream), N + L (single blocks) or
                    1 (the conditioning vector: time / guidance / MeanFlow embedders, pooled text, modulations)
        attention = 4 * (N + L_b)^2 * hidden per double or single block (q k^T and the weighted sum of v, each
                    2 * S^2 * head_dim per head), plus 4 * L^2 * hidden per token-refiner block

    Elementwise work (norms, RoPE, activations, the Euler update) is not counted: the limit is the tensor cores'.
    """
    h, m, text, n = cfg.hidden_size, cfg.mlp_hidden, cfg.text_dim, image_tokens
    batch, length = len(text_tokens), max(text_tokens)
    stream = 4 * h * h + 2 * h * m  # qkv 3h^2 + proj h^2 + mlp 2hm; a single block's linear1 + linear2 alike
    blocks = cfg.depth_double * stream * (n + length) + cfg.depth_single * stream * (n + length)
    modulations = cfg.depth_double * 2 * 6 * h * h + cfg.depth_single * 3 * h * h
    embedders = 2 + int(cfg.meanflow) + int(cfg.guidance_embed)  # time_in, txt_in.t_embedder (+ time_r_in, guidance)
    vector = embedders * (TIME_FEATURES * h + h * h) + (text * h + h * h) + (cfg.refiner_depth + 1) * 2 * h * h
    refiner = (text * h + cfg.refiner_depth * (4 * h * h + 2 * h * 4 * h)) * length  # input_embedder, its blocks
    image = (cfg.in_channels + cfg.out_channels) * h * n  # img_in (a kernel-1 convolution), final linear
    depth = cfg.depth_double + cfg.depth_single
    attention = sum(4 * h * (depth * (n + valid) ** 2 + cfg.refiner_depth * length**2) for valid in text_tokens)
    return Flops(2.0 * batch * (blocks + modulations), 2.0 * batch * (vector + refiner + image), float(attention))


def counted_flops(run: Callable[[], object]) -> float:
    """Matrix FLOPs of ``run()`` counted by ``torch.utils.flop_counter``, attention through SDPA's math kernel so
    that its two products are counted too."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, torch.no_grad():
        run()
    return float(counter.get_total_flops())


# --- random weights on the device ---------------------------------------------------------------------------------


Reader = Callable[[str], "torch.Tensor | Fp8Weight"]


def random_reader(shapes: dict[str, tuple[int, ...]], device: torch.device) -> Reader:
    """A checkpoint reader whose tensors are drawn on ``device`` in bf16 (no file, no host copy)."""
    return lambda name: fill(torch.empty(shapes[name], dtype=BF16, device=device), name)


def shared_reader(source: nn.Module, fallback: Reader) -> Reader:
    """A reader handing out ``source``'s own tensors (fp8 layers as their weight and scale), so a second model built
    from it shares them; names ``source`` lacks come from ``fallback``."""
    modules = dict(source.named_modules())

    def read(name: str) -> torch.Tensor | Fp8Weight:
        module_name, _, leaf = name.rpartition(".")
        module = modules.get(module_name)
        if module is None or getattr(module, leaf, None) is None:
            return fallback(name)
        if leaf == "weight" and getattr(module, "weight_format", None) == "fp8":
            return Fp8Weight(module.weight, module.weight_scale)
        return getattr(module, leaf)

    return read


def build_dit(
    cfg: DiTConfig, device: torch.device, fp8: bool, source: HunyuanImageDiT | None = None
) -> HunyuanImageDiT:
    """The DiT with random weights through the core's load loop; ``fp8``: the block Linears quantized at load as
    ``load_dit(quantize_fp8=True)`` does; ``source``: a model whose tensors this one shares."""

    def build(ops: object) -> HunyuanImageDiT:
        return HunyuanImageDiT(cfg, dtype=BF16, operations=ops)

    reference = on_meta(lambda: build(nn))
    read = random_reader(state_shapes(reference), device)
    if fp8:
        read = quantizing_reader(read, official_fp8_weights(reference))
    if source is not None:
        read = shared_reader(source, read)
    model = build_and_load(
        build, nn, read, dtype=BF16, device=device, error=CheckpointError, file_name=f"random {cfg.variant} weights"
    )
    return model.requires_grad_(False)


def set_fp8_matmul(model: nn.Module, on: bool) -> int:
    """Switch the core's opt-in fp8 matmul on or off on every fp8 layer (as ``load_dit(fp8_matmul=True)``)."""
    layers = [m for m in model.modules() if getattr(m, "weight_format", None) == "fp8"]
    for layer in layers:
        layer.fp8_matmul = on
    return len(layers)


def stored_bytes(model: nn.Module) -> int:
    """Bytes of the model's tensors, each storage once."""
    seen: dict[int, int] = {}
    for t in (*model.parameters(), *model.buffers()):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(seen.values())


# --- timing and the table ---------------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    weights: str
    times: list[float] = field(default_factory=list)
    flops: Flops | None = None
    limit_s: float = math.nan
    peak_bytes: int | None = None
    finite: bool | None = None
    error: str | None = None
    scale: float = 1.0  # extrapolation factor applied to the measured time (1 when everything ran)

    @property
    def seconds(self) -> float:
        return statistics.median(self.times) * self.scale if self.times else math.nan


class Bench:
    """The device, its clock and peak meter, the progress log and the rows measured so far."""

    def __init__(self, device: torch.device, peak_flops: float) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.peak_flops = peak_flops
        self.start = time.perf_counter()
        self.rows: list[Row] = []
        self.notes: list[str] = []

    def log(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.start:6.1f} s] {message}", flush=True)

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def clock(self) -> float:
        self.sync()
        return time.perf_counter()

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak(self) -> int | None:
        return torch.cuda.max_memory_allocated(self.device) if self.cuda else None

    def free(self) -> None:
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()

    def measure(
        self, row: Row, run: Callable[[], torch.Tensor], warmup: int, repeats: int, fp8_gemm: bool = False
    ) -> torch.Tensor | None:
        """Time ``run`` (``warmup`` untimed calls, then ``repeats`` timed ones) into ``row`` with its peak memory and
        whether its last output is finite, and return that output. A failure (out of memory, a kernel refusing) is
        recorded on the row and None returned: the other rows still run."""
        self.rows.append(row)
        if row.flops is not None:
            row.limit_s = row.flops.limit_s(self.peak_flops, fp8_gemm)
        self.reset_peak()
        out = None
        try:
            with torch.no_grad():
                for _ in range(warmup):
                    out = run()
                for _ in range(repeats):
                    start = self.clock()
                    out = run()
                    row.times.append(self.clock() - start)
                row.finite = bool(torch.isfinite(out).all())
        except (RuntimeError, ValueError) as exc:  # torch.OutOfMemoryError is a RuntimeError
            row.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
            out = None
        row.peak_bytes = self.peak()
        self.free()
        self.log(f"{row.name} [{row.weights}]: " + (row.error or f"{row.seconds:.4f} s"))
        return out

    def table(self) -> str:
        head = (
            f"{'row':<56} {'weights':<10} {'median s':>9} {'runs':>4} {'TFLOP':>9} {'limit s':>9} {'x limit':>8} "
            f"{'peak GiB':>8} {'finite':>6}"
        )
        lines = [head, "-" * len(head)]
        for r in self.rows:
            tflop = f"{r.flops.total / 1e12:9.4g}" if r.flops else f"{'-':>9}"
            if r.error:
                lines.append(f"{r.name:<56} {r.weights:<10} failed: {r.error}")
                continue
            peak = f"{r.peak_bytes / GIB:8.2f}" if r.peak_bytes is not None else f"{'-':>8}"
            ratio = r.seconds / r.limit_s if r.limit_s > 0 else math.nan
            finite = {True: "yes", False: "NO", None: "-"}[r.finite]
            lines.append(
                f"{r.name:<56} {r.weights:<10} {r.seconds:9.4f} {len(r.times):4d} {tflop} {r.limit_s:9.4g} "
                f"{ratio:8.3g} {peak} {finite:>6}"
            )
        return "\n".join(lines)


# --- inputs -----------------------------------------------------------------------------------------------------


def prompt(tokens: int, dim: int, seed: int, device: torch.device) -> Conditioning:
    """``tokens`` valid Qwen states (random, N(0, 1)) and no ByT5 tokens, on ``device``."""
    states = torch.randn(1, tokens, dim, generator=torch.Generator().manual_seed(seed)).to(device, BF16)
    return Conditioning(mllm=states, mllm_mask=torch.ones(1, tokens, dtype=torch.int64, device=device))


def latent_noise(batch: int, side: int, seed: int, device: torch.device) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, STAGE1_LATENT.channels, side, side, generator=gen).to(device)


@dataclass
class Setup:
    """What every DiT row shares: configs, sizes (pixel sides), the two prompts, the steps and limits."""

    base: DiTConfig
    distilled: DiTConfig
    sizes: tuple[int, ...]
    positive: Conditioning
    negative: Conditioning
    repeats: int
    warmup: int
    sample_repeats: int
    base_max_s: float
    base_timed_steps: int | None

    def latent_side(self, size: int) -> int:
        return size // STAGE1_LATENT.compression

    def tokens(self, batch: int) -> list[int]:
        """Valid text tokens per sample: the positive alone, or [negative, positive] as the guidance batches them."""
        if batch == 1:
            return [self.positive.mllm.shape[1]]
        return [self.negative.mllm.shape[1], self.positive.mllm.shape[1]]

    def text(self, batch: int) -> Conditioning:
        return self.positive if batch == 1 else concat_conditionings([self.negative, self.positive])


Outputs = dict[tuple[int, int], torch.Tensor]  # a forward row's last output (on the CPU) by (size, batch)


def forward_rows(
    bench: Bench, setup: Setup, model: HunyuanImageDiT, weights: str, fp8_gemm: bool = False
) -> tuple[Outputs, float]:
    """One plain (base) forward per size and batch. Returns the last outputs and the median time of the batch-2
    forward at the largest size (NaN if it failed): what a base sampling step costs."""
    outputs: Outputs = {}
    step_s = math.nan
    for size in setup.sizes:
        side = setup.latent_side(size)
        for batch in (1, 2):
            text = setup.text(batch)
            x = latent_noise(batch, side, 11, bench.device).to(BF16)
            t = torch.full((batch,), FORWARD_SIGMA * TIMESTEP_MULTIPLIER, device=bench.device)

            def run(x: torch.Tensor = x, t: torch.Tensor = t, text: Conditioning = text) -> torch.Tensor:
                return model(x, t, text.mllm, text.mllm_mask)

            row = Row(f"DiT forward {size}x{size}, batch {batch}", weights)
            row.flops = dit_flops(model.config, side * side, setup.tokens(batch))
            out = bench.measure(row, run, setup.warmup, setup.repeats, fp8_gemm)
            if out is not None:
                outputs[size, batch] = out.float().cpu()
            if batch == 2 and size == max(setup.sizes) and not row.error:
                step_s = row.seconds
    return outputs, step_s


class StepsDoneError(Exception):
    """Raised by the step callback after the steps that fit the time allowance (the run is extrapolated)."""


def base_steps_timed(setup: Setup, steps: int, step_s: float) -> int:
    """How many of the base model's ``steps`` to run: all, unless ``--base-timed-steps`` says otherwise or the
    batch-2 forward time ``step_s`` puts them past ``--base-max-s``."""
    if setup.base_timed_steps is not None:
        return max(1, min(steps, setup.base_timed_steps))
    if not math.isfinite(step_s) or step_s <= 0:
        return steps
    return max(1, min(steps, int(setup.base_max_s / (step_s * 1.05))))


def sampling_rows(
    bench: Bench, setup: Setup, base: HunyuanImageDiT, distilled: HunyuanImageDiT, weights: str, step_s: float
) -> None:
    """The distilled model's official 8 steps and the base model's official 50 steps at the largest size, through
    the core sampler."""
    size = max(setup.sizes)
    side = setup.latent_side(size)
    noise = latent_noise(1, side, 5, bench.device)

    plan = plan_sampling(DISTILLED.name)
    row = Row(f"distilled {plan.schedule.steps} steps {size}x{size} (embedded, MeanFlow)", weights)
    row.flops = dit_flops(distilled.config, side * side, setup.tokens(1)).times(plan.schedule.steps)
    bench.measure(
        row,
        lambda: sample(distilled, noise, setup.positive, schedule=plan.schedule, guidance=plan.guidance),
        0,
        setup.sample_repeats,
    )

    plan = plan_sampling(BASE.name)  # batched_cfg=True: [negative, positive] in one forward per step
    steps = plan.schedule.steps
    timed = base_steps_timed(setup, steps, step_s)
    label = f"base {steps} steps {size}x{size} (CFG+APG, batched)"
    if timed < steps:
        label = f"base {steps} steps {size}x{size} (extrapolated from {timed})"
    row = Row(label, weights, scale=steps / timed)
    row.flops = dit_flops(base.config, side * side, setup.tokens(2)).times(steps)
    last: list[torch.Tensor] = []

    def stop_after(step: int, total: int, x: torch.Tensor, denoised: torch.Tensor) -> None:
        last[:] = [x]
        if step + 1 >= timed and timed < total:
            raise StepsDoneError

    def run() -> torch.Tensor:
        with contextlib.suppress(StepsDoneError):
            sample(
                base, noise, setup.positive, setup.negative, schedule=plan.schedule, guidance=plan.guidance,
                callback=stop_after,
            )  # fmt: skip
        return last[0]

    bench.measure(row, run, 0, 1)


def dit_rows(bench: Bench, setup: Setup, formats: Sequence[str]) -> dict[str, Outputs]:
    """Every DiT row for bf16, then for fp8 (the bf16 model freed first); the forward outputs by weights."""
    outputs: dict[str, Outputs] = {}
    checked = False
    for weights in ("bf16", "fp8"):
        matmul = weights == "fp8" and "fp8_matmul" in formats
        if weights not in formats and not matmul:
            continue
        bench.log(f"building the {weights} DiT ({setup.base.depth_double}+{setup.base.depth_single} blocks)")
        base = build_dit(setup.base, bench.device, fp8=weights == "fp8")
        distilled = build_dit(setup.distilled, bench.device, fp8=weights == "fp8", source=base)
        bench.sync()
        bench.log(f"built: {stored_bytes(base) / GIB:.2f} GiB of weights (the distilled model shares them)")
        if not checked:
            check_formula(bench, setup, base)
            checked = True
        if weights in formats:
            outputs[weights], step_s = forward_rows(bench, setup, base, weights)
            sampling_rows(bench, setup, base, distilled, weights, step_s)
        if matmul:
            bench.log(f"fp8 matmul on for {set_fp8_matmul(base, True)} fp8 layers")
            outputs["fp8_matmul"], _ = forward_rows(bench, setup, base, "fp8 matmul", fp8_gemm=True)
            set_fp8_matmul(base, False)
        del base, distilled
        bench.free()
    return outputs


def check_formula(bench: Bench, setup: Setup, model: HunyuanImageDiT) -> None:
    """The analytic FLOPs of a batch-2 forward at the smallest size against the counted ones (a note)."""
    size = min(setup.sizes)
    side = setup.latent_side(size)
    text = setup.text(2)
    x = latent_noise(2, side, 11, bench.device).to(BF16)
    t = torch.full((2,), FORWARD_SIGMA * TIMESTEP_MULTIPLIER, device=bench.device)
    analytic = dit_flops(model.config, side * side, setup.tokens(2)).total
    try:
        counted = counted_flops(lambda: model(x, t, text.mllm, text.mllm_mask))
        line = (
            f"FLOP formula check ({size}x{size}, batch 2): analytic {analytic:.6g}, counted {counted:.6g} "
            f"(torch.utils.flop_counter), ratio {analytic / counted:.4f}"
        )
    except (RuntimeError, ValueError) as exc:
        line = f"FLOP formula check failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    bench.notes.append(line)
    bench.log(line)
    bench.free()


def vae_row(bench: Bench, vae_cfg: VAEConfig, size: int, repeats: int, warmup: int) -> None:
    """The full VAE's decode of a ``size``-pixel image's latent in bf16, random weights drawn on the device."""
    side = size // STAGE1_LATENT.compression
    meta = on_meta(lambda: HunyuanImageVAE(vae_cfg, dtype=BF16))
    shape = (1, vae_cfg.latent_channels, side, side)
    flops = counted_flops(lambda: meta.decode(torch.empty(shape, dtype=BF16, device="meta")))
    bench.log(f"building the VAE ({vae_cfg.spatial_compression}x, widths {vae_cfg.block_out_channels})")
    vae = HunyuanImageVAE(vae_cfg, dtype=BF16, device=bench.device).eval().requires_grad_(False)
    with torch.no_grad():
        for name, param in vae.named_parameters():
            fill(param, name)
    z = latent_noise(1, side, 9, bench.device).to(BF16)
    out_side = side * vae_cfg.spatial_compression
    row = Row(f"VAE decode {out_side}x{out_side}", "bf16", flops=Flops(0.0, flops, 0.0))
    bench.measure(row, lambda: vae.decode(z), warmup, repeats)


def relative_l2(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.double() - want.double()).norm() / want.double().norm())


# --- main -------------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (with --tiny: a smoke test)")
    parser.add_argument("--tiny", action="store_true", help="tiny DiT and VAE, small sizes: every path in seconds")
    parser.add_argument("--double", type=int, help="double blocks (default: 20, tiny 1)")
    parser.add_argument("--single", type=int, help="single blocks (default: 40, tiny 2)")
    parser.add_argument("--sizes", help="image sides in pixels, comma-separated (default 1024,2048; tiny 64,128)")
    parser.add_argument("--text-tokens", type=int, help="Qwen tokens of the positive prompt (default 256, tiny 8)")
    parser.add_argument("--negative-tokens", type=int, help="Qwen tokens of the negative prompt (default: as many)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per forward row (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before each forward / VAE row")
    parser.add_argument("--sample-repeats", type=int, default=3, help="timed runs of the distilled sampling")
    parser.add_argument("--vae-repeats", type=int, default=3)
    parser.add_argument(
        "--base-max-s", type=float, default=60.0,
        help="time allowance of the 50 base steps per weight format: fewer steps are run and extrapolated beyond it",
    )  # fmt: skip
    parser.add_argument("--base-timed-steps", type=int, help="run only this many base steps and extrapolate to 50")
    parser.add_argument("--formats", default=",".join(FORMATS), help=f"any of {', '.join(FORMATS)}")
    parser.add_argument("--skip-vae", action="store_true")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (the CPU smoke test)")
    parser.add_argument("--peak-tflops", type=float, default=790.0, help="dense bf16 peak of the limit (H200: 790)")
    return parser.parse_args(argv)


def make_setup(args: argparse.Namespace, device: torch.device) -> Setup:
    changes = dict(TINY_DIT) if args.tiny else {}
    if args.double is not None:
        changes["depth_double"] = args.double
    if args.single is not None:
        changes["depth_single"] = args.single
    base, distilled = BASE.dit.with_(**changes), DISTILLED.dit.with_(**changes)
    sizes = tuple(int(s) for s in args.sizes.split(",")) if args.sizes else (TINY_SIZES if args.tiny else (1024, 2048))
    text_tokens = args.text_tokens or (TINY_TEXT_TOKENS if args.tiny else 256)
    negative_tokens = args.negative_tokens or text_tokens
    return Setup(
        base=base,
        distilled=distilled,
        sizes=sizes,
        positive=prompt(text_tokens, base.text_dim, 1, device),
        negative=prompt(negative_tokens, base.text_dim, 2, device),
        repeats=args.repeats,
        warmup=args.warmup,
        sample_repeats=args.sample_repeats,
        base_max_s=args.base_max_s,
        base_timed_steps=args.base_timed_steps,
    )


def describe_device(device: torch.device) -> str:
    if device.type != "cuda":
        return f"{device} (torch threads: {torch.get_num_threads()}), torch {torch.__version__}"
    props = torch.cuda.get_device_properties(device)
    return (
        f"{props.name}, {props.total_memory / GIB:.1f} GiB, compute capability {props.major}.{props.minor}, "
        f"torch {torch.__version__}, CUDA {torch.version.cuda}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(NO_GPU, flush=True)
        return 2
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise SystemExit(f"unknown format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    setup = make_setup(args, device)
    bench = Bench(device, args.peak_tflops * 1e12)
    cfg = setup.base
    bench.log(f"device: {describe_device(device)}")
    bench.log(
        f"DiT: {'tiny' if args.tiny else 'full size'}, {cfg.depth_double} double + {cfg.depth_single} single blocks, "
        f"hidden {cfg.hidden_size}, {cfg.num_heads} heads, token refiner {cfg.refiner_depth} blocks; text "
        f"{setup.tokens(2)[1]} Qwen tokens (negative {setup.tokens(2)[0]}), no ByT5; sizes {setup.sizes}"
    )
    outputs = dit_rows(bench, setup, formats)
    if not args.skip_vae:
        vae_row(bench, TINY_VAE if args.tiny else STAGE1_VAE, max(setup.sizes), args.vae_repeats, args.warmup)
        bench.free()
    report(bench, args, outputs)
    return 1 if any(r.error or r.finite is False for r in bench.rows) else 0


def report(bench: Bench, args: argparse.Namespace, outputs: dict[str, Outputs]) -> None:
    """The table and what it needs said beside it."""
    print(flush=True)
    print(
        f"HunyuanImage-2.1 on {describe_device(bench.device)}: random weights; limit = FLOPs / {args.peak_tflops:g} "
        f"TFLOP/s (dense bf16; fp8 matmul rows: block Linears at {FP8_GEMM_SPEEDUP:g}x that); x limit = median / limit"
    )
    print(bench.table())
    print()
    notes = [
        "weights: bf16 = every tensor bf16; fp8 = block Linears e4m3 + per-tensor scale in the core's "
        "QuantizedLinear, weight-only as the core runs it (each weight expanded to bf16 per call, bf16 matmul: the "
        "official FP8 arithmetic), so its limit is the bf16 one; fp8 matmul = the core's opt-in fp8_matmul (one "
        "torch._scaled_mm per fp8 layer, activations quantized per tensor; not the official arithmetic)",
        "TFLOP: matrix products only, bench_gpu.dit_flops for the DiT (sampling rows: every step's forward), "
        "torch.utils.flop_counter on the meta device for the VAE; peak GiB: max_memory_allocated, weights included",
        *bench.notes,
        "batch 2 = negative and positive prompt in one forward, as the base guidance batches them (batched_cfg)",
    ]
    for other in ("fp8", "fp8_matmul"):
        common = sorted(set(outputs.get("bf16", {})) & set(outputs.get(other, {})))
        if common:
            size, batch = common[-1]
            err = relative_l2(outputs[other][size, batch], outputs["bf16"][size, batch])
            notes.append(f"{other} vs bf16 output (same weights, {size}x{size} batch {batch}): relative L2 {err:.3e}")
    if bench.device.type != "cuda":
        notes.append("on the CPU the limit column is still the H200's: the ratios say nothing about this machine")
    if args.tiny:
        notes.append("tiny model: a smoke test of every path, not a measurement")
    failed = sum(1 for r in bench.rows if r.error)
    not_finite = sum(1 for r in bench.rows if r.finite is False)
    notes.append(
        f"rows: {len(bench.rows)}, failed: {failed}, non-finite outputs: {not_finite}; total wall time "
        f"{time.perf_counter() - bench.start:.1f} s"
    )
    for note in notes:
        print(f"- {note}")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
