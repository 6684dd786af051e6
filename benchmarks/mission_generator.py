"""A new generator judged by the mission's instrument, reusing the mission's finished runs.

    .venv/bin/python benchmarks/mission_generator.py --checkpoint RUN/checkpoints/step_0001000.pt \
        --name gan5 [--n 500] [--work bench_runs/mission] [--processes 2] [--base oversample]

1. `defectgen synth` of --n images from --checkpoint into WORK/synthetic_NAME (real mask bank,
   defect-free training backgrounds, seed 0), as the mission's own GAN set was made;
2. evaluate of BASE+NAME, every seed of the mission, in the mission's evaluation folder with
   the mission's own settings (read from its results.json, so every finished run (BASE, BASE+gan,
   the cheap baselines) is reused, not trained again), under torchrun with --processes
   single-thread processes sharing the runs; the mission's results.json is put back after;
3. label fidelity (the mission's real arm, seed 0, as the independent judge), KID and diversity
   of both generators' sets (`evaluate.measure_quality`), and the paired differences of
   BASE+NAME against BASE, BASE+gan (the mission's generator) and the mission's best cheap
   baseline, written under `new_generator` in `benchmarks/mission_result.json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "magnetic_tile"
sys.path.insert(0, str(REPO / "benchmarks"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--name", required=True, help="synthetic set name (letters, digits)")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--work", type=Path, default=REPO / "bench_runs" / "mission")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--base", default="oversample")
    parser.add_argument("--recipe", default="", help="how the generator was trained (recorded)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    from defectgen.data import open_dataset
    from defectgen.data.split import Split
    from defectgen.evaluate import EvalConfig, measure_quality
    from mission_magnetic_tile import paired_arms

    start = time.time()
    split = args.work / "split_0.25.json"
    synth = args.work / f"synthetic_{args.name}"
    cli = [sys.executable, "-m", "defectgen"]
    run([*cli, "synth", str(DATA), "--checkpoint", str(args.checkpoint), "--split", str(split),
         "-n", str(args.n), "--out", str(synth), "--seed", "0"], threads=2)  # fmt: skip
    eval_dir = args.work / "eval"
    mission = json.loads((eval_dir / "results.json").read_text())
    fields = {f.name for f in dataclasses.fields(EvalConfig)}
    settings = {k: v for k, v in mission["config"].items() if k in fields}
    arm = f"{args.base}+{args.name}"
    arms = [args.base, f"{args.base}+gan", arm]
    # The mission's own settings, so its finished runs are reused; evaluate rewrites results.json
    # for the arms it is given, so the mission's is put back afterwards.
    kept = (eval_dir / "results.json").read_bytes()
    try:
        launcher = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={args.processes}",
        ]
        job = json.dumps({**settings, "arms": arms, "quality_samples": 0})
        run([*launcher, __file__, "--worker", job, "--work", str(args.work), "--name", args.name,
             "--checkpoint", str(args.checkpoint)], threads=1)  # fmt: skip
    finally:
        (eval_dir / "results.json").write_bytes(kept)
    seeds = settings["seeds"]
    dataset, split_object = open_dataset(str(DATA)), Split.load(split)
    judge_seed = 0
    quality = measure_quality(
        dataset, split_object, eval_dir, EvalConfig(**{**settings, "arms": arms}),
        {"gan": args.work / "synthetic", args.name: synth}, args.checkpoint, judge_seed,
    )  # fmt: skip
    cheap = mission.get("claim", {}).get("best_cheap_baseline") if mission.get("claim") else None
    against = [args.base, f"{args.base}+gan"] + ([cheap] if cheap and cheap not in (args.base,) else [])
    record = {
        "recipe": args.recipe,
        "checkpoint": str(args.checkpoint),
        "set": args.name,
        "images": args.n,
        "arm": arm,
        "seeds": seeds,
        "command": "python benchmarks/mission_generator.py " + " ".join(sys.argv[1:]),
        "machine": f"dev-cpu, 2 cores, {args.processes} single-thread torchrun processes",
        "minutes": round((time.time() - start) / 60, 1),
        "test_mean_positive_dice": {
            name: _mean_test(eval_dir, name, seeds) for name in [*arms, *([cheap] if cheap else [])]
        },
        "paired": {f"{arm} - {other}": paired_arms(eval_dir, arm, other, seeds) for other in against},
        "quality": quality,
    }
    path = REPO / "benchmarks" / "mission_result.json"
    summary = json.loads(path.read_text())
    summary["new_generator"] = record
    path.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({k: record[k] for k in ("test_mean_positive_dice", "paired")}, indent=1)[:6000])


def worker(args) -> None:
    """One torchrun process: the mission's evaluate with the given settings (runs shared out)."""
    from defectgen.data import open_dataset
    from defectgen.data.split import Split
    from defectgen.evaluate import EvalConfig, evaluate

    dataset = open_dataset(str(DATA))
    split = Split.load(args.work / "split_0.25.json")
    sets = {"gan": args.work / "synthetic", args.name: args.work / f"synthetic_{args.name}"}
    evaluate(dataset, split, args.work / "eval", EvalConfig(**json.loads(args.worker)), synthetic=sets,
             progress=False)  # fmt: skip


def _mean_test(eval_dir: Path, arm: str, seeds: list[int]) -> float:
    values = [json.loads((eval_dir / "runs" / f"{arm}_s{s}.json").read_text())["test"]["mean_positive_dice"]
              for s in seeds]  # fmt: skip
    return round(sum(values) / len(values), 4)


def run(command: list[str], threads: int) -> None:
    print("$ " + " ".join(command), flush=True)
    subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})


if __name__ == "__main__":
    main()
