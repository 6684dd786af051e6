"""The evaluation's noise floor at the CPU default: how small an effect can it see?

    .venv/bin/python benchmarks/noise_floor.py [--arms real,control] [--seeds 4]
        [--work bench_runs/noise_floor] [--json benchmarks/noise_floor.json] [--set FIELD=VALUE ...]

`defectgen evaluate` on the mission split (magnetic tile, test 0.5, seed 0, label fraction
0.25) with the given arms and `EvalConfig` defaults otherwise (the learning curve off: it is
`benchmarks/segmenter_curve.py`'s job). Resumable: finished runs are reused. Writes the noise
floor (minimal detectable effect in class-mean pixel AP and positive Dice, seeds needed), the
real arm's mean scores and each run's seconds to the JSON file.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "magnetic_tile"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", default="real,control")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--work", type=Path, default=REPO / "bench_runs" / "noise_floor")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "noise_floor.json")
    parser.add_argument("--set", dest="settings", action="append", default=[])
    args = parser.parse_args()

    from defectgen.data import open_dataset
    from defectgen.data.split import make_split
    from defectgen.evaluate import EvalConfig, evaluate
    from defectgen.settings import parse_yaml

    dataset = open_dataset(str(DATA))
    split = make_split(dataset, test_fraction=0.5, seed=0, label_fraction=0.25)
    overrides = {k: parse_yaml(v) for k, _, v in (s.partition("=") for s in args.settings)}
    config = replace(
        EvalConfig(), arms=args.arms.split(","), seeds=list(range(args.seeds)), curve=False, **overrides
    )
    results = evaluate(dataset, split, args.work, config, progress=sys.stdout.isatty())
    floor = results["noise_floor"] or {}
    summary = results["summary"]
    record = {
        "command": "python benchmarks/noise_floor.py " + " ".join(sys.argv[1:]),
        "machine": f"dev-cpu, {os.cpu_count()} cores",
        "date": datetime.date.today().isoformat(),
        "split": "magnetic tile, test 0.5, seed 0, label fraction 0.25 (the mission's)",
        "config": {k: v for k, v in results["config"].items() if not isinstance(v, str)},
        "noise_floor": floor,
        "mean": {
            arm: {k: v for k, v in entry.items() if isinstance(v, dict) and "mean" in v}
            for arm, entry in summary.items()
        },
        "paired": {
            arm: {m: {k: c[k] for k in ("difference", "ci95", "per_seed")} for m, c in e.items()}
            for arm, e in results["paired"].items()
        },
        "seconds_per_run": {f"{r['arm']}_s{r['seed']}": r["seconds"] for r in results["runs"]},
    }
    from defectgen.evaluate.statistics import minimal_detectable_effect

    for metric in ("class_mean_pixel_ap", "positive_dice_plain"):  # the same noise at other seed counts
        entry = floor.get(metric, {})
        if entry.get("seed_sd") is not None:
            record.setdefault("minimal_detectable_effect_at", {})[metric] = {
                str(seeds): minimal_detectable_effect(entry["seed_sd"] ** 2, entry["image_se"] ** 2, seeds)
                for seeds in (3, 5, 8, 12)
            }
    args.json.write_text(json.dumps(record, indent=1) + "\n")
    for metric in ("class_mean_pixel_ap", "positive_dice_plain"):
        entry = floor.get(metric, {})
        print(
            f"{metric}: minimal detectable effect {entry.get('minimal_detectable_effect')} "
            f"at {args.seeds} seeds; seeds needed {entry.get('seeds_needed_for')}"
        )


if __name__ == "__main__":
    main()
