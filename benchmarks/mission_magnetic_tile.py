"""The mission benchmark: the whole protocol on the real magnetic tile dataset.

    .venv/bin/python benchmarks/mission_magnetic_tile.py [--label-fraction 0.25] [--gan-steps 2500]
        [--work bench_runs/mission] [--synthetic 1000] [--seeds 5] [--size 96]
        [--max-steps 800] [--eval-every 200] [--steps N]
    .venv/bin/python benchmarks/mission_magnetic_tile.py --smoke      # minutes: checks the plumbing only

Stages, each resumable (run the same command again after an interruption):

1. split 50/50 (seed 0) at the label fraction; the `small` generator trained on the labelled
   training half (an existing checkpoint of that step is reused); `--synthetic` images painted
   on defect-free training images;
2. the step count chosen on the real arm (validation part of the training half), real seeds;
3. `real`, its noise-floor twin `control` and `oversample`, every seed, in two single-thread
   worker processes side by side (on 2 cores faster than one 2-thread process);
4. the better of real and oversample *by validation Dice* (never by test Dice) + the synthetic
   set, every seed; then `copypaste` and `classic` (this order puts the claim's arms first in a
   limited CPU budget; the claim is against the best of all four cheap baselines);
5. one gathering call (quality measurements), the report, and `benchmarks/mission_result.json`:
   arms, seeds, per-seed and mean metrics, the noise floor, and the best synthetic arm against
   the best cheap baseline with its seed-aware 95 % interval;
6. `--variants`: how synthetic crops enter training (share, schedule), paired with the default;
7. the copy-paste family (`--harmonized N`): N images of `synth --mode harmonize` (real defects
   pasted, the seam repainted by the same generator), stacked on the base of the better
   synthetic arm by validation Dice; paired: blendpaste - copypaste, harmonized - GAN on that
   base, harmonized - blendpaste; label fidelity of every synthetic set.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "magnetic_tile"
from defectgen.evaluate.arms import BASES as ARM_REGISTRY  # noqa: E402 - after REPO/DATA on purpose

BASES = list(ARM_REGISTRY)  # real, oversample, copypaste, classic, control
CHEAP = [arm for arm in BASES if arm != "control"]


def sh(command: list[str], threads: int = 2) -> None:
    print("$ " + " ".join(command), flush=True)
    subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": str(threads)}, check=True)


def worker(args: argparse.Namespace) -> None:
    """Evaluate calls (a JSON list of EvalConfig settings, in order) in this process."""
    from defectgen.data import open_dataset
    from defectgen.data.split import Split
    from defectgen.evaluate import EvalConfig, evaluate

    dataset = open_dataset(str(DATA))
    split = Split.load(args.work / f"split_{args.label_fraction}.json")
    synthetic = _sets(args.work)
    for settings in json.loads(args.worker):
        out = args.work / settings.pop("out", "eval")
        evaluate(dataset, split, out, EvalConfig(**settings), synthetic=synthetic, progress=False)


SETS = {  # set name -> folder under --work
    "gan": "synthetic",
    "harmonized": "harmonized",
    "labelled": "synthetic_labelled",  # stage 9: painted on defect images, old defects kept
    "cleaned": "synthetic_cleaned",  # stage 9: painted on defect images erased first
}


def _sets(work: Path) -> dict[str, Path]:
    """The synthetic sets already written under `work`."""
    return {
        name: work / folder for name, folder in SETS.items() if (work / folder / "manifest.jsonl").exists()
    }


def parallel(args: argparse.Namespace, config, workers: list[list[tuple]]) -> None:
    """Two single-thread worker processes side by side; each runs its jobs in order.

    A job is (arms, seeds) or (arms, seeds, overrides) (overrides: EvalConfig fields and `out`,
    the evaluation folder under --work)."""
    processes = []
    for jobs in workers:
        if not jobs:
            continue
        settings = json.dumps(
            [
                {**asdict(config), "arms": j[0], "seeds": j[1], "quality_samples": 0, **dict(j[2:] and j[2])}
                for j in jobs
            ]
        )
        command = [sys.executable, __file__, "--work", str(args.work),
                   "--label-fraction", str(args.label_fraction), "--worker", settings]  # fmt: skip
        print("$ worker " + "; ".join(f"{','.join(j[0])} seeds {j[1]}" for j in jobs), flush=True)
        processes.append(subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"}))
    codes = [p.wait() for p in processes]
    if any(codes):
        raise SystemExit(f"a worker failed ({codes}); run the same command again to continue")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label-fraction", type=float, default=0.25)
    parser.add_argument("--gan-steps", type=int, default=2500)
    parser.add_argument("--synthetic", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--max-steps", type=int, default=800)
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument("--steps", type=int, default=None, help="fixed segmenter steps (skips the choice)")
    parser.add_argument("--work", type=Path, default=REPO / "bench_runs" / "mission")
    parser.add_argument("--smoke", action="store_true", help="tiny settings: checks the plumbing in minutes")
    parser.add_argument(
        "--without",
        type=lambda t: t.split(","),
        default=[],
        help="base arms to leave out, comma-separated (a CPU budget that runs out)",
    )
    parser.add_argument(
        "--variants",
        type=lambda t: t.split(","),
        default=list(VARIANTS),
        help=f"synthetic-use variants to measure: {','.join(VARIANTS)}",
    )
    parser.add_argument(
        "--harmonized",
        type=int,
        default=0,
        help="images of `synth --mode harmonize` for the copy-paste stage (0: skip the stage)",
    )
    parser.add_argument(
        "--backgrounds",
        type=int,
        default=0,
        help="images per background source (labelled, cleaned) for the no-defect-free stage (0: skip)",
    )
    parser.add_argument(
        "--no-other",
        action="store_true",
        help="leave out the synthetic set on the other base and the label-filtered arm (a CPU budget)",
    )
    parser.add_argument(
        "--gather-last", action="store_true", help="gather (quality, report, JSON) once, at the end"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    if not DATA.exists():
        raise SystemExit(f"magnetic tile data not found at {DATA}")
    from defectgen.data import open_dataset
    from defectgen.data.split import Split
    from defectgen.evaluate import EvalConfig, evaluate

    preset, gan_sets = "small", []
    if args.smoke:
        preset, args.gan_steps, args.synthetic, args.seeds = "tiny", 20, 40, 2
        args.max_steps, args.eval_every, args.size = 40, 20, 64
        gan_sets = ["--set", "batch_size=2"]
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    path = REPO / "benchmarks" / "mission_result.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    cli = [sys.executable, "-m", "defectgen"]
    start = time.time()
    split = work / f"split_{args.label_fraction}.json"
    if not split.exists():
        sh([*cli, "split", str(DATA), "--out", str(split), "--test-fraction", "0.5", "--seed", "0",
            "--label-fraction", str(args.label_fraction)])  # fmt: skip
    seeds = list(range(args.seeds))
    config = replace(
        EvalConfig(),
        seeds=seeds,
        steps=args.steps,
        max_steps=args.max_steps,
        eval_every=args.eval_every,
        crop_size=args.size,
    )
    dataset = open_dataset(str(DATA))
    split_object = Split.load(split)
    # 2. the step choice (2 threads) and the real arm's first two seeds
    evaluate(
        dataset,
        split_object,
        work / "eval",
        replace(config, arms=["real"], seeds=seeds[:2], quality_samples=0),
    )
    # 3. real, its noise-floor twin and oversampling (the best cheap baseline of the last mission)
    parallel(args, config, [[(["real", "control"], seeds)], [(["oversample"], seeds)]])
    gan = work / "gan"
    checkpoint = gan / "checkpoints" / f"step_{args.gan_steps:07d}.pt"
    if not checkpoint.exists():
        sh([*cli, "train", str(DATA), "--split", str(split), "--out", str(gan), "--preset", preset,
            "--steps", str(args.gan_steps), "--set", "sample_every=500", "--set", "checkpoint_every=250",
            *gan_sets, *(["--resume"] if gan.exists() else [])])  # fmt: skip
    synth = work / "synthetic"
    if (
        not (synth / "manifest.jsonl").exists()
        or len((synth / "manifest.jsonl").read_text().splitlines()) < args.synthetic
    ):
        sh([*cli, "synth", str(DATA), "--checkpoint", str(checkpoint), "--split", str(split),
            "--n", str(args.synthetic), "--out", str(synth), "--seed", "0"])  # fmt: skip
    # 4. the better of those bases *by validation Dice* (never test Dice) + synthetic
    done = evaluate(dataset, split_object, work / "eval", replace(config, arms=["real", "oversample"],
                    quality_samples=0), progress=False)  # fmt: skip
    best = max(["real", "oversample"], key=lambda arm: _validation_dice(done, arm))
    stacked = f"{best}+gan"
    half = (len(seeds) + 1) // 2  # two workers, each >= 2 seeds a call (fewer than 4: one worker)
    low, high = (seeds[:half], seeds[half:]) if len(seeds) >= 4 else (seeds, [])
    parallel(args, config, [[([stacked], low)], [([stacked], high)] if high else []])
    # 5. gather (with quality), report, JSON; then everything else, and again: the claim is
    #    against the best of all cheap baselines (a budget cut short still leaves the first result)
    first = ["real", "control", "oversample", stacked]
    if not args.gather_last:
        _gather(args, dataset, split_object, config, first, checkpoint, best, start)
    # 6. the other cheap baselines; the synthetic set on the other base; and label-filtered
    other = "oversample+gan" if best == "real" else "real+gan"
    filtered = f"{stacked}:filtered"  # one call, all seeds: the judge is the real arm's first seed
    bases = [b for b in BASES if b not in args.without]
    extras = [] if args.no_other else [other]
    spread(
        args,
        config,
        [b for b in bases if b not in first] + extras,
        seeds,
        whole=[] if args.no_other else [filtered],
    )
    arms = [*bases, stacked, *extras] + ([] if args.no_other else [filtered])
    if not args.gather_last:
        _gather(args, dataset, split_object, config, arms, checkpoint, best, start)
    # 7. how synthetic crops enter (own folders, fixed steps, same seeds: paired with step 6)
    steps = done["config"]["steps"]
    variants = {k: v for k, v in VARIANTS.items() if k in args.variants}
    for name, overrides in variants.items():
        spread(args, config, [stacked], seeds, overrides={**overrides, "steps": steps, "out": f"eval_{name}"})
    extra = {"synthetic_use": synthetic_use(args.work, stacked, seeds, variants)} if variants else {}
    # 8. the copy-paste family: harmonized real defects on the better synthetic arm's base
    if args.harmonized:
        harmonized = work / SETS["harmonized"]
        sh([*cli, "synth", str(DATA), "--checkpoint", str(checkpoint), "--split", str(split),
            "--n", str(args.harmonized), "--out", str(harmonized), "--seed", "0",
            "--mode", "harmonize"])  # fmt: skip
        gan_arms = [stacked, *extras]
        done = evaluate(dataset, split_object, work / "eval", replace(config, arms=gan_arms,
                        quality_samples=0), synthetic=_sets(work), progress=False)  # fmt: skip
        gan_arm = max(gan_arms, key=lambda arm: _validation_dice(done, arm))
        base = gan_arm.split("+")[0]
        spread(args, config, [f"{base}+harmonized"], seeds)
        arms = [*arms, f"{base}+harmonized"]
        if not args.gather_last:
            _gather(args, dataset, split_object, config, arms, checkpoint, best, start)
        pairs = {"blendpaste - copypaste": ("blendpaste", "copypaste"),
                 f"{base}+harmonized - {gan_arm}": (f"{base}+harmonized", gan_arm),
                 f"{base}+harmonized - blendpaste": (f"{base}+harmonized", "blendpaste")}  # fmt: skip
        extra["copy_paste"] = {
            name: paired_arms(work / "eval", a, b, seeds)
            for name, (a, b) in pairs.items()
            if b in arms and a in arms
        }
    # 9. no defect-free images: the same generator paints on the training half's defect images
    #    (defect-free ones withheld from synthesis), against painting on the defect-free ones
    if args.backgrounds:
        for source in ("labelled", "cleaned"):
            sh([*cli, "synth", str(DATA), "--checkpoint", str(checkpoint), "--split", str(split),
                "--n", str(args.backgrounds), "--out", str(work / SETS[source]), "--seed", "0",
                "--background-source", source])  # fmt: skip
        base = stacked.split("+")[0]
        spread(args, config, [f"{base}+labelled", f"{base}+cleaned"], seeds)
        arms = [*arms, f"{base}+labelled", f"{base}+cleaned"]
        if not args.gather_last:
            _gather(args, dataset, split_object, config, arms, checkpoint, best, start)
        extra["backgrounds"] = {
            f"{base}+{a} - {b}": paired_arms(work / "eval", f"{base}+{a}", b, seeds)
            for a, b in (("labelled", stacked), ("cleaned", stacked), ("cleaned", f"{base}+labelled"))
        }
    if args.gather_last:
        _gather(args, dataset, split_object, config, arms, checkpoint, best, start)
    print(json.dumps(extra, indent=1))
    if not args.smoke:  # the stages' extras this run did not measure stay as they were
        path.write_text(json.dumps({**previous, **json.loads(path.read_text()), **extra}, indent=1) + "\n")


VARIANTS = {"share_0.25": {"synthetic_share": 0.25}, "until_0.5": {"synthetic_until": 0.5}}


def spread(args, config, arms: list[str], seeds: list[int], whole=(), overrides=None) -> None:
    """Run `arms` x `seeds` (and each arm of `whole` with all seeds in one call) in two
    single-thread workers, balanced by the runs not yet on disk."""
    overrides = overrides or {}
    runs = args.work / overrides.get("out", "eval") / "runs"
    half = (len(seeds) + 1) // 2  # each call needs >= 2 seeds
    chunks = [seeds[:half], seeds[half:]] if len(seeds) >= 4 else [seeds]
    jobs = [(arm, chunk) for arm in arms for chunk in chunks] + [(arm, seeds) for arm in whole]

    def todo(job):
        arm, chunk = job
        return sum(not (runs / f"{arm}_s{seed}.json").exists() for seed in chunk)

    workers, load = [[], []], [0, 0]
    for job in sorted(jobs, key=todo, reverse=True):
        lighter = load.index(min(load))
        workers[lighter].append(([job[0]], job[1], overrides))
        load[lighter] += todo(job)
    parallel(args, config, workers)


def synthetic_use(work: Path, arm: str, seeds: list[int], variants: dict) -> dict:
    """Each variant's runs of `arm` against the default's, paired by seed (positive Dice etc.)."""
    return {
        name: {
            "overrides": overrides,
            "arm": arm,
            "vs_default": paired_arms(work / "eval", arm, arm, seeds, folder_a=work / f"eval_{name}"),
        }
        for name, overrides in variants.items()
    }


def paired_arms(folder: Path, arm_a: str, arm_b: str, seeds: list[int], folder_a: Path | None = None) -> dict:
    """Arm a minus arm b (runs in `folder`/runs, a's in `folder_a`/runs if given), paired by seed
    and test image: per metric, the difference with its seed-aware 95 % interval."""
    import numpy as np

    from defectgen.evaluate.metrics import contributions, paired_difference
    from defectgen.evaluate.run import PAIRED_METRICS

    def arrays(where: Path, arm: str) -> list[dict]:
        out = []
        for seed in seeds:
            with np.load(where / "runs" / f"{arm}_s{seed}.npz") as data:
                out.append({k: data[k] for k in data.files})
        return out

    a, b = arrays(folder_a or folder, arm_a), arrays(folder, arm_b)
    return {
        metric: paired_difference(
            [contributions(x, metric) for x in a], [contributions(x, metric) for x in b]
        )
        for metric in PAIRED_METRICS
    }


def _gather(args, dataset, split_object, config, arms, checkpoint, best, start) -> None:
    from defectgen.evaluate import evaluate

    work = args.work
    sets = {name: path for name, path in _sets(work).items() if any(f"+{name}" in arm for arm in arms)}
    results = evaluate(dataset, split_object, work / "eval", replace(config, arms=arms),
                       synthetic=sets, checkpoint=checkpoint)  # fmt: skip
    sh([sys.executable, "-m", "defectgen", "report", str(work / "eval")])
    minutes = (time.time() - start) / 60
    summary = mission_summary(results, args, minutes, best)
    if not args.smoke:
        (REPO / "benchmarks" / "mission_result.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(markdown_table(results))
    print(json.dumps({k: summary[k] for k in ("claim", "noise_floor")}, indent=1))
    print(f"total {minutes:.0f} min", flush=True)


def _validation_dice(results: dict, arm: str) -> float:
    values = [r["validation"]["mean_positive_dice"] or 0.0 for r in results["runs"] if r["arm"] == arm]
    return sum(values) / len(values)


def mission_summary(results: dict, args, minutes: float, best_base: str) -> dict:
    def metrics(test: dict) -> dict:
        keys = ("mean_positive_dice", "kaggle_dice", "fp_rate_defect_free", "mean_auroc")
        return {k: test[k] for k in keys} | {"positive_dice": test["positive_dice"]}

    arms = results["config"]["arms"]
    return {
        "benchmark": "benchmarks/mission_magnetic_tile.py",
        "command": "python benchmarks/mission_magnetic_tile.py " + " ".join(sys.argv[1:]),
        "machine": "dev-cpu, 2 cores",
        "versions": results.get("versions"),  # numerics differ across library versions
        "minutes_this_invocation": round(minutes, 1),  # earlier invocations: see RESULTS.md
        "dataset": "magnetic tile",
        "label_fraction": args.label_fraction,
        "gan_steps": args.gan_steps,
        "synthetic_images": args.synthetic,
        "segmenter_steps": results["config"]["steps"],
        "step_selection": {
            k: results["step_selection"][k] for k in ("chosen", "flattened", "late_gain", "curve")
        }
        if results.get("step_selection")
        else None,
        "arms": arms,
        "seeds": results["config"]["seeds"],
        "best_base_by_validation": best_base,
        "per_seed": {arm: [metrics(r["test"]) for r in results["runs"] if r["arm"] == arm] for arm in arms},
        "mean": {
            arm: {
                k: results["summary"][arm][k]
                for k in ("mean_positive_dice", "kaggle_dice", "fp_rate_defect_free", "mean_auroc")
            }
            for arm in arms
        },
        "paired_vs_real": {arm: results["paired"][arm]["mean_positive_dice"] for arm in results["paired"]},
        "noise_floor": results["noise_floor"],
        "claim": results["claim"],
        "label_fidelity": {
            name: (q.get("label_fidelity") or {}).get("synthetic", {}).get("mean_positive_dice")
            for name, q in (results.get("quality") or {}).items()
        },
    }


def markdown_table(results: dict) -> str:
    from defectgen.evaluate import RESULT_COLUMNS, result_rows

    lines = ["| " + " | ".join(RESULT_COLUMNS) + " |", "| --- |" + " ---: |" * (len(RESULT_COLUMNS) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in result_rows(results)]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
