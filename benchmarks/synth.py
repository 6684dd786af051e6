"""Synthesis speed on whole 1600x256 Severstal-size strips.

    .venv/bin/python benchmarks/synth.py [--runs small:bf16 small:bf16:256 lama:fp32 ...] [--n 16]
        [--batch 4] [--device cuda]

A run is PRESET:PRECISION[:TILE]; with TILE the generator paints a TILE x TILE window around
each defect instead of the whole strip (`defectgen synth --tile`). PRESET `null` replaces the
generator by the identity: what is left is everything synthesis does besides painting (masks,
backgrounds, encoding, writing), reported as wall and CPU milliseconds per strip.

Each run is `defectgen.synth.synthesize` in its own process (peak RSS is its own) on demo
strips (256x1600) with real-mask-bank masks, batch 4, and an untrained generator of the preset
(weights do not change the cost). It also times the generator forward passes alone, to say how
much of synthesis is the generator. Prints one table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

DEFAULT_RUNS = ["small:fp32", "small:bf16", "small:bf16:256", "lama:fp32", "lama:bf16", "lama:bf16:256"]


def child(preset: str, precision: str, tile: str, n: int, batch: int, work: Path, device: str) -> dict:
    import torch

    import defectgen.painter as painter
    import defectgen.synth as synth_module
    from defectgen.data import open_dataset
    from defectgen.data.demo import generate_demo
    from defectgen.data.split import make_split
    from defectgen.gan.checkpoint import save_checkpoint
    from defectgen.gan.config import TrainConfig
    from defectgen.models import PRESETS
    from defectgen.synth_config import SynthConfig

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    data = generate_demo(work / "demo", n_images=24, seed=0, progress=False)
    dataset = open_dataset(str(data))
    split = make_split(dataset, seed=0)
    null = preset == "null"
    preset = "tiny" if null else preset
    G = PRESETS[preset].generator.build(1, 4)
    checkpoint = save_checkpoint(
        {
            "step": 0,
            "config": TrainConfig(preset=preset).resolved().to_dict(),
            "classes": dataset.classes.to_json(),
            "image_channels": 1,
            "G": G.state_dict(),
            "ema": G.state_dict(),
        },
        work / f"{preset}.pt",
    )
    forward_seconds = [0.0]
    original = (lambda G, images, *rest: images) if null else painter.run_generator

    def timed_run(*args, **kwargs):
        start = time.perf_counter()
        result = original(*args, **kwargs)
        if device.startswith("cuda"):
            torch.cuda.synchronize()  # kernels run asynchronously: wait before reading the clock
        forward_seconds[0] += time.perf_counter() - start
        return result

    painter.run_generator = timed_run
    # warm-up (first-call allocations), then the measured run
    synth_module.synthesize(
        checkpoint,
        dataset,
        split,
        work / f"warm_{preset}_{precision}_{tile}",
        SynthConfig(n=batch, batch_size=batch, precision=precision, device=device, background_source="free"),
        progress=False,
    )
    forward_seconds[0] = 0.0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = usage.ru_utime + usage.ru_stime
    start = time.perf_counter()
    synth_module.synthesize(
        checkpoint,
        dataset,
        split,
        work / f"out_{preset}_{precision}_{tile}",
        SynthConfig(
            n=n,
            batch_size=batch,
            precision=precision,
            tile=int(tile) or None,
            device=device,
            background_source="free",
        ),
        progress=False,
    )
    seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "wall_ms_per_strip": 1000 * seconds / n,
        "cpu_ms_per_strip": 1000 * (usage.ru_utime + usage.ru_stime - cpu_before) / n,
        "images_per_second": n / seconds,
        "seconds": seconds,
        "generator_share": forward_seconds[0] / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=DEFAULT_RUNS, help="PRESET:PRECISION")
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--json", type=Path, help="merge each run's figures into this JSON file (benchmarks/throughput.json)"
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.n, args.batch, args.work, args.device)))
        return
    threads = os.environ.get("BENCH_THREADS", "2")
    where = f"{threads} threads ({platform.machine()})" if args.device == "cpu" else args.device
    table = Table(title=f"synthesis, 1600x256 strips, batch {args.batch}, {where}")
    columns = (
        "preset",
        "precision",
        "painted",
        "images/s",
        "seconds",
        "in G forward",
        "CPU ms/strip",
        "peak RSS",
    )
    for column in columns:
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory() as work:
        for run in args.runs:
            preset, precision, tile = (run.split(":") + ["0"])[:3]
            painted = f"{tile} px windows" if int(tile) else "whole strip"
            command = [
                sys.executable,
                __file__,
                "--child",
                preset,
                precision,
                tile,
                "--n",
                str(args.n),
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
                table.add_row(preset, precision, painted, "failed", result.stderr.strip()[-60:], "", "", "")
                continue
            row = json.loads(result.stdout.strip().splitlines()[-1])
            if args.json:
                _record(args.json, run, row, painted, where, args)
            table.add_row(
                preset,
                precision,
                painted,
                f"{row['images_per_second']:.2f}",
                f"{row['seconds']:.1f}",
                f"{row['generator_share']:.0%}",
                f"{row['cpu_ms_per_strip']:.1f}",
                f"{row['peak_rss_mb']:.0f} MB",
            )
    Console().print(table)


def _record(path: Path, run: str, row: dict, painted: str, where: str, args) -> None:
    """Merge one run's figures into `path` under synthesis.RUN, with its command and machine."""
    data = json.loads(path.read_text()) if path.exists() else {}
    data.setdefault("synthesis", {})[run] = {
        "painted": painted,
        "strips_per_second": round(row["images_per_second"], 3),
        "cpu_ms_per_strip": round(row["cpu_ms_per_strip"], 1),
        "generator_share": round(row["generator_share"], 3),
        "peak_rss_mb": round(row["peak_rss_mb"]),
        "strip": "1600x256 demo strip, real-mask-bank masks, folder format, batch " + str(args.batch),
        "command": f"BENCH_THREADS={os.environ.get('BENCH_THREADS', '2')} python benchmarks/synth.py "
        + " ".join(sys.argv[1:]),
        "machine": f"dev-cpu, {where}",
        "date": time.strftime("%Y-%m-%d"),
    }
    path.write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    main()
