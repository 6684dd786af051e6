"""Why a class is painted flat: per class, how much of a training crop its hole fills, and how
the defects' pixels vary inside them, real against painted.

    .venv/bin/python benchmarks/hole_texture.py --experiment bench_runs/mission_s14
        [--sets painted_g0 painted_g1] [--crop 128] [--draws 400]

For each class, on the experiment's fit part (`EXPERIMENT/fit_split.json`, what its generators
trained on):

- `hole_share`: the mean share of a training crop (`data.patches.DefectCrops`, the generator's
  own sampler, at --crop px) that is hole, over --draws crops of the class; near 1 the generator
  paints the crop with almost no context;
- per defect component (`severity.defect_contrasts`'s components), on grey levels in [0, 1]:
  `contrast` (|mean inside - mean of the ring around it|, the severity measure), `low_std` (the
  standard deviation inside the component of the image blurred with a Gaussian of sigma
  SIGMA px: shading across the defect) and `high_std` (that of the image minus its blur:
  texture) and `ring_high_std` (texture in the ring of RING_PX px around it, the surface the
  defect sits on); medians over the class's components, real and for each painted set (its
  masks are real masks of the fit part, painted on defect-free backgrounds).

A painted class whose `high_std` sits far below the real one (and below its own ring's) is
painted flat. For a defect not much wider than SIGMA the high-pass also holds the defect's own
edge, so `high_std` reads as grain only for large defects (here Fray and Uneven).
Prints one table and writes it as JSON to --out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from defectgen.data import open_dataset
from defectgen.data.patches import DefectCrops
from defectgen.data.split import Split
from defectgen.geometry import dilate
from defectgen.severity import RING_PX, defect_contrasts, grey
from defectgen.synthset.reader import open_synthetic

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "magnetic_tile"
SIGMA = 8.0  # px: shading at the scale of a defect, not its grain


def component_stats(dataset, indices) -> dict[int, list[tuple[float, ...]]]:
    """class id -> [(contrast, low_std, high_std, ring_high_std)] for every defect component of
    `indices` (its ring leaves out every defect's pixels)."""
    found: dict[int, list] = {}
    for index in indices:
        item = dataset[index]
        if not item.masks.any():
            continue
        values = grey(item.image)
        blurred = cv2.GaussianBlur(values, (0, 0), SIGMA)
        texture = values - blurred
        defects = item.masks.any(axis=0)
        for class_id, part, contrast in defect_contrasts(item.image, item.masks.astype(bool)):
            if part.sum() < 16:
                continue
            ring = dilate(part, RING_PX).astype(bool) & ~defects
            ring_std = float(texture[ring].std()) if ring.sum() >= 16 else float("nan")
            found.setdefault(class_id, []).append(
                (contrast, float(blurred[part].std()), float(texture[part].std()), ring_std)
            )
    return found


def hole_shares(dataset, indices, crop: int, draws: int) -> dict[int, float]:
    """class id -> mean share of a training crop that is hole, over `draws` crops of the class."""
    crops = DefectCrops(dataset, indices, crop, seed=0, progress=False)
    rng = np.random.default_rng(0)
    shares: dict[int, list[float]] = {}
    for _ in range(draws):
        image, hole, labels, severity, class_index = crops._crop(rng)
        shares.setdefault(class_index + 1, []).append(float(hole.float().mean()))
    return {k: float(np.mean(v)) for k, v in shares.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", type=Path, default=REPO / "bench_runs" / "mission_s14")
    parser.add_argument(
        "--sets", nargs="*", default=["painted_g0", "painted_g1"], help="set folders or names"
    )
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--draws", type=int, default=400)
    parser.add_argument("--out", type=Path, default=REPO / "bench_runs" / "hole_texture.json")
    args = parser.parse_args()

    dataset = open_dataset(str(DATA))
    fit = Split.load(args.experiment / "fit_split.json").indices(dataset, "train")
    sources = {"real (fit part)": (dataset, fit)}
    for name in args.sets:
        synthetic = open_synthetic(Path(name) if Path(name).is_dir() else args.experiment / name, dataset)
        sources[name] = (synthetic, list(range(len(synthetic))))
    shares = hole_shares(dataset, fit, args.crop, args.draws)
    table = {}
    for source, (data, indices) in sources.items():
        for class_id, rows in sorted(component_stats(data, indices).items()):
            medians = np.nanmedian(np.array(rows), axis=0)
            table.setdefault(dataset.classes.names[class_id - 1], {})[source] = {
                "components": len(rows),
                "contrast": round(float(medians[0]), 4),
                "low_std": round(float(medians[1]), 4),
                "high_std": round(float(medians[2]), 4),
                "ring_high_std": round(float(medians[3]), 4),
            }
    for class_id, share in shares.items():
        table.setdefault(dataset.classes.names[class_id - 1], {})["hole_share"] = round(share, 3)
    header = f"{'class':10} {'source':16} {'n':>5} {'contrast':>9} {'low_std':>8} {'high_std':>9}"
    print(f"{header} {'ring_high':>9}  hole share")
    for name, entry in table.items():
        for source, row in entry.items():
            if source == "hole_share":
                continue
            print(
                f"{name:10} {source:16} {row['components']:5d} {row['contrast']:9.4f} "
                f"{row['low_std']:8.4f} {row['high_std']:9.4f} {row['ring_high_std']:9.4f}  "
                f"{entry.get('hole_share', '')}"
            )
    args.out.write_text(json.dumps({"crop": args.crop, "sigma": SIGMA, "classes": table}, indent=1) + "\n")


if __name__ == "__main__":
    main()
