"""Learning curves of the evaluation's segmenter on the mission split: is it flat at its budget?

    .venv/bin/python benchmarks/segmenter_curve.py --runs d4:64,32,16,8:667 d4:64,32,16,8:1333 \
        d4:64,32,16,8:2000 d4:64,32,16,8:4000 [--size 96] [--batch 8] [--lr 1e-3] [--every 0]
        [--encoder resnet18]
    .venv/bin/python benchmarks/segmenter_curve.py --flatness   (the curve rule per model, from the JSON)
        [--json benchmarks/segmenter_curve.json]

Each run is `dDEPTH:DECODER_CHANNELS:STEPS`: the `real` arm (seed 0) trained STEPS steps on the
schedule the evaluation uses (one-cycle over STEPS), then its validation part and the test half
scored (class-mean pixel AP and positive Dice at 0.5). Runs of one model at several budgets are
the learning curve *of that schedule* (each point its own run); `--every N` also scores the
validation part every N steps inside a run (a curve of one annealing run, for comparison). The
split is the mission's: magnetic tile, test fraction 0.5, seed 0, label fraction 0.25. A curve
is *flat* at budget B when the runs' gain after 2B/3 is under 10 % of the total gain.

Finished runs are kept in the JSON file and skipped when asked again (resumable).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "magnetic_tile"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", nargs="+")
    parser.add_argument(
        "--flatness", action="store_true", help="Only print each model's curve rule from the JSON."
    )
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--encoder", default="resnet18")
    parser.add_argument("--every", type=int, default=0)
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "segmenter_curve.json")
    args = parser.parse_args()
    if args.flatness:
        flatness(json.loads(args.json.read_text())["runs"])
        return
    if not args.runs:
        parser.error("--runs is required (or --flatness)")

    import torch

    from defectgen.data import open_dataset
    from defectgen.data.split import carve_validation, make_split
    from defectgen.evaluate.arms import Arm
    from defectgen.evaluate.comparison import learning_curve
    from defectgen.evaluate.config import EvalConfig
    from defectgen.evaluate.context import EvalContext, arm_sampler
    from defectgen.evaluate.scores import summarize
    from defectgen.evaluate.segmenter import train_segmenter

    dataset = open_dataset(str(DATA))
    split = make_split(dataset, test_fraction=0.5, seed=0, label_fraction=0.25)
    results = json.loads(args.json.read_text()) if args.json.is_file() else {"runs": {}}
    for spec in args.runs:
        name = f"{spec}@{args.size}/b{args.batch}/lr{args.lr}"
        if args.encoder != "resnet18":
            name = f"{args.encoder}/{name}"
        if name in results["runs"]:
            print(f"{name}: done before, skipped")
            continue
        depth, channels, steps = spec.removeprefix("d").split(":")
        config = EvalConfig(
            arms=["real"],
            steps=int(steps),
            crop_size=args.size,
            batch_size=args.batch,
            lr=args.lr,
            encoder=args.encoder,
            encoder_depth=int(depth),
            decoder_channels=[int(c) for c in channels.split(",")],
        )
        ctx = EvalContext.create(dataset, split, config)
        ctx.steps = int(steps)
        sampler = arm_sampler(ctx, Arm("real", "real"), 0)
        model = ctx.model(0)
        curve: list[list[float]] = []

        def on_eval(step: int, model=model, ctx=ctx, curve=curve, name=name) -> None:
            sheet = ctx.score(model, ctx.validation)
            summary = summarize(sheet, dataset.classes.names)
            curve.append([step, summary["class_mean_pixel_ap"], summary["positive_dice_plain"]])
            print(
                f"  {name} step {step}: validation pixel AP {curve[-1][1]:.3f}, Dice {curve[-1][2]:.3f}",
                flush=True,
            )

        start = time.perf_counter()
        log = train_segmenter(
            model,
            sampler.batch,
            int(steps),
            lr=args.lr,
            use_bf16=ctx.use_bf16,
            on_eval=on_eval,
            eval_every=args.every,
            progress=False,
        )
        trained = time.perf_counter() - start
        start = time.perf_counter()
        test = summarize(ctx.score(model, ctx.test), dataset.classes.names)
        scored = time.perf_counter() - start
        validation_summary = summarize(ctx.score(model, ctx.validation), dataset.classes.names)
        _, validation = carve_validation(dataset, split.indices(dataset, "train"), config.val_fraction)
        results["runs"][name] = {
            "encoder": args.encoder,
            "depth": int(depth),
            "decoder_channels": [int(c) for c in channels.split(",")],
            "steps": int(steps),
            "crop_size": args.size,
            "batch_size": args.batch,
            "lr": args.lr,
            "curve_columns": ["step", "validation class-mean pixel AP", "validation positive Dice (0.5)"],
            "curve": curve,
            "within_run_curve": learning_curve(curve) if len(curve) > 2 else None,
            "validation": {k: validation_summary[k] for k in ("class_mean_pixel_ap", "positive_dice_plain")},
            "train_seconds_with_validation": trained,
            "train_seconds": log["seconds"],
            "test_seconds": scored,
            "test_images": len(ctx.test),
            "validation_images": len(validation),
            "test": {
                k: test[k]
                for k in (
                    "class_mean_pixel_ap",
                    "positive_dice_plain",
                    "pixel_ap",
                    "positive_dice",
                    "prevalence",
                    "class_mean_f1_max",
                )
            },
            "threads": torch.get_num_threads(),
            "command": "python benchmarks/segmenter_curve.py " + " ".join(sys.argv[1:]),
        }
        results["machine"] = f"dev-cpu: {os.cpu_count()} cores, {platform.processor() or platform.machine()}"
        results["date"] = datetime.date.today().isoformat()
        results["command"] = "python benchmarks/segmenter_curve.py --runs " + " ".join(args.runs)
        results["split"] = "magnetic tile, test 0.5, seed 0, label fraction 0.25 (the mission's)"
        args.json.write_text(json.dumps(results, indent=1) + "\n")
        print(
            f"{name}: test pixel AP {test['class_mean_pixel_ap']:.3f}, "
            f"positive Dice {test['positive_dice_plain']:.3f}, "
            f"train {trained:.0f} s, test {scored:.0f} s",
            flush=True,
        )


def flatness(runs: dict) -> None:
    """Per model (every setting but the steps), for each budget B: evaluate's curve rule over the
    runs of at most B steps, with the untrained U-Net's validation pixel AP taken as 0."""
    from collections import defaultdict

    from defectgen.evaluate.comparison import learning_curve

    models: dict[str, dict[int, float]] = defaultdict(dict)
    for name, run in runs.items():
        head, tail = name.split("@", 1)
        model = head.rsplit(":", 1)[0] + "@" + tail
        models[model][run["steps"]] = run["validation"]["class_mean_pixel_ap"]
    for model, curve in models.items():
        for budget in sorted(curve):
            points = [[0, 0.0, 0.0]] + [[s, curve[s], 0.0] for s in sorted(curve) if s <= budget]
            rule = learning_curve(points)
            if rule and rule["late_share"] is not None:
                share = rule["late_share"]
                print(f"{model} at {budget} steps: last-third share {share:.2f}, flat {rule['flat']}")


if __name__ == "__main__":
    main()
