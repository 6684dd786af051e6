"""How long the content fingerprint takes on a Severstal-sized folder (12,568 items).

Builds a folder dataset of N items by hard-linking the magnetic tile images and masks over and
over (no pixel is copied), opens it, and times `DefectDataset.fingerprint` cold (first call)
and again on a second opening (the page cache warm). The figures go to benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/fingerprint_speed.py --items 12568
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

from defectgen.data import open_dataset

SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "magnetic_tile"
WORK = Path(__file__).resolve().parents[1] / "bench_runs" / "fingerprint"  # git-ignored


def build(work: Path, items: int) -> Path:
    tiles = open_dataset(str(SOURCE))
    root = work / "data"
    shutil.rmtree(root, ignore_errors=True)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for n in range(items):
        item = tiles.items[n % len(tiles)]
        _link(item.image_path, root / "images" / f"{n:05d}.jpg")
        _link(item.mask_path, root / "masks" / f"{n:05d}.png")
    return root


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system: copy
        shutil.copyfile(source, target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=12568)
    parser.add_argument("--work", type=Path, default=WORK)
    args = parser.parse_args()
    root = build(args.work, args.items)
    for label in ("first opening", "second opening"):
        start = time.perf_counter()
        dataset = open_dataset(str(root))
        opened = time.perf_counter()
        fingerprint = dataset.fingerprint()
        done = time.perf_counter()
        print(
            f"{label}: {len(dataset)} items, open {opened - start:.1f} s (indexes every mask), "
            f"fingerprint {done - opened:.2f} s -> {fingerprint}"
        )


if __name__ == "__main__":
    main()
