"""Two generator recipes' declared arms against each other, from two `defectgen experiment`
folders on the same data and split (the second made with `--runs-from` the first, say).

    .venv/bin/python benchmarks/compare_recipes.py bench_runs/mission_tex bench_runs/mission_s14 \
        [--json benchmarks/recipe_texture_noise.json]

Each folder's declared arm `real+painted_gG` at segmenter seed s is paired with the other's at
the same G and s (`evaluate.statistics.compare` with the second recipe's replicates as the
baseline): the same test images, the same `real` crops and initial weights per seed, two
independent generators per cell, so the interval holds both recipes' generator variance, the
segmenter seeds and the shared test images. Both folders' `real` runs must be the same runs
(same record), or the pairing would not hold; the test images are checked to be the same.
Beside it, each cell's scores on the validation part (`validation`), where a recipe is chosen.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from defectgen.evaluate.scores import PAIRED_METRICS
from defectgen.evaluate.statistics import bootstrap_weights, compare

METRICS = ("class_mean_pixel_ap", "positive_dice_plain")


def test_arrays(folder: Path, arm: str, seed: int) -> dict:
    with np.load(folder / "eval" / "runs" / f"{arm}_s{seed}.npz") as data:
        return {k.removeprefix("test_"): data[k] for k in data.files if k.startswith("test_")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = [json.loads((f / "eval" / "results.json").read_text()) for f in (args.first, args.second)]
    seeds = sorted(set(results[0]["config"]["seeds"]) & set(results[1]["config"]["seeds"]))
    arms = [r["claim"]["declared_arms"] for r in results]
    if len(arms[0]) != len(arms[1]) or len(seeds) < 2:
        raise SystemExit(f"the folders need as many generators and 2+ shared seeds: {arms}, seeds {seeds}")
    for seed in seeds:
        real = [
            json.loads((f / "eval" / "runs" / f"real_s{seed}.json").read_text())
            for f in (args.first, args.second)
        ]
        if real[0] != real[1]:
            raise SystemExit(
                f"real_s{seed} differs between the folders: not the same split, data or settings"
            )
    grids = [
        [[test_arrays(f, arm, s) for s in seeds] for arm in names]
        for f, names in zip((args.first, args.second), arms, strict=True)
    ]
    if any(not np.array_equal(grids[0][0][0]["target"], g[0][0]["target"]) for g in grids[1:]):
        raise SystemExit("the folders' test images differ")
    weights = bootstrap_weights(len(grids[0][0][0]["target"]))
    out = {
        "first": {"folder": str(args.first), "declared_arms": arms[0]},
        "second": {"folder": str(args.second), "declared_arms": arms[1]},
        "seeds": seeds,
        "rule": "first - second, paired by generator index and segmenter seed (statistics.compare)",
    }
    for metric in METRICS:
        function = PAIRED_METRICS[metric]
        result = compare(grids[0], grids[1], lambda a, w, f=function: f(a, w, None), weights)
        out[metric] = result
        low, high = result["ci95"]
        print(
            f"{metric}: {result['difference']:+.3f} [{low:+.3f}, {high:+.3f}]  per generator "
            f"{np.round(result['per_generator'], 3).tolist()}, "
            f"per seed {np.round(result['per_seed'], 3).tolist()}"
        )
    out["validation"] = validation_cells(args.first, args.second, arms, seeds)
    for metric, cells in out["validation"].items():
        wins = sum(a > b for a, b in cells["cells"])
        print(f"validation {metric}: first above second in {wins} of {len(cells['cells'])} cells")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


def validation_cells(first: Path, second: Path, arms: list[list[str]], seeds: list[int]) -> dict:
    """Per metric, each cell's (first, second) score on the validation part (each run's record:
    the part a recipe is chosen on, never the test half), cells in generator-major order."""
    cells: dict = {metric: {"cells": []} for metric in METRICS}
    for g in range(len(arms[0])):
        for seed in seeds:
            records = [
                json.loads((folder / "eval" / "runs" / f"{names[g]}_s{seed}.json").read_text())["validation"]
                for folder, names in zip((first, second), arms, strict=True)
            ]
            for metric in METRICS:
                cells[metric]["cells"].append([round(r[metric], 4) for r in records])
    for metric in METRICS:
        cells[metric]["first_above_second"] = sum(a > b for a, b in cells[metric]["cells"])
    return cells


if __name__ == "__main__":
    main()
