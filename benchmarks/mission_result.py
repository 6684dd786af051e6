"""The mission's headline figures, read from a finished `defectgen experiment` folder.

    .venv/bin/defectgen experiment ../shared/data/magnetic_tile --out bench_runs/mission
    .venv/bin/python benchmarks/mission_result.py bench_runs/mission [--json benchmarks/mission_result.json]

Writes the small JSON the README quotes: the declared arm(s) and, per cheap baseline, the
paired difference of class-mean pixel AP (and positive Dice at 0.5) with its 95 % interval;
the noise floor (minimal detectable effect); every arm's mean and spread; the siblings
measured beside the claim, each against every baseline as the declared arm is; the learning
curve; label fidelity and diversity of each set; the wall time of each stage from the folder's
`timings.jsonl`; which checkpoint of each generator painted its sets (`generators.json`).
Everything is copied from the experiment's own files: nothing is computed here that `evaluate`
did not compute.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METRICS = ("class_mean_pixel_ap", "positive_dice_plain")


def command(folder: Path, dataset: str, config: dict) -> str:
    """The `defectgen experiment` command that made `folder`: its settings that differ from the
    defaults, as flags where the CLI has one and `--set` otherwise."""
    from defectgen.experiment import ExperimentConfig

    defaults = dataclasses.asdict(ExperimentConfig())
    flags = {f.name: f.metadata.get("flag") for f in dataclasses.fields(ExperimentConfig)}
    parts = ["defectgen experiment", dataset.removeprefix("folder:"), "--out", str(folder)]
    for name, value in config.items():
        if value == defaults.get(name):
            continue
        flag = flags.get(name)
        if isinstance(value, dict):  # generator / evaluation settings: --set generator.KEY.SUBKEY=VALUE
            parts += [f"--set {key}={_text(v)}" for key, v in _dotted(name, value)]
        elif isinstance(value, bool):
            parts.append(f"--{'' if value else 'no-'}{name.replace('_', '-')}")
        else:
            parts.append(f"{flag or '--' + name.replace('_', '-')} {value}")
    return " ".join(parts)


def _text(value) -> str:
    """A --set value as typed: YAML's true/false, JSON for a list."""
    if isinstance(value, bool):
        return str(value).lower()
    return json.dumps(value) if isinstance(value, list) else str(value)


def _dotted(prefix: str, value) -> list[tuple[str, object]]:
    """(dotted key, leaf value) of a nested mapping: {"model": {"a": 1}} -> [("PREFIX.model.a", 1)]."""
    if not isinstance(value, dict) or not value:
        return [(prefix, value)]
    return [pair for key, inner in value.items() for pair in _dotted(f"{prefix}.{key}", inner)]


def paired(entry: dict) -> dict:
    """The parts of a paired comparison a reader needs: difference, interval, per seed."""
    return {
        metric: {k: entry[metric].get(k) for k in ("difference", "ci95", "per_seed", "df")}
        for metric in METRICS
        if metric in entry
    }


def _generators(folder: Path) -> dict | None:
    """Which checkpoint of each generator painted its sets, and any collapse found in its log
    (the experiment's generators.json; None for a folder made before it was written)."""
    path = folder / "generators.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _recipe(arm: str, results: dict) -> str:
    """The declared arms' common name (`real+painted_g*`), as `evaluate` names generator replicates."""
    from defectgen.evaluate.arms import parse_arm
    from defectgen.evaluate.comparison import recipe

    return recipe(parse_arm(arm, tuple(results.get("synthetic") or ()))) or arm


def mission_result(folder: Path) -> dict:
    results = json.loads((folder / "eval" / "results.json").read_text())
    experiment = json.loads((folder / "experiment.json").read_text())
    claim = results.get("claim") or {}
    declared = claim.get("declared_arms", [])
    timings: dict[str, float] = defaultdict(float)
    timings_file = folder / "timings.jsonl"
    workers = None
    if timings_file.is_file():
        for line in timings_file.read_text().splitlines():
            record = json.loads(line)
            timings[record["stage"]] += record["seconds"]
            workers = record.get("workers", workers)
    claim_arms = [*claim.get("baselines", []), "control", *declared]
    claim_runs = [r for r in results["runs"] if r["arm"] in claim_arms]
    siblings = [arm for arm in results["summary"] if arm not in claim_arms]
    return {
        "benchmark": "defectgen experiment (the mission: magnetic tile, 25 % labels)",
        "command": command(folder, results["dataset"], experiment["config"]),
        "date": datetime.date.today().isoformat(),
        "machine": f"dev-cpu: {os.cpu_count()} cores, {platform.processor() or platform.machine()}",
        "versions": results.get("versions"),
        "experiment": experiment["config"],
        "evaluation": {
            k: results["config"][k]
            for k in (
                "steps",
                "crop_size",
                "batch_size",
                "encoder",
                "encoder_depth",
                "decoder_channels",
                "seeds",
            )
        },
        "segmenter_precision": sorted(
            {r.get("segmenter", {}).get("precision", "not recorded") for r in results["runs"]}
        ),
        "split": results.get("split"),
        "claim": {
            "declared_arm": _recipe(declared[0], results) if len(declared) > 1 else (declared or [None])[0],
            "declared_arms": declared,
            "generators": claim.get("generators"),
            "met": claim.get("met"),
            "every_interval_above_zero": claim.get("every_interval_above_zero"),
            "smallest_difference": claim.get("smallest_difference"),
            "crops_per_step": claim.get("crops_per_step"),
            "crop_matched_baselines": claim.get("crop_matched_baselines"),
            "versus": {base: paired(entry) for base, entry in (claim.get("versus") or {}).items()},
        },
        "generator_checkpoints": _generators(folder),
        "noise_floor": results.get("noise_floor"),
        "mean": {
            arm: {
                metric: entry[metric]
                for metric in (*METRICS, "kaggle_dice", "fp_rate_defect_free")
                if metric in entry
            }
            for arm, entry in results["summary"].items()
        },
        "paired_vs_real": {arm: paired(entry) for arm, entry in (results.get("paired") or {}).items()},
        "siblings": siblings,
        "beside_the_claim": {
            label: {
                "arms": entry["arms"],
                "every_interval_above_zero": entry["every_interval_above_zero"],
                "smallest_difference": entry["smallest_difference"],
                "versus": {base: paired(comparison) for base, comparison in entry["versus"].items()},
            }
            for label, entry in (results.get("beside_the_claim") or {}).items()
        },
        "learning_curve": results.get("learning_curve"),
        "quality": results.get("quality"),
        "wall_seconds": {
            "stages": dict(timings),
            "evaluate_workers": workers,
            "claim_runs_seconds_summed": round(sum(r["seconds"] for r in claim_runs), 1),
            "all_runs_seconds_summed": round(sum(r["seconds"] for r in results["runs"]), 1),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "mission_result.json")
    parser.add_argument("--note", default=None, help="What the folder does not say (machine, pauses).")
    args = parser.parse_args()
    result = mission_result(args.folder)
    if args.note:
        result["note"] = args.note
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    claim = result["claim"]
    print(f"declared {claim['declared_arm']}: met {claim['met']}")
    for base, entry in claim["versus"].items():
        ap = entry["class_mean_pixel_ap"]
        print(f"  vs {base}: {ap['difference']:+.3f} [{ap['ci95'][0]:+.3f}, {ap['ci95'][1]:+.3f}]")


if __name__ == "__main__":
    main()
