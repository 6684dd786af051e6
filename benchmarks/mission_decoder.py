"""The two designs head to head: the decoder (StyleGAN2 drawing crop and mask) against the
inpainter, in the mission's instrument, plus the inpainter painting into the decoder's masks.

    .venv/bin/python benchmarks/mission_decoder.py --inpainter RUN/checkpoints/step_0001000.pt \
        [--decoder-steps 3000] [--n 500] [--work bench_runs/mission] [--processes 2]

Stages, each resumable (the same command continues; finished runs and sets are reused):

1. `defectgen train --model decoder --preset small` on the mission split's training half
   (magnetic tile, 25 % labels), 128 px crops as the inpainter's;
2. four synthetic sets of --n images, seed 0: `decoder` (drawn whole by the decoder),
   `inpainter` (--inpainter painting into the real mask bank on defect-free training images, as
   every earlier round), `learned` (the same inpainter painting into `--mask-source
   learned:DECODER`), `shapes` (the same inpainter, procedural shapes);
3. one evaluation (`evaluate` under torchrun, --processes single-thread processes) in the
   mission's folder with the mission's settings (600 segmenter steps, 96 px crops, 5 seeds):
   real, oversample, blendpaste, and oversample + each set;
4. label fidelity (the real arm of seed 0 as the independent judge), KID and diversity of each
   set (`evaluate.measure_quality`), and the paired differences (seed-aware 95 % intervals):
   each synthetic arm against oversample and the best cheap baseline, the decoder against the
   inpainter, learned masks against the real bank and the procedural shapes.

Writes `benchmarks/decoder_result.json`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "magnetic_tile"
sys.path.insert(0, str(REPO / "benchmarks"))
from mission_generator import _mean_test, run  # noqa: E402 - the same helpers as the round-five script

SETTINGS = dict(steps=600, crop_size=96, seeds=[0, 1, 2, 3, 4], quality_samples=0)
QUALITY_SAMPLES = 200  # synthetic images for label fidelity, crops for KID and diversity
CHEAP = ["oversample", "blendpaste"]
SETS = ["inpainter", "decoder", "learned", "shapes"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inpainter", type=Path, required=True, help="the inpainter's checkpoint")
    parser.add_argument("--decoder-steps", type=int, default=3000)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--work", type=Path, default=REPO / "bench_runs" / "mission")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--sets", default=",".join(SETS), help="synthetic sets to make and evaluate")
    parser.add_argument("--cheap", default=",".join(CHEAP), help="cheap baselines to evaluate")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.sets = [name for name in args.sets.split(",") if name]
    args.cheap = [name for name in args.cheap.split(",") if name]
    if "oversample" not in args.cheap:
        raise SystemExit("--cheap must include oversample (every synthetic arm stacks on it)")
    if not set(args.sets) <= set(SETS) or "inpainter" not in args.sets:
        raise SystemExit(f"--sets: some of {', '.join(SETS)}, with inpainter")
    if args.worker:
        return worker(args)
    if not DATA.exists():
        raise SystemExit(f"magnetic tile data not found at {DATA}")
    from defectgen.data import open_dataset
    from defectgen.data.split import Split
    from defectgen.evaluate import EvalConfig, measure_quality
    from mission_magnetic_tile import paired_arms

    start = time.time()
    work, cli = args.work, [sys.executable, "-m", "defectgen"]
    split = work / "split_0.25.json"
    decoder_run = work / "decoder"
    decoder = decoder_run / "checkpoints" / f"step_{args.decoder_steps:07d}.pt"
    if not decoder.exists():
        resume = ["--resume"] if decoder_run.exists() else []
        run([*cli, "train", str(DATA), "--split", str(split), "--out", str(decoder_run), "--model", "decoder",
             "--preset", "small", "--steps", str(args.decoder_steps), "--set", "sample_every=500",
             "--set", "checkpoint_every=250", *resume], threads=2)  # fmt: skip
    train_minutes = _train_minutes(decoder_run)
    sources = {"inpainter": "real", "learned": f"learned:{decoder_run}", "shapes": "shapes"}
    for name in args.sets:
        checkpoint, source = (
            (decoder, []) if name == "decoder" else (args.inpainter, ["--mask-source", sources[name]])
        )
        run([*cli, "synth", str(DATA), "--checkpoint", str(checkpoint), "--split", str(split),
             "-n", str(args.n), "--out", str(work / f"synthetic_{name}"), "--seed", "0", *source],
            threads=2)  # fmt: skip
    arms = ["real", *args.cheap, *(f"oversample+{name}" for name in args.sets)]
    launcher = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={args.processes}",
    ]
    job = json.dumps({**SETTINGS, "arms": arms})
    run(
        [
            *launcher,
            __file__,
            "--worker",
            job,
            "--work",
            str(work),
            "--inpainter",
            str(args.inpainter),
            "--sets",
            ",".join(args.sets),
            "--cheap",
            ",".join(args.cheap),
        ],  # fmt: skip
        threads=1,
    )
    eval_dir = work / "eval"
    dataset, split_object = open_dataset(str(DATA)), Split.load(split)
    # The runs were trained without quality figures; the quality step measures 200 of each set.
    config = EvalConfig(**{**SETTINGS, "arms": arms, "quality_samples": QUALITY_SAMPLES})
    sets = {name: work / f"synthetic_{name}" for name in args.sets}
    quality = measure_quality(
        dataset,
        split_object,
        eval_dir,
        config,
        {k: v for k, v in sets.items() if k != "decoder"},
        args.inpainter,
        0,
    )
    quality.update(
        measure_quality(dataset, split_object, eval_dir, config, {"decoder": sets["decoder"]}, decoder, 0)
    )
    seeds = SETTINGS["seeds"]
    means = {arm: _mean_test(eval_dir, arm, seeds) for arm in arms}
    best_cheap = max(args.cheap, key=lambda arm: means[arm])
    pairs = [
        (f"oversample+{name}", other) for name in args.sets for other in sorted({"oversample", best_cheap})
    ]
    pairs += [
        (f"oversample+{a}", f"oversample+{b}")
        for a, b in [
            ("decoder", "inpainter"),
            ("learned", "inpainter"),
            ("learned", "shapes"),
            ("shapes", "inpainter"),
            ("learned", "decoder"),
        ]
        if a in args.sets and b in args.sets
    ]
    record = {
        "benchmark": "decoder (StyleGAN2, crop and mask from noise) vs inpainter, magnetic tile, 25 % labels",
        "command": "python benchmarks/mission_decoder.py " + " ".join(sys.argv[1:]),
        "machine": f"dev-cpu, 2 cores; evaluation in {args.processes} single-thread torchrun processes",
        "minutes_this_invocation": round((time.time() - start) / 60, 1),
        "settings": {**SETTINGS, "quality_samples": QUALITY_SAMPLES, "synthetic_images": args.n},
        "generators": {
            "inpainter": {"checkpoint": str(args.inpainter)},
            "decoder": {
                "checkpoint": str(decoder),
                "preset": "decoder-small",
                "steps": args.decoder_steps,
                "train_minutes": train_minutes,
            },
        },
        "sets": {
            name: {
                "generator": "decoder" if name == "decoder" else "inpainter",
                "mask_source": "drawn by the decoder" if name == "decoder" else sources[name],
                "labels": _label_statistics(sets[name]),
            }
            for name in args.sets
        },
        "arms": arms,
        "seeds": seeds,
        "test_mean_positive_dice": means,
        "best_cheap_baseline": best_cheap,
        "paired": {f"{a} - {b}": paired_arms(eval_dir, a, b, seeds) for a, b in pairs},
        "quality": quality,
    }
    path = REPO / "benchmarks" / "decoder_result.json"
    path.write_text(json.dumps(record, indent=1, default=float) + "\n")
    print(json.dumps({k: record[k] for k in ("test_mean_positive_dice", "best_cheap_baseline")}, indent=1))


def worker(args) -> None:
    """One torchrun process: the evaluation, its (arm, seed) runs shared out."""
    from defectgen.data import open_dataset
    from defectgen.data.split import Split
    from defectgen.evaluate import EvalConfig, evaluate

    dataset = open_dataset(str(DATA))
    split = Split.load(args.work / "split_0.25.json")
    sets = {name: args.work / f"synthetic_{name}" for name in args.sets}
    evaluate(dataset, split, args.work / "eval", EvalConfig(**json.loads(args.worker)), synthetic=sets,
             progress=False)  # fmt: skip


def _label_statistics(folder: Path) -> dict:
    """Classes per item and labelled pixels per item (all classes) of a synthetic set, from its
    manifest: how much of each image its labels claim."""
    import numpy as np

    items = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines() if line]
    classes = np.array([len(item["classes"]) for item in items])
    pixels = np.array([sum(item["areas"].values()) for item in items])
    return {
        "items": len(items),
        "classes_per_item": round(float(classes.mean()), 2),
        "labelled_px_mean": round(float(pixels.mean())),
        "labelled_px_median": round(float(np.median(pixels))),
    }


def _train_minutes(run_dir: Path) -> float:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    seconds = sum(json.loads(line)["seconds_per_step"] * 10 for line in lines)  # log_every = 10
    return round(seconds / 60, 1)


if __name__ == "__main__":
    main()
