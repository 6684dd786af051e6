"""`defectgen demo`: the whole idea, end to end, on embedded data, in minutes.

generate data -> split -> train the GAN -> synthesize -> evaluate -> report, in one folder.
Every stage is deterministic and resumable: running the demo again continues where it
stopped (finished stages are kept, an interrupted GAN run resumes from its checkpoint).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from defectgen.data import open_dataset
from defectgen.data.demo import generate_demo, write_demo_sheet
from defectgen.data.split import Split, fit_split, make_split
from defectgen.evaluate import EvalConfig, evaluate
from defectgen.fileio import claim_folder
from defectgen.gan.checkpoint import CheckpointError, load_checkpoint
from defectgen.gan.config import TrainConfig
from defectgen.gan.train import train
from defectgen.report import write_report
from defectgen.synth import synthesize
from defectgen.synth_config import SynthConfig
from defectgen.ui import say


@dataclass(frozen=True)
class DemoPlan:
    images: int
    gan_steps: int
    synthetic: int
    arms: tuple[str, ...]
    seeds: int
    segmenter_steps: int
    crop_size: int
    curve: bool  # the real arm's learning curve (two more short runs)
    quality_samples: int
    size: tuple[int, int] = (256, 1600)  # (height, width) of the strips: Severstal's


# Sized so that `make demo` on a fresh clone, installation included, fits 10 minutes on 2 cores
# (timings: benchmarks/RESULTS.md); the quick plan runs in the test suite.
FULL = DemoPlan(
    images=64,
    gan_steps=400,
    synthetic=64,
    arms=("real", "oversample", "copypaste", "real+synthetic"),
    seeds=2,
    segmenter_steps=150,
    crop_size=64,
    curve=True,
    quality_samples=40,
)
QUICK = DemoPlan(
    images=24,
    gan_steps=30,
    synthetic=16,
    arms=("real", "real+synthetic"),
    seeds=2,
    segmenter_steps=20,
    crop_size=64,
    curve=False,  # the test suite's run: the plumbing, not the curve's figures
    quality_samples=16,
    size=(128, 800),  # scoring full strips was half the run
)


DEMO_ENTRIES = {
    "data",
    "data_sheet.png",
    "split.json",
    "fit_split.json",
    "gan",
    "synthetic",
    "eval",
}  # what a demo writes


def run_demo(out_dir: Path, quick: bool = False, progress: bool = True) -> dict:
    plan = QUICK if quick else FULL
    out_dir = Path(out_dir)
    claim_folder(out_dir, "demo", legacy=lambda folder: {p.name for p in folder.iterdir()} <= DEMO_ENTRIES)
    _stage("1/6 generating the demo dataset (steel-like strips, 4 defect classes)")
    height, width = plan.size
    data_dir = generate_demo(
        out_dir / "data", n_images=plan.images, height=height, width=width, seed=0, progress=progress
    )
    write_demo_sheet(data_dir, out_dir / "data_sheet.png")
    dataset = open_dataset(str(data_dir))

    _stage("2/6 splitting 50/50, stratified by class")
    split_file = out_dir / "split.json"
    split = make_split(dataset, test_fraction=0.5, seed=0)
    if not split_file.exists() or Split.load(split_file) != split:
        split.save(split_file)
    # The generator and its set see the fit part only, as in `defectgen experiment`: the
    # evaluation's validation part stays unseen, so the set can carry the claim.
    generator_split = fit_split(split, dataset, EvalConfig().val_fraction)
    generator_split.save(out_dir / "fit_split.json")

    _stage(f"3/6 training the inpainting GAN (tiny preset, {plan.gan_steps} steps)")
    run_dir = out_dir / "gan"
    config = TrainConfig(
        preset="tiny",
        model={"resolution": 64},
        steps=plan.gan_steps,
        batch_size=4,
        sample_every=100,
        checkpoint_every=50,
        log_every=10,
    )
    checkpoint = run_dir / "checkpoints" / "last.pt"
    if _finished_step(checkpoint) != plan.gan_steps:
        train(dataset, generator_split, config, run_dir, resume=run_dir.exists(), progress=progress)

    _stage(f"4/6 painting {plan.synthetic} synthetic defect images with their labels")
    synth_dir = out_dir / "synthetic"
    synthesize(
        checkpoint,
        dataset,
        generator_split,
        synth_dir,
        SynthConfig(n=plan.synthetic, seed=0, format="severstal"),
        progress=progress,
    )

    _stage(
        f"5/6 evaluating: {', '.join(plan.arms)} x {plan.seeds} seed(s), {plan.segmenter_steps} steps each"
    )
    # The mission's protocol (EvalConfig defaults) at the demo's scale: fewer arms, seeds and steps.
    eval_config = replace(
        EvalConfig(),
        arms=list(plan.arms),
        seeds=list(range(plan.seeds)),
        steps=plan.segmenter_steps,
        crop_size=plan.crop_size,
        curve=plan.curve,
        quality_samples=plan.quality_samples,
        diversity_masks=8,
    )
    results = evaluate(
        dataset,
        split,
        out_dir / "eval",
        eval_config,
        synthetic={"synthetic": synth_dir},
        checkpoint=checkpoint,
        split_file=split_file,
        progress=progress,
    )

    _stage("6/6 writing the report")
    report = write_report(out_dir / "eval")
    summary = {"report": str(report), "results": str(out_dir / "eval" / "results.json"), "quick": quick}
    (out_dir / "demo.json").write_text(json.dumps(summary, indent=1) + "\n")
    return {**summary, "results_data": results}


def _finished_step(checkpoint: Path) -> int | None:
    if not checkpoint.exists():
        return None
    try:
        return int(load_checkpoint(checkpoint)["step"])
    except CheckpointError:
        return None


def _stage(text: str) -> None:
    say(("demo", "bold cyan"), f" {text}")
