"""Benchmark: how long after Cancel the pack's text encoding and VAE decode stop, inside the hosted ComfyUI.

ComfyUI's ``POST /interrupt`` sets its interrupt flag (``comfy.model_management.interrupt_current_processing``);
the pack checks that flag before every weighted layer of its text encoders and VAEs (``nodes/interrupt.py``, applied by
``management.patch`` for the roles "text" and "vae"). This measures, in-process, the time from setting the flag to
``InterruptProcessingException`` reaching the thread doing the work:

- **text**: the Qwen2.5-VL prompt encoder at Qwen2.5-VL-7B's width (hidden 3584, 28 heads, 4 KV heads, MLP
  18944, vocabulary 152064) with ``--layers`` decoder layers (the encoder runs all but the last two, as it runs 26
  of the real 28), random bf16 weights written as a ComfyUI-style single file (``model.layers.N...``), loaded by the
  pack's ``load_qwen_encoder`` with ComfyUI's ops and the host's ``qwen25_tokenizer``, encoding a ``--tokens``
  prompt with the stage-1 template;
- **vae**: the stage-1 VAE at its official config (widths 128 ... 1024, 64 latent channels) with random weights
  written in Comfy-Org's fp16 layout, loaded by the pack's ``load_vae`` in fp32, decoding a ``--latent`` x
  ``--latent`` latent (16 -> a 512 x 512 image) in fp32.

Both are wrapped by ``management.patch`` and loaded with ``management.load`` as the nodes do. For each: one
uninterrupted warm-up run, one uninterrupted run that stamps every interrupt check (its duration "full"; "block max",
the longest time between two checks counting the lead from the start to the first check: the bound on the latency;
"tail", the time after the last check, which includes the last layer and which Cancel cannot stop), then
``--repeats`` runs in a worker thread with the flag set ``--after`` seconds into the run or, by default, at 0.3
... 0.7 of the time to the last check (half of it for a single repeat). ``--width tiny`` is a smoke test on
narrow models (seconds); ``--device cuda`` runs on the GPU (text in bf16), where the check stamps wait for the
device and the time until the device is idle after the exception is reported beside the latency.

Run inside a ComfyUI tree (``--comfyui``, default ``$COMFYUI_PATH`` or ``.host/ComfyUI``):
    .venv/bin/python bench/bench_interrupt.py [--device cpu|cuda] [--width full|tiny] [--layers 6]
        [--tokens 1000] [--latent 16] [--repeats 3] [--after SECONDS] [--works text,vae] [--threads N]
Prints a table and, last, one JSON line with every number.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench_partial_load import import_comfy, import_pack

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 0.5
WORKS = ("text", "vae")
QWEN_VOCAB = 152064  # Qwen2.5-VL-7B's embedding rows (every id the tokenizer makes exists)
# (hidden, attention heads, KV heads, MLP): Qwen2.5-VL-7B's language model, and a narrow one with the same 128-wide
# heads (the loader reads the head count from the shapes) for smoke tests.
QWEN_WIDTHS = {"full": (3584, 28, 4, 18944), "tiny": (512, 4, 1, 2048)}
VAE_WIDTHS = {"full": (128, 256, 512, 512, 1024, 1024), "tiny": (32, 32, 64, 64, 128, 128)}
WORDS = (
    "A sprawling harbour town at dusk, fishing boats with patched red sails moored along a stone quay, gulls over "
    "the masts, lanterns being lit in the windows of narrow painted houses that climb the hillside, a lighthouse "
    "sweeping its beam across calm water, children chasing a dog past crates of silver fish, an old woman mending "
    "nets on a bench, warm light spilling from a tavern door, wet cobblestones reflecting the sky, "
)


@dataclass
class Work:
    """One piece of node work: what it is, its patcher and the call as the node makes it."""

    name: str
    what: str
    patcher: object
    run: Callable[[], object]


def random_tensor(shape: tuple[int, ...], name: str, dtype) -> object:
    """Seeded by name: norm gains 1, biases N(0, 0.02^2), weights N(0, 1/fan_in), drawn in ``dtype`` directly."""
    import torch

    gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    tensor = torch.empty(shape, dtype=dtype)
    if len(shape) == 1 and name.endswith("weight"):
        return tensor.fill_(1.0)
    std = torch.Size(shape[1:]).numel() ** -0.5 if len(shape) > 1 else 0.02
    return tensor.normal_(0.0, std, generator=gen)


def write_qwen(path: Path, width: str, layers: int) -> Path:
    """A Qwen2.5-VL language model of ``layers`` layers as ComfyUI's single file names it, random bf16 weights."""
    import torch
    from safetensors.torch import save_file
    from transformers import Qwen2_5_VLTextConfig, Qwen2_5_VLTextModel

    hidden, heads, kv_heads, mlp = QWEN_WIDTHS[width]
    config = Qwen2_5_VLTextConfig(
        vocab_size=QWEN_VOCAB, hidden_size=hidden, intermediate_size=mlp, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads,
        rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]},
    )  # fmt: skip
    with torch.device("meta"):
        shapes = {name: tuple(t.shape) for name, t in Qwen2_5_VLTextModel(config).state_dict().items()}
    save_file({f"model.{n}": random_tensor(s, n, torch.bfloat16) for n, s in shapes.items()}, str(path))
    return path


def write_vae(path: Path, width: str) -> tuple[Path, object]:
    """The stage-1 VAE (official config, or narrow widths) in Comfy-Org's fp16 layout, random weights."""
    import torch
    from hy21_pack.hunyuan_core.vae import VAEConfig
    from hy21_pack.hunyuan_core.vae.checkpoint import expected_shapes
    from safetensors.torch import save_file

    cfg = VAEConfig(block_out_channels=VAE_WIDTHS[width])
    state = {n: random_tensor(s, n, torch.float32).half() for n, s in expected_shapes(cfg).items()}
    save_file(state, str(path))
    return path, cfg


def long_prompt(tokenizer, template, tokens: int) -> tuple[str, int]:
    """A prompt of at most ``tokens`` Qwen tokens inside ``template`` (repeated scene text cut at a token boundary)
    and its token count there."""
    ids = tokenizer(WORDS * (tokens // 60 + 2), add_special_tokens=False)["input_ids"]
    cut = tokens
    while True:  # the cut text can tokenize to a token more, inside the template or on its own
        prompt = tokenizer.decode(ids[:cut])
        count = len(tokenizer(template.format(prompt), add_special_tokens=False)["input_ids"]) - template.crop
        if count <= tokens:
            return prompt, count
        cut -= 1


def text_work(folder: Path, width: str, layers: int, tokens: int, dtype) -> Work:
    from hy21_pack.hunyuan_core.text import STAGE1_TEMPLATE
    from hy21_pack.hunyuan_core.text.qwen import load_qwen_encoder
    from hy21_pack.nodes import management

    path = write_qwen(folder / "qwen_2.5_vl_7b.safetensors", width, layers)
    encoder = load_qwen_encoder(
        path, dtype=dtype, tokenizer_dirs=[management.host_tokenizer_dir("qwen25_tokenizer")],
        operations=management.operations(),
    )  # fmt: skip
    path.unlink()
    patcher = management.patch(encoder, "text")
    prompt, count = long_prompt(encoder.tokenizer, STAGE1_TEMPLATE, min(tokens, STAGE1_TEMPLATE.max_tokens))
    hidden, heads, kv_heads, mlp = QWEN_WIDTHS[width]

    def encode():
        management.load(patcher)
        return patcher.model.encode(prompt).states

    what = (
        f"Qwen2.5-VL hidden {hidden}, {heads}/{kv_heads} heads, MLP {mlp}, {layers - 2} of {layers} layers run, "
        f"{str(dtype).removeprefix('torch.')}, prompt {count} tokens ({count + STAGE1_TEMPLATE.crop} with the template)"
    )
    return Work("text", what, patcher, encode)


def vae_work(folder: Path, width: str, latent: int) -> Work:
    import comfy.model_management as mm
    import torch
    from hy21_pack.hunyuan_core.vae import decode_image, load_vae
    from hy21_pack.nodes import management

    path, cfg = write_vae(folder / "hunyuan_image_2.1_vae_fp16.safetensors", width)
    vae = load_vae(path, dtype=torch.float32, operations=management.operations())
    path.unlink()
    patcher = management.patch(vae, "vae")
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(1, cfg.latent_channels, latent, latent, generator=gen)

    def decode():
        management.load(patcher)
        return decode_image(patcher.model, z, precision="fp32", output_device=mm.intermediate_device())

    side = latent * cfg.spatial_compression
    what = f"stage-1 VAE widths {cfg.block_out_channels}, fp32, latent {latent}x{latent} -> {side}x{side} image"
    return Work("vae", what, patcher, decode)


def blocks_of(model) -> list:
    """What ``make_interruptible`` hooks (the pack's checks run before these)."""
    from hy21_pack.nodes.interrupt import interrupt_points

    return interrupt_points(model)


def reference_run(work: Work, cuda: bool) -> dict:
    """One uninterrupted run with every check stamped (on CUDA, after the device finished the work before it)."""
    import torch

    stamps: list[float] = []

    def stamp(*_) -> None:
        if cuda:
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    handles = [block.register_forward_pre_hook(stamp) for block in blocks_of(work.patcher.model)]
    try:
        with torch.no_grad():
            start = time.perf_counter()
            work.run()
            if cuda:
                torch.cuda.synchronize()
            end = time.perf_counter()
    finally:
        for handle in handles:
            handle.remove()
    if not stamps:
        raise SystemExit(f"{work.name}: no interrupt check ran (is the model patched as the nodes patch it?)")
    gaps = [b - a for a, b in zip([start, *stamps[:-1]], stamps, strict=True)]
    return {"full_s": end - start, "checks": len(stamps), "block_max_s": max(gaps), "lead_s": gaps[0],
            "tail_s": end - stamps[-1]}  # fmt: skip


def interrupted_run(work: Work, after: float, cuda: bool) -> dict:
    """Run ``work`` in a thread, set ComfyUI's interrupt flag ``after`` seconds into it, time the stop."""
    import comfy.model_management as mm
    import torch

    mm.interrupt_current_processing(False)
    started = threading.Event()
    box: dict = {}

    def worker() -> None:
        with torch.no_grad():
            box["start"] = time.perf_counter()
            started.set()
            try:
                work.run()
                box["outcome"] = "finished"
            except mm.InterruptProcessingException:
                box["outcome"] = "interrupted"
            box["end"] = time.perf_counter()
            if cuda:
                torch.cuda.synchronize()
            box["idle"] = time.perf_counter()

    thread = threading.Thread(target=worker, name=f"{work.name}-work")
    thread.start()
    started.wait()
    time.sleep(max(0.0, box["start"] + after - time.perf_counter()))
    flagged = time.perf_counter()
    mm.interrupt_current_processing(True)
    thread.join()
    left_set = mm.processing_interrupted()  # the exception clears the flag; a run that finished leaves it set
    mm.interrupt_current_processing(False)
    stopped = box["outcome"] == "interrupted"
    return {
        "after_s": flagged - box["start"], "outcome": box["outcome"], "flag_left_set": left_set,
        "latency_s": box["end"] - flagged if stopped else None,
        "idle_latency_s": box["idle"] - flagged if stopped else None,
        "run_s": box["end"] - box["start"],
    }  # fmt: skip


def measure(work: Work, repeats: int, after: float | None, cuda: bool) -> dict:
    import torch

    with torch.no_grad():  # warm-up: the first run at a size is slower (kernels chosen, memory first touched)
        start = time.perf_counter()
        work.run()
        if cuda:
            torch.cuda.synchronize()
        warm_up = time.perf_counter() - start
    ref = reference_run(work, cuda)
    if after is None:  # spread over the part of the run that a check follows (a cancel in the tail cannot stop it)
        fractions = [0.5] if repeats == 1 else [0.3 + 0.4 * i / (repeats - 1) for i in range(repeats)]
        delays = [f * (ref["full_s"] - ref["tail_s"]) for f in fractions]
    else:
        delays = [after] * repeats
    runs = [interrupted_run(work, delay, cuda) for delay in delays]
    latencies = [r["latency_s"] for r in runs if r["latency_s"] is not None]
    idle = [r["idle_latency_s"] for r in runs if r["idle_latency_s"] is not None]
    median = statistics.median(latencies) if latencies else None
    return {
        "what": work.what, "warm_up_s": warm_up, **ref, "repeats": repeats,
        "interrupted": sum(r["outcome"] == "interrupted" for r in runs),
        "latency_median_s": median, "latency_max_s": max(latencies) if latencies else None,
        "idle_latency_max_s": max(idle) if idle and cuda else None,
        "ratio_latency_full": median / ref["full_s"] if median is not None else None,
        "meets_target": bool(latencies) and max(latencies) <= TARGET_S, "runs": runs,
    }  # fmt: skip


def release(work: Work) -> None:
    """Hand the model back (ComfyUI's model management holds the patchers it loaded) before the next one."""
    import comfy.model_management as mm

    mm.unload_all_models()
    mm.soft_empty_cache()
    work.patcher = None
    gc.collect()


def run(device_name: str, width: str, layers: int, tokens: int, latent: int, repeats: int, after: float | None,
        works: list[str], dtype_name: str) -> dict:  # fmt: skip
    import torch

    cuda = torch.device(device_name).type == "cuda"
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    results = {}
    with tempfile.TemporaryDirectory(prefix="hy21_interrupt_") as tmp:
        for name in works:
            if name == "text":
                work = text_work(Path(tmp), width, layers, tokens, dtype)
            else:
                work = vae_work(Path(tmp), width, latent)
            results[name] = measure(work, repeats, after, cuda)
            release(work)
            del work
    return results


def fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", default=os.environ.get("COMFYUI_PATH") or str(ROOT / ".host" / "ComfyUI"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--width", choices=("full", "tiny"), default="full")
    parser.add_argument("--layers", type=int, default=6, help="text encoder layers in the file (all but 2 run)")
    parser.add_argument("--tokens", type=int, default=1000, help="prompt tokens (the model reads at most 1000)")
    parser.add_argument("--latent", type=int, default=16, help="latent side for the decode (16 is 512x512)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--after", type=float, default=None, help="seconds into the work to cancel (default: "
                        "0.3 ... 0.7 of the uninterrupted duration)")  # fmt: skip
    parser.add_argument("--works", default=",".join(WORKS))
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default=None,
                        help="text encoder compute dtype (default fp32 on the CPU, bf16 elsewhere)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    a = parser.parse_args()
    works = a.works.split(",")
    if a.layers < 3 or a.repeats < 1 or a.latent < 2 or not set(works) <= set(WORKS):
        parser.error("need --layers >= 3, --repeats >= 1, --latent >= 2 and --works among text,vae")
    import_comfy(Path(a.comfyui), a.device)
    import_pack()
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    dtype = a.dtype or ("fp32" if a.device == "cpu" else "bf16")
    results = run(a.device, a.width, a.layers, a.tokens, a.latent, a.repeats, a.after, works, dtype)
    print(f"Cancel latency inside the hosted ComfyUI on {a.device} ({torch.get_num_threads()} threads), "
          f"target {TARGET_S} s")  # fmt: skip
    for name, r in results.items():
        print(f"  {name}: {r['what']}")
    print(f"{'work':5} {'full s':>8} {'checks':>6} {'block max s':>11} {'tail s':>7} {'stopped':>7} "
          f"{'latency med s':>13} {'max s':>7} {'latency/full':>12}  target")  # fmt: skip
    for name, r in results.items():
        verdict = "met" if r["meets_target"] else "missed"
        print(f"{name:5} {r['full_s']:8.3f} {r['checks']:6d} {r['block_max_s']:11.3f} {r['tail_s']:7.3f} "
              f"{r['interrupted']:3d}/{r['repeats']:<3d} {fmt(r['latency_median_s']):>13} "
              f"{fmt(r['latency_max_s']):>7} {fmt(r['ratio_latency_full']):>12}  {verdict}")  # fmt: skip
    for name, r in results.items():
        for i, one in enumerate(r["runs"]):
            idle = f", device idle {fmt(one['idle_latency_s'])} s" if a.device != "cpu" else ""
            print(f"  {name} run {i + 1}: cancel at {one['after_s']:.3f} s -> {one['outcome']}, "
                  f"latency {fmt(one['latency_s'])} s{idle}")  # fmt: skip
    print(json.dumps({"device": a.device, "width": a.width, "threads": torch.get_num_threads(),
                      "target_s": TARGET_S, **results}))  # fmt: skip


if __name__ == "__main__":
    main()
