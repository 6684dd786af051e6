"""Does painting a window around each defect (`synth --tile T`) change what the generator paints?

    .venv/bin/python benchmarks/window_quality.py --checkpoint RUN/checkpoints/step_0001000.pt \
        --whole bench_runs/quality/NAME/synthetic [--tiles 128] [--n 300] [--eval bench_runs/mission/eval]

The whole-image set (`--whole`, from `defectgen synth` with seed 0) is painted again with each
--tiles window size, same command otherwise (same backgrounds and masks: they depend on
(seed, i) only). Both are judged in one `evaluate.measure_quality` call by the mission's real
U-Net of seed 0 (label fidelity per class, KID in its encoder with the same seeded subsets),
and compared pixel by pixel: the mean and 99th percentile |whole - tiled| grey-level
difference inside the painted region. A window as small as the generator's training crop gives
its global (Fourier) branch no more context than training did. Writes `windows_quality` into
`benchmarks/throughput.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "magnetic_tile"
RESULT = REPO / "benchmarks" / "throughput.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--whole", type=Path, required=True, help="the whole-image synthetic set (seed 0)")
    parser.add_argument("--tiles", default="128", help="window sizes, comma-separated")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--eval", type=Path, default=REPO / "bench_runs" / "mission" / "eval")
    parser.add_argument("--split", type=Path, default=REPO / "bench_runs" / "mission" / "split_0.25.json")
    args = parser.parse_args()
    from defectgen.data import open_dataset
    from defectgen.data.split import Split
    from defectgen.evaluate import EvalConfig, measure_quality
    from defectgen.synthset import read_manifest

    start = time.time()
    tiles = [int(t) for t in args.tiles.split(",")]
    sets = {"whole": args.whole}
    for tile in tiles:
        out = args.whole.parent / f"{args.whole.name}_tile{tile}"
        command = [sys.executable, "-m", "defectgen", "synth", str(DATA), "--checkpoint",
                   str(args.checkpoint), "--split", str(args.split), "-n", str(args.n), "--out", str(out),
                   "--seed", "0", "--tile", str(tile)]  # fmt: skip
        print("$ " + " ".join(command), flush=True)
        subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
        sets[f"tile{tile}"] = out
    dataset, split = open_dataset(str(DATA)), Split.load(args.split)
    config = EvalConfig(quality_samples=args.n, crop_size=96)
    quality = measure_quality(dataset, split, args.eval, config, sets, None, 0)
    whole = open_dataset(str(args.whole))
    record = {
        "command": "python benchmarks/window_quality.py " + " ".join(sys.argv[1:]),
        "machine": "dev-cpu, 2 cores",
        "checkpoint": str(args.checkpoint),
        "images": args.n,
        "minutes": None,
        "sets": {},
    }
    for name, folder in sets.items():
        fidelity = quality[name]["label_fidelity"]
        entry = {
            "tile": None if name == "whole" else int(name.removeprefix("tile")),
            "label_fidelity": {
                cls: {k: row[k] for k in ("synthetic", "real_test", "ratio", "judgeable") if k in row}
                for cls, row in fidelity.get("per_class", {}).items()
            },
            "kid": {k: quality[name]["kid"][k] for k in ("value", "std")},
        }
        if name != "whole":
            entry["pixels_vs_whole"] = _difference(whole, open_dataset(str(folder)), read_manifest(folder))
        record["sets"][name] = entry
    record["minutes"] = round((time.time() - start) / 60, 1)
    summary = json.loads(RESULT.read_text())
    summary["windows_quality"] = record
    RESULT.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(record, indent=1))


def _difference(whole, tiled, records) -> dict:
    """|whole - tiled| grey levels inside each item's painted region (same masks in both)."""
    from defectgen.data.rle import decode

    differences = []
    for index in range(len(tiled)):
        a, b = whole[index], tiled[index]
        if not np.array_equal(a.masks, b.masks):
            raise SystemExit(f"item {index}: the two sets have different masks; same seed and n needed")
        record = records[f"synth_{index:06d}"]
        region = decode(record["painted"], a.image.shape[:2])
        differences.append(np.abs(a.image.astype(np.int16) - b.image.astype(np.int16))[region].ravel())
    values = np.concatenate(differences)
    return {
        "mean": round(float(values.mean()), 2),
        "p99": float(np.percentile(values, 99)),
        "pixels": len(values),
    }


if __name__ == "__main__":
    main()
