"""The mission benchmark: the whole protocol on the real magnetic tile dataset.

    .venv/bin/python benchmarks/mission_magnetic_tile.py [--label-fraction 0.25] [--gan-steps 3000]
        [--work bench_runs/mission] [--synthetic 1000] [--seeds 3]
        [--arms real,oversample,copypaste,synthetic]
    .venv/bin/python benchmarks/mission_magnetic_tile.py --smoke      # minutes: checks the plumbing only

Steps: 50/50 stratified split (seed 0) at the label fraction; the `small` generator trained on
the labelled training half; `--synthetic` images painted on defect-free training images; the
step count chosen once on the real arm (validation part of the training half); every arm x
seed; report. After the real arm's first seed, the remaining (arm, seed) runs go to two
single-thread processes side by side (on 2 cores that is faster than one 2-thread process:
small convolutions do not scale to two threads), then one more call gathers them. Every
stage is resumable: run the same command again after an interruption. Prints the results
table and appends it, with the command and date, to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "magnetic_tile"


def run(command: list[str], threads: int = 2, background: bool = False):
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    printable = " ".join(command)
    print(f"$ {printable}", flush=True)
    if background:
        return subprocess.Popen(command, env=env)
    subprocess.run(command, env=env, check=True)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label-fraction", type=float, default=0.25)
    parser.add_argument("--gan-steps", type=int, default=3000)
    parser.add_argument("--synthetic", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--arms", default="real,oversample,copypaste,synthetic")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--max-steps", type=int, default=1500)
    parser.add_argument("--eval-every", type=int, default=150)
    parser.add_argument("--work", type=Path, default=REPO / "bench_runs" / "mission")
    parser.add_argument("--smoke", action="store_true", help="tiny settings: checks the plumbing in minutes")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args()
    if not DATA.exists():
        raise SystemExit(f"magnetic tile data not found at {DATA}")
    preset, gan_sets = "small", []
    if args.smoke:
        preset, args.gan_steps, args.synthetic, args.seeds = "tiny", 20, 40, 2
        args.max_steps, args.eval_every, args.size = 40, 20, 64
        gan_sets = ["--set", "batch_size=2"]
        args.no_record = True
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    cli = [sys.executable, "-m", "defectgen"]
    start = time.time()
    split = work / f"split_{args.label_fraction}.json"
    run(
        [
            *cli,
            "split",
            str(DATA),
            "--out",
            str(split),
            "--test-fraction",
            "0.5",
            "--seed",
            "0",
            "--label-fraction",
            str(args.label_fraction),
        ]
    )
    gan = work / "gan"
    last = gan / "checkpoints" / "last.pt"
    run(
        [
            *cli,
            "train",
            str(DATA),
            "--split",
            str(split),
            "--out",
            str(gan),
            "--preset",
            preset,
            "--steps",
            str(args.gan_steps),
            "--set",
            "sample_every=500",
            "--set",
            "checkpoint_every=250",
            *gan_sets,
            *(["--resume"] if gan.exists() else []),
        ]
    )
    gan_minutes = (time.time() - start) / 60
    synth = work / "synthetic"
    run(
        [
            *cli,
            "synth",
            str(DATA),
            "--checkpoint",
            str(last),
            "--split",
            str(split),
            "--n",
            str(args.synthetic),
            "--out",
            str(synth),
            "--seed",
            "0",
        ]
    )
    evaluation = work / "eval"
    common = [
        *cli,
        "evaluate",
        str(DATA),
        "--split",
        str(split),
        "--synthetic",
        str(synth),
        "--checkpoint",
        str(last),
        "--out",
        str(evaluation),
        "--size",
        str(args.size),
        "--max-steps",
        str(args.max_steps),
        "--eval-every",
        str(args.eval_every),
    ]
    arms = [a for a in args.arms.split(",") if a]
    run([*common, "--arms", "real", "--seeds", "1"])  # chooses the step count, trains real seed 0
    others = [a for a in arms if a != "real"]
    halves = [["real", *others[: len(others) // 2]], others[len(others) // 2 :]]
    processes = [
        run([*common, "--arms", ",".join(h), "--seeds", str(args.seeds)], threads=1, background=True)
        for h in halves
        if h
    ]
    codes = [p.wait() for p in processes]
    if any(codes):
        raise SystemExit(f"an evaluation process failed ({codes}); run the same command again to continue")
    run([*common, "--arms", ",".join(arms), "--seeds", str(args.seeds)])
    run([*cli, "report", str(evaluation)])
    minutes = (time.time() - start) / 60
    results = json.loads((evaluation / "results.json").read_text())
    table = markdown_table(results)
    print(table)
    print(f"total {minutes:.0f} min (GAN {gan_minutes:.0f} min)")
    if not args.no_record:
        command = "python benchmarks/mission_magnetic_tile.py " + " ".join(sys.argv[1:])
        with open(REPO / "benchmarks" / "RESULTS.md", "a") as handle:
            handle.write(
                f"\n## Mission: magnetic tile, label fraction {args.label_fraction} "
                f"({datetime.date.today()})\n\n`{command}` — dev-cpu, {minutes:.0f} min "
                f"(GAN {args.gan_steps} steps of `{preset}`; {args.synthetic} synthetic images; "
                f"{results['config']['steps']} segmenter steps chosen on the real arm).\n\n{table}\n"
            )


def markdown_table(results: dict) -> str:
    from defectgen.evaluate import RESULT_COLUMNS, result_rows

    lines = ["| " + " | ".join(RESULT_COLUMNS) + " |", "| --- |" + " ---: |" * (len(RESULT_COLUMNS) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in result_rows(results)]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
