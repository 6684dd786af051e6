"""Training speed: seconds per full G+D iteration of the real training loop.

    .venv/bin/python benchmarks/train_step.py [--runs small:128:bf16 small:128:fp32 ...] [--steps 8]
        [--batch 4] [--device cuda]

A run is PRESET:RESOLUTION:PRECISION[:cl] (PRESET may be a StyleGAN preset, `stylegan-small`);
`cl` trains with `channels_last=True` (memory format of models and batches) and converts the
models of the G+D column the same way.

Each run is `defectgen.gan.train.train` in its own process (so peak RSS is its own) on the
embedded demo data (256x1600 strips, crops of the given size), batch 4, one process, with
R1 every 16 steps as in training. The first 2 iterations are warm-up and not counted; the
figure is the median of the rest (R1 steps included in their share). Prints one table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

DEFAULT_RUNS = ["tiny:64:fp32", "small:128:fp32", "small:128:bf16", "lama:256:bf16"]


def child(
    preset: str,
    resolution: int,
    precision: str,
    steps: int,
    batch: int,
    work: Path,
    device: str,
    channels_last: bool = False,
) -> dict:
    import torch

    from defectgen.data import open_dataset
    from defectgen.data.demo import generate_demo
    from defectgen.data.split import make_split
    from defectgen.gan.config import TrainConfig
    from defectgen.gan.train import train
    from defectgen.models import count_parameters

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    data = generate_demo(work / "demo", n_images=16, seed=0, progress=False)
    dataset = open_dataset(str(data))
    split = make_split(dataset, seed=0)
    config = TrainConfig(
        preset=preset,
        model={"resolution": resolution},
        precision=precision,
        channels_last=channels_last,
        steps=steps,
        batch_size=batch,
        log_every=1,
        sample_every=10**9,
        checkpoint_every=10**9,
    )
    run = work / f"run_{preset}_{resolution}_{precision}_{channels_last}"
    train(dataset, split, config, run, progress=False, device=device)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    seconds = statistics.median(r["seconds_per_step"] for r in records[2:])
    return {
        "seconds": seconds,
        "model_seconds": model_only(config.model_spec, precision, batch, device, channels_last),
        "images_per_second": batch / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else 0.0,
        "g_params_m": count_parameters(config.model_spec.build_generator(1, 4)) / 1e6,
    }


def model_only(
    spec,
    precision: str,
    batch: int,
    device: str,
    channels_last: bool = False,
    repeats: int = 8,
    warmup: int = 3,
) -> float:
    """One G and one D forward + backward on `batch` images, nothing else (median seconds):
    the "plain G+D iteration" that other FFC implementations quote. A decoder draws its batch
    from noise (classes 0..3 in turn) and D reads its mask as the label map."""
    import time

    import torch

    from defectgen.models import composite
    from defectgen.models.stylegan import binarised, mask_probability

    device = torch.device(device)
    resolution = spec.resolution
    G = spec.build_generator(1, 4).to(device)
    D = spec.discriminator.build(1, 4).to(device)
    rng = torch.Generator(device=device).manual_seed(0)
    shape = (batch, 1, resolution, resolution)
    image = torch.rand(shape, generator=rng, device=device) * 2 - 1
    hole = (torch.rand(shape, generator=rng, device=device) > 0.7).float()
    labels = torch.cat([hole, torch.zeros(batch, 3, resolution, resolution, device=device)], dim=1)
    if channels_last:
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
        image, hole, labels = (t.contiguous(memory_format=torch.channels_last) for t in (image, hole, labels))
    times = []
    for _ in range(warmup + repeats):
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            if spec.is_stylegan:
                classes = torch.arange(batch, device=device) % 4
                output = G(G.draw_style(batch, rng, device=device), classes, generator=rng)
                drawn = binarised(mask_probability(output, 1))
                logits, _ = D(output[:, :1], drawn)
            else:
                fake = composite(G(image, hole, labels, generator=rng), image, hole)
                logits, _ = D(fake, labels)
        logits.float().mean().backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times[warmup:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=DEFAULT_RUNS, help="PRESET:RESOLUTION:PRECISION[:cl]")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        preset, resolution, precision, layout = args.child
        row = child(
            preset,
            int(resolution),
            precision,
            args.steps,
            args.batch,
            args.work,
            args.device,
            layout == "cl",
        )
        print(json.dumps(row))
        return
    where = f"{os.cpu_count()} CPUs ({platform.machine()})" if args.device == "cpu" else args.device
    table = Table(title=f"train step, batch {args.batch}, {where}")
    for column in (
        "preset",
        "crop",
        "precision",
        "layout",
        "G params",
        "s / iteration",
        "images/s",
        "G+D fwd/bwd only",
        "peak RSS",
        "peak GPU memory",
    ):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory() as work:
        for run in args.runs:
            preset, resolution, precision, *flags = run.split(":")
            layout = "cl" if "cl" in flags else "nchw"
            command = [
                sys.executable,
                __file__,
                "--child",
                preset,
                resolution,
                precision,
                layout,
                "--steps",
                str(args.steps),
                "--batch",
                str(args.batch),
                "--work",
                work,
                "--device",
                args.device,
            ]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode:
                print(result.stderr, file=sys.stderr)
                table.add_row(
                    preset,
                    resolution,
                    precision,
                    layout,
                    "failed",
                    result.stderr.strip()[-60:],
                    "",
                    "",
                    "",
                    "",
                )
                continue
            row = json.loads(result.stdout.strip().splitlines()[-1])
            table.add_row(
                preset,
                f"{resolution} px",
                precision,
                "channels_last" if layout == "cl" else "NCHW",
                f"{row['g_params_m']:.1f} M",
                f"{row['seconds']:.3f}",
                f"{row['images_per_second']:.1f}",
                f"{row['model_seconds']:.3f}",
                f"{row['peak_rss_mb']:.0f} MB",
                f"{row['peak_gpu_mb']:.0f} MB" if row["peak_gpu_mb"] else "-",
            )
    Console().print(table)


if __name__ == "__main__":
    main()
