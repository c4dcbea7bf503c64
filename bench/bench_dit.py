"""Benchmark: one DiT forward, this pack (valid text only) versus diffusers (text padded as its pipeline does).

Both models are full width (hidden 3584, 28 heads x 128, MLLM text 3584, ByT5 1472, RoPE (64, 64)) but reduced
depth (1 double block, 2 single blocks, 2 token-refiner blocks), with the same random weights, in the same dtype.
The prompt is 60 MLLM tokens. This pack gets exactly those (and no ByT5, or ``--byt5-tokens N`` valid ones);
diffusers gets what its pipeline always passes: the MLLM states padded with zeros to 1000 tokens and the ByT5
states padded to 128 (all zeros under mask 0 when the prompt has no quoted text), each with its mask.
Each size is timed side by side (one warm-up forward each, then the median of ``--repeats`` alternating runs);
targets: ours/diffusers <= 0.85 at 2048x2048, <= 0.6 at 1024x1024.

The memory part writes a bf16 checkpoint of the same reduced model in the official fused layout (2.45 GiB: full
width, so every tensor has its real size, and large enough that the interpreter's own few MiB are noise), loads it
with ``hunyuan_core.dit.checkpoint.load_dit`` in a fresh subprocess, and reports the peak resident memory the load
adds (``ru_maxrss`` after loading minus ``ru_maxrss`` after the imports) over the file size (target <= 1.05: the
weights once, plus at most one layer's tensors in flight). About 40 s on 2 CPU cores. ``--memory-width`` builds a
narrower model (a smoke test); under 256 MiB the ratio is printed but not judged.

Run: .venv/bin/python bench/bench_dit.py [--dtype bf16|fp32] [--repeats 3] [--sizes 2048 1024] [--skip-memory]
     .venv/bin/python bench/bench_dit.py --sizes          (the memory part alone)
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HIDDEN, HEADS, HEAD_DIM = 3584, 28, 128
TEXT_DIM, BYT5_DIM = 3584, 1472
PROMPT_TOKENS, MLLM_PAD, BYT5_PAD = 60, 1000, 128
DEPTH_DOUBLE, DEPTH_SINGLE, DEPTH_REFINER = 1, 2, 2
TARGETS = {2048: 0.85, 1024: 0.6}
MEMORY_TARGET = 1.05
MEMORY_MIN_FILE = 256 * 1024**2  # below this, interpreter noise can move the ratio by more than the target's slack
DTYPES = {"bf16": "bfloat16", "fp32": "float32", "fp16": "float16"}


def config(hidden: int = HIDDEN):
    """The reduced model: real head size and text widths, ``hidden`` wide (the real 3584 unless a smoke test)."""
    from hunyuan_core.dit import DiTConfig

    return DiTConfig(
        variant="base", hidden_size=hidden, num_heads=hidden // HEAD_DIM, depth_double=DEPTH_DOUBLE,
        depth_single=DEPTH_SINGLE, refiner_depth=DEPTH_REFINER, rope_axes=(64, 64), text_dim=TEXT_DIM,
        byt5_dim=BYT5_DIM,
    )  # fmt: skip


def build_models(dtype, device):
    """diffusers' model with random weights, and ours holding the same weights (converted to the fused layout)."""
    import torch
    from diffusers import HunyuanImageTransformer2DModel

    from hunyuan_core.dit import HunyuanImageDiT
    from hunyuan_core.dit import keys as K

    with torch.device("meta"):
        ref = HunyuanImageTransformer2DModel(
            in_channels=64, out_channels=64, num_attention_heads=HEADS, attention_head_dim=HEAD_DIM,
            num_layers=DEPTH_DOUBLE, num_single_layers=DEPTH_SINGLE, num_refiner_layers=DEPTH_REFINER,
            text_embed_dim=TEXT_DIM, text_embed_2_dim=BYT5_DIM, rope_axes_dim=(64, 64),
        )  # fmt: skip
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in list(ref.named_parameters()):
            value = torch.randn(p.shape, generator=gen)
            if p.ndim >= 2:
                value /= p[0].numel() ** 0.5  # fan-in scaled, so activations stay in range in bf16
            elif name.endswith(".weight") and "norm" in name:
                value = 1 + 0.05 * value
            else:
                value *= 0.02
            module_name, _, leaf = name.rpartition(".")
            setattr(ref.get_submodule(module_name), leaf, torch.nn.Parameter(value.to(device, dtype), False))
            del value
    if any(t.is_meta for t in (*ref.parameters(), *ref.buffers())):
        raise RuntimeError("diffusers' model has state this benchmark does not fill")
    ref.eval()

    state = ref.state_dict()
    cfg = config()
    with torch.device("meta"):
        ours = HunyuanImageDiT(cfg, dtype=dtype)
    converted = {}
    for name in ours.state_dict():
        source = K.source_of(name, K.DIFFUSERS)
        tensor = state[source.keys[0]] if len(source.keys) == 1 else torch.cat([state[k] for k in source.keys])
        converted[name] = torch.cat(tensor.chunk(2)[::-1]) if source.swap_halves else tensor
    ours.load_state_dict(converted, strict=True, assign=True)
    return ref, ours.eval()


def make_inputs(pixels: int, byt5_tokens: int, dtype, device):
    """(ours kwargs, diffusers kwargs) for one 1-sample forward at ``pixels`` x ``pixels``."""
    import torch

    gen = torch.Generator().manual_seed(pixels)
    side = pixels // 32  # the VAE downsamples by 32
    x = torch.randn(1, 64, side, side, generator=gen).to(device, dtype)
    t = torch.tensor([700.0]).to(device, dtype)
    text = torch.randn(1, PROMPT_TOKENS, TEXT_DIM, generator=gen).to(device, dtype)
    byt5 = torch.randn(1, byt5_tokens, BYT5_DIM, generator=gen).to(device, dtype)

    padded_text = torch.zeros(1, MLLM_PAD, TEXT_DIM, dtype=dtype, device=device)
    padded_text[:, :PROMPT_TOKENS] = text
    text_mask = torch.zeros(1, MLLM_PAD, dtype=torch.long, device=device)
    text_mask[:, :PROMPT_TOKENS] = 1
    padded_byt5 = torch.zeros(1, BYT5_PAD, BYT5_DIM, dtype=dtype, device=device)
    padded_byt5[:, :byt5_tokens] = byt5
    byt5_mask = torch.zeros(1, BYT5_PAD, dtype=torch.long, device=device)
    byt5_mask[:, :byt5_tokens] = 1

    ours = {"x": x, "t": t, "text": text, "text_mask": torch.ones(1, PROMPT_TOKENS, dtype=torch.long, device=device)}
    if byt5_tokens:
        ours |= {"byt5": byt5, "byt5_mask": torch.ones(1, byt5_tokens, dtype=torch.long, device=device)}
    theirs = {
        "hidden_states": x, "timestep": t, "encoder_hidden_states": padded_text, "encoder_attention_mask": text_mask,
        "encoder_hidden_states_2": padded_byt5, "encoder_attention_mask_2": byt5_mask, "return_dict": False,
    }  # fmt: skip
    return ours, theirs


def sync(device) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def time_pair(ours_fn, ref_fn, repeats: int, device) -> tuple[list[float], list[float], object, object]:
    """Seconds of each run of ours and diffusers (warm-up each, then alternating runs) and the warm-up outputs."""
    out_ours, out_ref = ours_fn(), ref_fn()  # warm-up
    times_ours, times_ref = [], []
    for _ in range(repeats):
        for fn, times in ((ours_fn, times_ours), (ref_fn, times_ref)):
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times.append(time.perf_counter() - start)
    return times_ours, times_ref, out_ours, out_ref


def bench_speed(args, dtype, device) -> dict[str, float]:
    import torch

    print(f"building both models ({DEPTH_DOUBLE} double + {DEPTH_SINGLE} single + {DEPTH_REFINER} refiner blocks, "
          f"full width, {args.dtype}, {device}) ...", flush=True)  # fmt: skip
    start = time.perf_counter()
    ref, ours = build_models(dtype, device)
    params = sum(p.numel() for p in ours.parameters())
    print(f"  built in {time.perf_counter() - start:.0f} s, {params / 1e9:.2f} B parameters each", flush=True)
    byt5 = f"{args.byt5_tokens} valid ByT5 tokens" if args.byt5_tokens else "no ByT5"
    print(f"ours: {PROMPT_TOKENS} MLLM tokens, {byt5}; diffusers: MLLM padded to {MLLM_PAD}, ByT5 padded to "
          f"{BYT5_PAD} ({args.byt5_tokens} valid); torch threads {torch.get_num_threads()}", flush=True)  # fmt: skip
    header = (
        f"{'size':>9} {'img tok':>7} {'ours s':>9} {'diffusers s':>11} {'ratio':>6} {'target':>6}  max|diff|/max|ref|"
    )
    rows = []
    ratios = {}
    for pixels in args.sizes:
        ours_kw, ref_kw = make_inputs(pixels, args.byt5_tokens, dtype, device)
        with torch.inference_mode():
            runs_ours, runs_ref, out_ours, out_ref = time_pair(
                partial(ours, **ours_kw), partial(ref, **ref_kw), args.repeats, device
            )
        out_ref = out_ref[0]
        t_ours, t_ref = statistics.median(runs_ours), statistics.median(runs_ref)
        rel = float((out_ours.float() - out_ref.float()).abs().max() / out_ref.float().abs().max())
        ratio = t_ours / t_ref
        ratios[pixels] = ratio
        target = TARGETS.get(pixels)
        mark = "" if target is None else ("ok" if ratio <= target else "MISS")
        target_text = f"{target:.2f}" if target is not None else "-"
        side = pixels // 32
        rows.append(
            f"{pixels}x{pixels:<4} {side * side:>7} {t_ours:>9.2f} {t_ref:>11.2f} {ratio:>6.3f} {target_text:>6}  "
            f"{rel:.1e} {mark}"
        )
        each = (
            f"ours {', '.join(f'{r:.2f}' for r in runs_ours)} s; diffusers {', '.join(f'{r:.2f}' for r in runs_ref)} s"
        )
        print(f"  {pixels}x{pixels} runs: {each}", flush=True)
        del out_ours, out_ref
    print()
    print(header)
    for row in rows:
        print(row)
    print()
    return ratios


def vm_hwm() -> int | None:
    """This process's own peak RSS in bytes from /proc (reset by exec, unlike ru_maxrss); None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def child_write(path: str, hidden: int) -> None:
    """Runs in a subprocess: write the reduced model's random bf16 weights in the official fused layout."""
    import torch
    from safetensors.torch import save_file

    from hunyuan_core.dit import HunyuanImageDiT

    with torch.device("meta"):
        model = HunyuanImageDiT(config(hidden), dtype=torch.bfloat16)
    gen = torch.Generator().manual_seed(1)
    tensors = {
        name: (torch.randn(t.shape, generator=gen) * 0.02).to(torch.bfloat16) for name, t in model.state_dict().items()
    }
    save_file(tensors, path)


def child_load(path: str) -> None:
    """Runs in a fresh subprocess: import, note the baseline, load, report the peak RSS as JSON."""
    import torch  # noqa: F401

    try:
        from hunyuan_core.dit.checkpoint import load_dit
    except Exception as e:
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        return
    baseline, hwm_baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, vm_hwm()
    start = time.perf_counter()
    model = load_dit(path)
    seconds = time.perf_counter() - start
    peak, hwm_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, vm_hwm()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    result = {"baseline": baseline, "peak": peak, "hwm_baseline": hwm_baseline, "hwm_peak": hwm_peak}
    print(json.dumps(result | {"seconds": seconds, "weights": weights, "dtype": dtype}))


def run_child(flag: str, path: Path, hidden: int) -> subprocess.CompletedProcess:
    command = [sys.executable, __file__, flag, str(path), "--memory-width", str(hidden)]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def bench_memory(hidden: int = HIDDEN) -> float | None:
    """The load's peak growth over the file size (None if it could not be measured), printed with its verdict.

    Both children start from this process before it has built any model: ru_maxrss carries over a fork.
    """
    with tempfile.TemporaryDirectory(prefix="bench_dit_") as tmp:
        path = Path(tmp) / "dit_reduced_bf16.safetensors"
        proc = run_child("--write-child", path, hidden)
        if proc.returncode != 0:
            print(f"memory: writing the checkpoint failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
            return None
        size = path.stat().st_size
        proc = run_child("--load-child", path, hidden)
        if proc.returncode != 0:
            print(f"memory: the loading subprocess failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
            return None
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    if "error" in result:
        print(f"memory: loader not available ({result['error']}); skipping the memory part")
        return None
    grown = result["peak"] - result["baseline"]
    ratio = grown / size
    gib = 1024**3
    print(f"memory: load_dit of a {size / gib:.3f} GiB bf16 file (official fused layout, hidden {hidden}) in a fresh"
          " process")  # fmt: skip
    beside = (grown - size) / 1024**2
    print(f"  ru_maxrss after imports {result['baseline'] / gib:.2f} GiB, after load {result['peak'] / gib:.2f} GiB,"
          f" growth {grown / gib:.2f} GiB ({beside:+.1f} MiB beside the file); weights"
          f" {result['weights'] / gib:.2f} GiB ({result['dtype']}); load {result['seconds']:.1f} s")  # fmt: skip
    if result["hwm_peak"] is not None:
        hwm = (result["hwm_peak"] - result["hwm_baseline"]) / size
        print(f"  cross-check from /proc VmHWM: growth / file size = {hwm:.3f}")
    if size < MEMORY_MIN_FILE:
        verdict = f"not judged: the file is under {MEMORY_MIN_FILE // 1024**2} MiB, interpreter noise dominates"
    else:
        verdict = "ok" if ratio <= MEMORY_TARGET else "MISS"
    print(f"  peak growth / file size = {ratio:.3f}   (target <= {MEMORY_TARGET}) {verdict}")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16", help="dtype of both models (default bf16)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per model and size (median)")
    parser.add_argument("--sizes", type=int, nargs="*", default=[2048, 1024], help="image sizes in pixels")
    parser.add_argument("--byt5-tokens", type=int, default=0, help="valid ByT5 tokens (0 = prompt without quotes)")
    parser.add_argument("--device", default="cpu", help="device for the speed part (default cpu)")
    parser.add_argument("--skip-memory", action="store_true", help="skip the checkpoint loading memory part")
    parser.add_argument(
        "--memory-width", type=int, default=HIDDEN, help=f"hidden width of the memory part's model (default {HIDDEN})"
    )
    parser.add_argument("--write-child", metavar="PATH", help=argparse.SUPPRESS)
    parser.add_argument("--load-child", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_width <= 0 or args.memory_width % HEAD_DIM:
        parser.error(f"--memory-width must be a positive multiple of {HEAD_DIM}")
    if args.write_child:
        child_write(args.write_child, args.memory_width)
        return
    if args.load_child:
        child_load(args.load_child)
        return
    if not 0 <= args.byt5_tokens <= BYT5_PAD:
        parser.error(f"--byt5-tokens must be between 0 and {BYT5_PAD}")
    if any(s % 32 for s in args.sizes):
        parser.error("sizes must be multiples of 32")

    import torch

    dtype = getattr(torch, DTYPES[args.dtype])
    if not args.skip_memory:
        bench_memory(args.memory_width)  # first, while this process is still small
        print()
    if args.sizes:
        bench_speed(args, dtype, torch.device(args.device))


if __name__ == "__main__":
    main()
    sys.exit(0)
