"""Benchmark: the full-size refiner VAE (16x, causal 3-D) encoding and decoding one image on the CPU.

Ours and diffusers' ``AutoencoderKLHunyuanImageRefiner`` get the same random weights (fan-in scaled, seeded per
parameter name, RMS gains 1: the real 1.26 B parameters, 5.04 GB in fp32) and the same inputs. The refiner only
ever runs single frames: ours takes a summed-kernel 2-D path for its causal convolutions, diffusers pads each
one to three frames. Each model runs in a fresh subprocess (this script with ``--worker``) so its peak resident
memory (ru_maxrss) is its own. Prints times, ratios, peak memory and the output differences.

Run: .venv/bin/python bench/bench_refiner_vae.py [--side 512] [--repeats 1] [--threads N]
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
from hunyuan_core.refiner_vae import REFINER_VAE, RefinerVAE
from hunyuan_core.refiner_vae.checkpoint import diffusers_name


def build(kind: str) -> torch.nn.Module:
    if kind == "diffusers":
        from diffusers import AutoencoderKLHunyuanImageRefiner

        with torch.device("meta"):
            model = AutoencoderKLHunyuanImageRefiner()  # its defaults are the released refiner VAE
        ours_of = {diffusers_name(n): n for n in RefinerVAE(REFINER_VAE, device="meta").state_dict()}
    else:
        with torch.device("meta"):
            model = RefinerVAE(REFINER_VAE)
        ours_of = {n: n for n in model.state_dict()}
    return materialise(model, ours_of)


def inputs(side: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 1, side, side, generator=gen) * 2 - 1
    latent_side = side // REFINER_VAE.spatial_compression
    latent = torch.randn(1, REFINER_VAE.latent_channels, 1, latent_side, latent_side, generator=gen)
    return image, latent


def worker(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    model = build(args.worker)
    image, latent = inputs(args.side)
    baseline = rss_now()
    if args.worker == "diffusers":
        encode = lambda: model.encode(image).latent_dist.mean  # noqa: E731
        decode = lambda: model.decode(latent).sample  # noqa: E731
    else:
        encode = lambda: model.encode(image).mean  # noqa: E731
        decode = lambda: model.decode(latent)  # noqa: E731
    mean, encode_times = timed(encode, args.repeats)
    pixels, decode_times = timed(decode, args.repeats)
    torch.save({"mean": mean.float().contiguous(), "pixels": pixels.float().contiguous()}, args.out)
    peak = peak_rss()
    print(json.dumps({
        "encode": statistics.median(encode_times), "decode": statistics.median(decode_times),
        "encode_times": encode_times, "decode_times": decode_times, "peak": peak, "baseline": baseline,
    }))  # fmt: skip


def spawn(kind: str, args: argparse.Namespace, out: Path) -> dict:
    print(f"[{kind}] encoding and decoding a {args.side}x{args.side} image ...", flush=True)
    stats = run_worker(__file__, kind, [
        "--out", str(out), "--side", str(args.side), "--repeats", str(args.repeats), "--threads", str(args.threads),
    ])  # fmt: skip
    print(f"[{kind}] encode {stats['encode']:.1f} s, decode {stats['decode']:.1f} s, "
          f"peak RSS {stats['peak'] / GIB:.2f} GiB", flush=True)  # fmt: skip
    return stats


def relative(got: torch.Tensor, ref: torch.Tensor) -> float:
    return ((got - ref).abs().max() / ref.abs().max()).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=512, help="image side in pixels, a multiple of 16")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each op per worker (median time reported)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per worker (0: torch's default)")
    parser.add_argument("--worker", choices=["ours", "diffusers"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side % REFINER_VAE.spatial_compression:
        parser.error(f"--side {args.side} is not a multiple of {REFINER_VAE.spatial_compression}")
    if args.worker:
        worker(args)
        return

    latent_side = args.side // REFINER_VAE.spatial_compression
    print(f"refiner VAE, {args.side}x{args.side} image <-> {latent_side}x{latent_side} latent, fp32, CPU, "
          f"{args.threads or torch.get_num_threads()} threads, {args.repeats} repeat(s)")  # fmt: skip
    kinds = ["ours", "diffusers"]
    with tempfile.TemporaryDirectory() as tmp:
        stats = {k: spawn(k, args, Path(tmp) / f"{k}.pt") for k in kinds}
        outputs = {k: torch.load(Path(tmp) / f"{k}.pt", weights_only=True) for k in kinds}

    print("\n| model | encode (s) | decode (s) | peak RSS (GiB) | above weights (GiB) |")
    print("|---|---|---|---|---|")
    for k in kinds:
        s = stats[k]
        print(f"| {k} | {s['encode']:.1f} | {s['decode']:.1f} | {s['peak'] / GIB:.2f} | "
              f"{(s['peak'] - s['baseline']) / GIB:.2f} |")  # fmt: skip
    ours, ref = stats["ours"], stats["diffusers"]
    print(f"\ntime ratio ours / diffusers: encode {ours['encode'] / ref['encode']:.3f}, "
          f"decode {ours['decode'] / ref['decode']:.3f}")  # fmt: skip
    print(f"peak RSS ratio ours / diffusers: {ours['peak'] / ref['peak']:.3f}; above weights "
          f"{(ours['peak'] - ours['baseline']) / max(ref['peak'] - ref['baseline'], 1):.3f}")  # fmt: skip
    for key in ("mean", "pixels"):
        print(f"ours vs diffusers {key}: max relative difference "
              f"{relative(outputs['ours'][key], outputs['diffusers'][key]):.3e}")  # fmt: skip


if __name__ == "__main__":
    main()
