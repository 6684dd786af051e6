"""Synthesis without defect-free images, on a crack-like dataset: `labelled` against `cleaned`.

    python benchmarks/backgrounds_crack.py [--images 118] [--gan-steps 600] [--synthetic 300]
        [--seeds 5] [--steps 300] [--work bench_runs/crack] [--smoke]

The dataset is the layout a user with a public crack set arrives with (issue 21): 118 labelled
480x320 images, one class, every image holding a defect, `images/` + binary `masks/`. It is
painted here by the project's own demo generator (its "crack" class: dark, jagged, branching
lines), so nothing is downloaded. Then the protocol: a split (half for test), a `small`
generator on the training half, two synthetic sets of the same size from the two background
sources a set without defect-free images can use, and `evaluate` with paired seeds on `real`,
`real+labelled` and `real+cleaned`. Writes `benchmarks/backgrounds_crack.json`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CRACK = 4  # the demo generator's crack class


def make_dataset(root: Path, images: int, seed: int = 0) -> Path:
    """`images` 480x320 gray images with 1-2 demo cracks each: images/ + masks/ (0/255)."""
    from defectgen.data.demo import render_demo_image

    if (root / "images").is_dir() and len(list((root / "images").iterdir())) == images:
        return root
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for index, child in enumerate(np.random.SeedSequence(seed).spawn(images)):
        rng = np.random.default_rng(child)
        _, image, masks = render_demo_image(rng, 320, 480, [CRACK] * (1 + index % 2))
        Image.fromarray(image).save(root / "images" / f"crack_{index:04d}.png")
        Image.fromarray((masks[CRACK - 1] * 255).astype(np.uint8)).save(
            root / "masks" / f"crack_{index:04d}.png"
        )
    return root


def sh(command: list[str]) -> None:
    print("$ " + " ".join(command), flush=True)
    subprocess.run(command, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=118)
    parser.add_argument("--gan-steps", type=int, default=600)
    parser.add_argument("--synthetic", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--work", type=Path, default=REPO / "bench_runs" / "crack")
    parser.add_argument("--smoke", action="store_true", help="tiny settings: checks the plumbing")
    args = parser.parse_args()
    preset, extra = "small", []
    if args.smoke:
        preset, extra = "tiny", ["--set", "batch_size=2", "--set", "model.resolution=64"]
        args.images, args.gan_steps, args.synthetic, args.seeds, args.steps, args.size = 16, 4, 8, 2, 4, 64
    start = time.time()
    work = args.work
    data = make_dataset(work / "data", args.images)
    cli = [sys.executable, "-m", "defectgen"]
    split = work / "split.json"
    if not split.exists():
        sh([*cli, "split", str(data), "--out", str(split), "--test-fraction", "0.5", "--seed", "0"])
    checkpoint = work / "gan" / "checkpoints" / f"step_{args.gan_steps:07d}.pt"
    if not checkpoint.exists():
        sh([*cli, "train", str(data), "--split", str(split), "--out", str(work / "gan"), "--preset", preset,
            "--steps", str(args.gan_steps), "--set", f"checkpoint_every={args.gan_steps}", *extra,
            *(["--resume"] if (work / "gan").exists() else [])])  # fmt: skip
    sets = {}
    for source in ("labelled", "cleaned"):
        out = work / f"synthetic_{source}"
        sh([*cli, "synth", str(data), "--checkpoint", str(checkpoint), "--split", str(split),
            "--n", str(args.synthetic), "--out", str(out), "--seed", "0",
            "--background-source", source])  # fmt: skip
        sets[source] = out

    from defectgen.data import open_dataset
    from defectgen.data.split import Split
    from defectgen.evaluate import EvalConfig, evaluate

    sys.path.insert(0, str(REPO / "benchmarks"))
    from mission_magnetic_tile import paired_arms

    config = replace(
        EvalConfig(),
        arms=["real", "real+labelled", "real+cleaned"],
        seeds=list(range(args.seeds)),
        steps=args.steps,
        crop_size=args.size,
        quality_samples=0,
    )
    results = evaluate(open_dataset(str(data)), Split.load(split), work / "eval", config, synthetic=sets)
    seeds = config.seeds
    summary = {
        "benchmark": "backgrounds_crack",
        "command": "python benchmarks/backgrounds_crack.py " + " ".join(sys.argv[1:]),
        "dataset": f"{args.images} demo-crack images 480x320, one class, no defect-free image",
        "gan": {"preset": preset, "steps": args.gan_steps},
        "synthetic_images": args.synthetic,
        "segmenter_steps": args.steps,
        "seeds": seeds,
        "mean_positive_dice": {
            arm: float(
                np.mean([r["test"]["mean_positive_dice"] or 0.0 for r in results["runs"] if r["arm"] == arm])
            )
            for arm in config.arms
        },
        "paired": {
            f"{a} - {b}": paired_arms(work / "eval", a, b, seeds)
            for a, b in (
                ("real+labelled", "real"),
                ("real+cleaned", "real"),
                ("real+cleaned", "real+labelled"),
            )
        },
        "minutes": round((time.time() - start) / 60, 1),
    }
    print(json.dumps(summary, indent=1))
    if not args.smoke:
        (REPO / "benchmarks" / "backgrounds_crack.json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
