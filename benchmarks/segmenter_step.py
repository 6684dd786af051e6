"""Segmenter training speed: what a step of each U-Net size costs, and what the crops cost.

    .venv/bin/python benchmarks/segmenter_step.py [--models d4:64,32,16,8 d5:256,128,64,32,16]
        [--sizes 64 96] [--precisions fp32 bf16] [--batch 12] [--steps 20] [--sampler]
        [--json benchmarks/segmenter_step.json]

Runs `defectgen.evaluate.segmenter.train_segmenter` (smp U-Net with a resnet18 encoder of
DEPTH stages and the given decoder widths, BCE + Dice, AdamW) on random crops held in memory,
so the figure is the optimisation step alone; seconds per step = a timed run's time / its
steps, after a 3-step warm-up. `--sampler` also times the mission's real-arm batches
(`evaluate.context.arm_sampler` on magnetic tile, 8 crops at each size): crop sampling alone.
Threads: torch's default (2 on this machine). Prints one table; `--json` keeps the figures.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from defectgen.evaluate.segmenter import train_segmenter
from defectgen.models.unet import build_segmenter

REPO = Path(__file__).resolve().parents[1]


def seconds_per_step(model_spec: str, size: int, batch: int, steps: int, classes: int, bf16: bool) -> float:
    depth, channels = model_spec.removeprefix("d").split(":")
    rng = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 1, size, size, generator=rng) * 2 - 1
    masks = (torch.rand(batch, classes, size, size, generator=rng) > 0.9).float()
    valid = torch.ones(batch, 1, size, size)
    model = build_segmenter(
        "resnet18",
        1,
        classes,
        encoder_depth=int(depth),
        decoder_channels=tuple(int(c) for c in channels.split(",")),
    )
    train_segmenter(model, lambda step: (images, masks, valid), 3, use_bf16=bf16, progress=False)
    run = train_segmenter(model, lambda step: (images, masks, valid), steps, use_bf16=bf16, progress=False)
    return run["seconds"] / steps


def sampler_seconds(size: int, steps: int) -> float:
    from defectgen.data import open_dataset
    from defectgen.data.split import make_split
    from defectgen.evaluate.arms import Arm
    from defectgen.evaluate.config import EvalConfig
    from defectgen.evaluate.context import EvalContext, arm_sampler

    dataset = open_dataset(str(REPO.parent / "shared" / "data" / "magnetic_tile"))
    split = make_split(dataset, test_fraction=0.5, seed=0, label_fraction=0.25)
    ctx = EvalContext.create(dataset, split, EvalConfig(crop_size=size))
    sampler = arm_sampler(ctx, Arm("real", "real"), 0)
    for step in range(steps):  # warm the pool's cache as a run does
        sampler.batch(step)
    start = time.perf_counter()
    for step in range(steps, 2 * steps):
        sampler.batch(step)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["d4:64,32,16,8", "d5:256,128,64,32,16"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96])
    parser.add_argument("--precisions", nargs="+", choices=["bf16", "fp32"], default=["fp32", "bf16"])
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--sampler", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    threads = torch.get_num_threads()
    table = Table(title=f"segmenter step, batch {args.batch}, {threads} thread(s)")
    for column in ("model", "crop", "precision", "s / step", "crops/s"):
        table.add_column(column, justify="right")
    rows = []
    for spec in args.models:
        for size in args.sizes:
            for precision in args.precisions:
                seconds = seconds_per_step(
                    spec, size, args.batch, args.steps, args.classes, precision == "bf16"
                )
                rows.append(
                    {"model": spec, "crop": size, "precision": precision, "seconds_per_step": seconds}
                )
                table.add_row(spec, f"{size} px", precision, f"{seconds:.3f}", f"{args.batch / seconds:.1f}")
    Console().print(table)
    sampling = {}
    if args.sampler:
        for size in args.sizes:
            sampling[size] = sampler_seconds(size, args.steps)
            Console().print(f"real-arm crop sampling, 8 crops of {size} px: {sampling[size]:.3f} s / batch")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "command": "python benchmarks/segmenter_step.py " + " ".join(sys.argv[1:]),
                    "machine": f"dev-cpu, {os.cpu_count()} cores, {threads} torch threads",
                    "date": datetime.date.today().isoformat(),
                    "batch": args.batch,
                    "steps": rows,
                    "sampler_seconds_per_batch": sampling,
                },
                indent=1,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
