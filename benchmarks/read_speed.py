"""Reading speed: decode every real Severstal RLE row, index and read the magnetic tile set.

    .venv/bin/python benchmarks/read_speed.py [--shared ../shared/data]

Prints one table (rows/s, items/s). Not a test: figures go to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import csv
import platform
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from defectgen.data import open_dataset, rle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data"
    )
    args = parser.parse_args()
    severstal = args.shared / "severstal_sample" / "train.csv"
    tiles = args.shared / "magnetic_tile"
    if not severstal.exists() or not tiles.exists():
        raise SystemExit(f"real data not found under {args.shared}; pass --shared")
    table = Table(title=f"read speed on {platform.processor() or platform.machine()}")
    for column in ("what", "count", "seconds", "per second"):
        table.add_column(column, justify="right")

    with open(severstal, newline="") as handle:
        texts = [row["EncodedPixels"] for row in csv.DictReader(handle)]
    start = time.perf_counter()
    for text in texts:
        rle.decode(text)
    seconds = time.perf_counter() - start
    table.add_row(
        "Severstal RLE rows decoded (256x1600)",
        f"{len(texts):,}",
        f"{seconds:.2f}",
        f"{len(texts) / seconds:,.0f} rows/s",
    )

    start = time.perf_counter()
    dataset = open_dataset(f"severstal:{severstal}")
    seconds = time.perf_counter() - start
    table.add_row(
        "Severstal CSV indexed (validated, not decoded)",
        f"{len(dataset):,} images",
        f"{seconds:.2f}",
        f"{len(texts) / seconds:,.0f} rows/s",
    )

    start = time.perf_counter()
    dataset = open_dataset(str(tiles))
    seconds = time.perf_counter() - start
    table.add_row(
        "magnetic tile indexed",
        f"{len(dataset):,} items",
        f"{seconds:.2f}",
        f"{len(dataset) / seconds:,.0f} items/s",
    )

    start = time.perf_counter()
    for index in range(len(dataset)):
        dataset[index]
    seconds = time.perf_counter() - start
    table.add_row(
        "magnetic tile read (image + masks)",
        f"{len(dataset):,} items",
        f"{seconds:.2f}",
        f"{len(dataset) / seconds:,.0f} items/s",
    )
    Console().print(table)


if __name__ == "__main__":
    main()
