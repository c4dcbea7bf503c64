"""Benchmark: decoding a 64x64 latent (a 2048x2048 image) with the full-size stage-1 VAE on the CPU.

Ours and diffusers' ``AutoencoderKLHunyuanImage`` are given the same random weights (fan-in scaled, seeded per
parameter name, encoder included so the resident weights are the real 1.62 GB) and the same latent. Each decode
runs in a fresh subprocess (this script with ``--worker``) so its peak resident memory (ru_maxrss) is its own.
Also run: our opt-in tiled decode, with its peak memory and its error against the full decode. Prints times,
the time ratio, peak memory and the output differences.

Run: .venv/bin/python bench/bench_vae.py [--latent 64] [--repeats 1] [--tile 40] [--overlap 8] [--threads N]
A full 2048x2048 decode is ~34 TFLOP: minutes per worker on a small CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import GIB, materialise, peak_rss, rss_now, run_worker, timed
from hunyuan_core.vae import STAGE1_VAE, HunyuanImageVAE, Tiling
from hunyuan_core.vae.checkpoint import diffusers_name
from hunyuan_core.vae.images import tiled_decode
from hunyuan_core.vae_common import to_image


def build(kind: str) -> torch.nn.Module:
    if kind == "diffusers":
        from diffusers import AutoencoderKLHunyuanImage

        c = STAGE1_VAE
        with torch.device("meta"):
            model = AutoencoderKLHunyuanImage(
                in_channels=c.in_channels, out_channels=c.out_channels, latent_channels=c.latent_channels,
                block_out_channels=c.block_out_channels, layers_per_block=c.layers_per_block,
                spatial_compression_ratio=c.spatial_compression, sample_size=384, scaling_factor=c.scaling_factor,
            )  # fmt: skip
        ours_of = {diffusers_name(n, c): n for n in HunyuanImageVAE(c, device="meta").state_dict()}
    else:
        with torch.device("meta"):
            model = HunyuanImageVAE(STAGE1_VAE)
        ours_of = {n: n for n in model.state_dict()}
    return materialise(model, ours_of)


def worker(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    model = build("diffusers" if args.worker == "diffusers" else "ours")
    z = torch.randn(1, STAGE1_VAE.latent_channels, args.latent, args.latent, generator=torch.Generator().manual_seed(0))
    baseline = rss_now()
    if args.worker == "diffusers":
        run = lambda: model.decode(z).sample  # noqa: E731
    elif args.worker == "tiled":
        run = lambda: tiled_decode(model, z, Tiling(args.tile, args.overlap))  # noqa: E731
    else:
        run = lambda: model.decode(z)  # noqa: E731
    out, times = timed(run, args.repeats)
    torch.save(out.float().contiguous(), args.out)
    peak = peak_rss()
    print(json.dumps({"time": statistics.median(times), "times": times, "peak": peak, "baseline": baseline}))


def spawn(kind: str, args: argparse.Namespace, out: Path) -> dict:
    print(f"[{kind}] decoding a {args.latent}x{args.latent} latent ...", flush=True)
    stats = run_worker(__file__, kind, [
        "--out", str(out), "--latent", str(args.latent), "--repeats", str(args.repeats), "--tile", str(args.tile),
        "--overlap", str(args.overlap), "--threads", str(args.threads),
    ])  # fmt: skip
    print(f"[{kind}] {stats['time']:.1f} s, peak RSS {stats['peak'] / GIB:.2f} GiB", flush=True)
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latent", type=int, default=64, help="latent side (64 = a 2048x2048 image)")
    parser.add_argument("--repeats", type=int, default=1, help="decodes per worker (median time reported)")
    parser.add_argument("--tile", type=int, default=40, help="tiled decode: tile side in latent cells")
    parser.add_argument("--overlap", type=int, default=8, help="tiled decode: minimum overlap in latent cells")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per worker (0: torch's default)")
    parser.add_argument("--no-tiled", action="store_true", help="skip the tiled decode")
    parser.add_argument("--worker", choices=["ours", "diffusers", "tiled"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    side = args.latent * STAGE1_VAE.spatial_compression
    print(f"stage-1 VAE decode, {args.latent}x{args.latent} latent -> {side}x{side} image, fp32, CPU, "
          f"{args.threads or torch.get_num_threads()} threads, {args.repeats} repeat(s)")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        kinds = ["ours", "diffusers"] + ([] if args.no_tiled else ["tiled"])
        stats = {k: spawn(k, args, Path(tmp) / f"{k}.pt") for k in kinds}
        outputs = {k: torch.load(Path(tmp) / f"{k}.pt", weights_only=True) for k in kinds}

    ours, ref = outputs["ours"], outputs["diffusers"]
    print("\n| decode | time (s) | peak RSS (GiB) | above weights (GiB) |")
    print("|---|---|---|---|")
    for k in kinds:
        s = stats[k]
        print(f"| {k} | {s['time']:.1f} | {s['peak'] / GIB:.2f} | {(s['peak'] - s['baseline']) / GIB:.2f} |")
    print(f"\ntime ratio ours / diffusers: {stats['ours']['time'] / stats['diffusers']['time']:.3f}")
    print(f"peak RSS ratio ours / diffusers: {stats['ours']['peak'] / stats['diffusers']['peak']:.3f}")
    raw = (ours - ref).abs().max().item()
    print(f"ours vs diffusers: max abs diff {raw:.3e} (relative to max |ref| {raw / ref.abs().max().item():.3e})")
    if "tiled" in outputs:
        tiled = outputs["tiled"]
        diff = (tiled - ours).abs()
        image = (to_image(tiled) - to_image(ours)).abs()  # the 0..1 IMAGEs a node would output
        print(f"tiled ({args.tile}/{args.overlap} latent cells) vs full: raw max abs {diff.max().item():.3e} "
              f"(relative {diff.max().item() / ours.abs().max().item():.3e}), on the 0..1 image scale max "
              f"{image.max().item():.4f}, mean {image.mean().item():.5f}")  # fmt: skip


if __name__ == "__main__":
    main()
