"""Segmenter training speed per crop size: what sizes `evaluate --size` for a time budget.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/segmenter_step.py [--sizes 96 128] [--batch 8]
        [--steps 12] [--classes 5] [--precision bf16]

Runs `defectgen.evaluate.segmenter.train_segmenter` (smp U-Net resnet18, BCE + Dice, AdamW)
on random crops held in memory, so the figure is the optimisation step alone (no crop
sampling); seconds per step = a timed run's time / its steps, after a 2-step warm-up run. Threads
come from OMP_NUM_THREADS. Prints one table.
"""

from __future__ import annotations

import argparse
import os

import torch
from rich.console import Console
from rich.table import Table

from defectgen.evaluate.segmenter import build_segmenter, train_segmenter


def seconds_per_step(size: int, batch: int, steps: int, classes: int, use_bf16: bool) -> float:
    rng = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 1, size, size, generator=rng) * 2 - 1
    masks = (torch.rand(batch, classes, size, size, generator=rng) > 0.9).float()
    model = build_segmenter("resnet18", 1, classes)
    train_segmenter(model, lambda step: (images, masks), 2, use_bf16=use_bf16, progress=False)  # warm-up
    run = train_segmenter(model, lambda step: (images, masks), steps, use_bf16=use_bf16, progress=False)
    return run["seconds"] / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 128])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    args = parser.parse_args()
    threads = torch.get_num_threads()
    table = Table(title=f"segmenter step, batch {args.batch}, {args.precision}, {threads} thread(s)")
    for column in ("crop", "s / step", "crops/s"):
        table.add_column(column, justify="right")
    for size in args.sizes:
        seconds = seconds_per_step(size, args.batch, args.steps, args.classes, args.precision == "bf16")
        table.add_row(f"{size} px", f"{seconds:.3f}", f"{args.batch / seconds:.1f}")
    Console().print(table)
    if os.environ.get("OMP_NUM_THREADS") is None:
        Console().print("note: OMP_NUM_THREADS not set; torch chose the thread count")


if __name__ == "__main__":
    main()
