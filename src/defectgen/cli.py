"""The `defectgen` command: verbs -> API calls. Argument parsing and user errors only.

Every user error (`DefectgenError`) is printed on one line and exits with code 2, without a
traceback; typer/click already do the same for unknown options and wrong types.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import re
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from defectgen import launch
from defectgen.cli_config import config_options
from defectgen.data.split import SplitConfig
from defectgen.errors import ConfigError, DefectgenError
from defectgen.evaluate.config import DEFAULT_ARMS, EvalConfig
from defectgen.experiment import ExperimentConfig
from defectgen.fileio import check_replaceable, starts_with
from defectgen.gan.config import TrainConfig
from defectgen.studio_config import StudioConfig
from defectgen.synth_config import SynthConfig
from defectgen.ui import out, say

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Labelled synthetic defect images from a small annotated set.",
)

DataArg = Annotated[
    str,
    typer.Argument(
        metavar="DATA",
        help="severstal:CSV[,IMAGES_DIR], folder:PATH, or a dataset folder.",
        show_default=False,
    ),
]
SkipBad = Annotated[bool, typer.Option("--skip-bad", help="Report and skip bad items instead of stopping.")]
LabelsComplete = Annotated[
    str,
    typer.Option(
        "--labels-complete",
        metavar="BOOL",
        help="Severstal: do the CSV rows cover every image? 'false' leaves images without rows "
        "out instead of calling them defect-free.",
    ),
]
CoveredIds = Annotated[
    Path | None,
    typer.Option(
        "--covered-ids",
        help="Severstal: text file of ImageIds the CSV covers (implies --labels-complete false).",
    ),
]

ImageSize = Annotated[
    str | None,
    typer.Option(
        "--image-size",
        metavar="WxH",
        help="Severstal-style CSV: the image size its runs are for, when no image folder is given "
        "(default 1600x256, Kaggle's strips). With images, each image's own size is used and this "
        "becomes a size every image must have.",
    ),
]


def _parse_size(value: str | None) -> tuple[int, int] | None:
    """'1600x256' -> (256, 1600), i.e. (H, W); None stays None."""
    if value is None:
        return None
    match = re.fullmatch(r"\s*(\d{1,6})\s*[xX×]\s*(\d{1,6})\s*", value)
    if not match or 0 in (width := int(match[1]), height := int(match[2])):
        raise ConfigError(f"--image-size takes WIDTHxHEIGHT in pixels, e.g. 1600x256; got {value!r}")
    return height, width


def _parse_bool(value: str, option: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "yes", "1", "on"):
        return True
    if lowered in ("false", "no", "0", "off"):
        return False
    raise ConfigError(f"{option} takes true or false, got {value!r}")


def _open(data: str, skip_bad: bool, labels_complete: str, covered_ids: Path | None, image_size: str | None):
    from defectgen.data import open_dataset

    dataset = open_dataset(
        data,
        skip_bad=skip_bad,
        labels_complete=_parse_bool(labels_complete, "--labels-complete"),
        covered_ids=covered_ids,
        image_shape=_parse_size(image_size),
    )
    for note in dataset.notes:
        say(("note:", "dim"), " ", note)
    if dataset.skipped:
        first = dataset.skipped[0]
        say(
            (f"skipped {len(dataset.skipped)} bad item(s)", "yellow"),
            f"; first: {first.item_id}: {first.reason}",
        )
    return dataset


@app.command()
def inspect(
    data: DataArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    sheet: Annotated[Path | None, typer.Option(help="Where to write the contact sheet PNG.")] = Path(
        "contact_sheet.png"
    ),
    no_sheet: Annotated[bool, typer.Option("--no-sheet", help="Do not draw a contact sheet.")] = False,
    skip_bad: SkipBad = False,
    labels_complete: LabelsComplete = "true",
    covered_ids: CoveredIds = None,
    image_size: ImageSize = None,
):
    """Counts per class, mask areas, image sizes, and a contact sheet with masks overlaid.

    Example: defectgen inspect ../shared/data/magnetic_tile --sheet tiles.png
    """
    from defectgen.data.inspect import inspect_dataset, write_contact_sheet

    if not no_sheet and sheet is not None:
        check_replaceable(sheet, "contact sheet", lambda p: starts_with(p, b"\x89PNG"), suffix=".png")
    dataset = _open(data, skip_bad, labels_complete, covered_ids, image_size)
    summary = inspect_dataset(dataset, skip_bad=skip_bad)
    has_images = any(item.image_path for item in dataset.items)
    if not no_sheet and sheet is not None and has_images:
        summary["contact_sheet"] = str(write_contact_sheet(dataset, sheet))
    if as_json:
        out.print_json(json.dumps(summary))
        return
    table = Table(title=f"{dataset.spec}: {summary['items']} images, {summary['defect_free']} defect-free")
    for column in ("class", "images", "area min", "median", "p90", "max"):
        table.add_column(column, justify="right")
    for name, count in summary["images_per_class"].items():
        a = summary["mask_area_pixels"][name]
        table.add_row(name, str(count), *(str(a.get(k, "-")) for k in ("min", "median", "p90", "max")))
    out.print(table)
    common = summary["image_sizes"]["most_common"]
    out.print(
        "image sizes: "
        + ", ".join(f"{c['width']}x{c['height']} ({c['count']})" for c in common)
        + f"; {summary['image_sizes']['distinct']} distinct"
    )
    if summary["empty_masks"]["count"]:
        empty = summary["empty_masks"]
        say(
            (f"{empty['count']} labelled images have an empty mask after thresholding", "yellow"),
            f" (e.g. {empty['items'][0]})",
            to=out,
        )
    if summary["unreadable"]["count"]:
        say((f"{summary['unreadable']['count']} unreadable items skipped", "yellow"), to=out)
    if "contact_sheet" in summary:
        out.print(f"contact sheet: {summary['contact_sheet']}")


@app.command()
@config_options(SplitConfig)
def split(
    data: DataArg,
    out_path: Annotated[Path, typer.Option("--out", help="Split file to write.")] = Path("split.json"),
    fit_out: Annotated[
        Path | None,
        typer.Option(
            "--fit-out",
            help="Also write the fit part as a split for `train` and `synth`: the training half without "
            "the evaluation's validation part, so a generator never sees the images its claim is chosen on.",
        ),
    ] = None,
    skip_bad: SkipBad = False,
    labels_complete: LabelsComplete = "true",
    covered_ids: CoveredIds = None,
    image_size: ImageSize = None,
    *,
    config,
):
    """Deterministic train/test split, stratified by class presence, written to a file.

    Example: defectgen split ../shared/data/magnetic_tile --out split.json --test-fraction 0.5 --seed 0
    """
    from defectgen.data.split import fit_split, make_split, split_report

    settings = config()
    if fit_out is not None and fit_out.resolve() == out_path.resolve():
        raise ConfigError(f"--fit-out {fit_out} is the --out file: give the fit part its own file")
    dataset = _open(data, skip_bad, labels_complete, covered_ids, image_size)
    result = make_split(
        dataset, settings.test_fraction, settings.seed, settings.label_fraction, settings.layout
    )
    result.save(out_path)
    if fit_out is not None:
        fit_split(result, dataset, settings.val_fraction).save(fit_out)
    report = split_report(result, dataset)
    if report["train"]["items"] == report["train"]["defect_free"]:
        say(
            ("warning:", "yellow"),
            " the training half holds no defect images, so `train` and `evaluate` have nothing to "
            "learn defects from"
            + (
                " (MVTec AD keeps every defect in test/); split without --layout-split"
                if settings.layout
                else ""
            ),
        )
    table = Table(title=f"split of {dataset.spec} (seed {settings.seed})")
    parts = list(report)
    table.add_column("")
    for part in parts:
        table.add_column(part, justify="right")
    for key in report["train"]:
        table.add_row(key, *(str(report[p][key]) for p in parts))
    out.print(table)
    out.print(f"wrote {out_path}" + (f" and its fit part {fit_out}" if fit_out is not None else ""))


@app.command()
@config_options(TrainConfig)
def train(
    data: DataArg,
    split_path: Annotated[Path, typer.Option("--split", help="Split file from `defectgen split`.")],
    out_dir: Annotated[
        Path, typer.Option("--out", help="Run folder (config, metrics, checkpoints, samples).")
    ],
    model: Annotated[
        str | None,
        typer.Option(
            help="inpainter (paints a defect inside a given mask) or stylegan (a class-conditional "
            "StyleGAN2 drawing crop and mask from noise; --preset tiny, small, large). Default: inpainter."
        ),
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out.")] = False,
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda, cuda:1 (default: cuda if available).")
    ] = None,
    skip_bad: SkipBad = False,
    labels_complete: LabelsComplete = "true",
    covered_ids: CoveredIds = None,
    image_size: ImageSize = None,
    *,
    config,
):
    """Train the inpainting GAN (or, with --model stylegan, the StyleGAN2 generator) on the training half of a split.

    Example: defectgen train ../shared/data/magnetic_tile --split split.json --preset small --out runs/tiles --steps 2000

    Several processes (DDP): torchrun --nproc_per_node 2 -m defectgen train DATA --split split.json --out runs/x
    """
    from defectgen.data.split import Split
    from defectgen.gan.train import train as run_training

    # --resume continues the run's own kind and size unless a preset is asked
    run_preset = _run_preset(out_dir) if resume and model is None else None
    settings = _with_model_kind(config(**({"preset": run_preset} if run_preset else {})), model)
    dataset = _open(data, skip_bad, labels_complete, covered_ids, image_size)
    last = run_training(dataset, Split.load(split_path), settings, out_dir, resume=resume, device=device)
    if launch.is_main():  # under torchrun, rank 0 speaks for all
        out.print(f"done: {last}")


def _with_model_kind(config: TrainConfig, model: str | None) -> TrainConfig:
    """`config` with the preset `--model` names: `--model stylegan --preset small` trains
    stylegan-small; an inpainter preset under --model stylegan, or the reverse, is refused."""
    from defectgen.models.presets import STYLEGAN_PREFIX, preset_for

    if model is None:
        return config
    if model not in ("inpainter", "stylegan"):
        raise ConfigError(f"--model must be inpainter or stylegan, got {model!r}")
    if model == "inpainter" and config.preset.startswith(STYLEGAN_PREFIX):
        raise ConfigError(
            f"--model inpainter with preset {config.preset}, a stylegan preset: drop one of them"
        )
    chosen = dataclasses.replace(config, preset=preset_for(model, config.preset))
    chosen.validate()  # the spec refuses a `model` of the other kind
    return chosen


def _run_preset(out_dir: Path) -> str | None:
    """The preset of the run in `out_dir` (its config.yaml), if there is one that reads."""
    try:
        return TrainConfig.load(out_dir / "config.yaml", written_by_a_run=True).preset
    except (ConfigError, OSError):
        return None


def _class_list(text: str | None, what: str = "--classes") -> list[int] | None:
    if not text:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"{what} takes class ids separated by commas, e.g. 1,3; got {text!r}") from None


@app.command()
@config_options(SynthConfig)
def synth(
    data: DataArg,
    checkpoint: Annotated[
        Path, typer.Option(help="Training checkpoint, e.g. runs/NAME/checkpoints/last.pt.")
    ],
    split_path: Annotated[
        Path, typer.Option("--split", help="Split file: backgrounds and masks come from its training half.")
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder (resumable: run again to finish).")],
    skip_bad: SkipBad = False,
    labels_complete: LabelsComplete = "true",
    covered_ids: CoveredIds = None,
    image_size: ImageSize = None,
    *,
    config,
):
    """Paint new defects into defect-free images: a labelled synthetic dataset.

    Example: defectgen synth ../shared/data/magnetic_tile --checkpoint runs/tiles/checkpoints/last.pt --split split.json --n 1000 --out synth/tiles
    """
    from defectgen.data.split import Split
    from defectgen.synth import synthesize

    settings = config()
    dataset = _open(data, skip_bad, labels_complete, covered_ids, image_size)
    summary = synthesize(checkpoint, dataset, Split.load(split_path), out_dir, settings)
    if not launch.is_main():  # under torchrun, rank 0 speaks for all
        return
    out.print(
        f"{summary['items']} images in {summary['out']} (per class: {summary['images_per_class']}); "
        f"contact sheet {summary['contact_sheet']}"
    )


@app.command()
@config_options(EvalConfig)
def evaluate(
    data: DataArg,
    split_path: Annotated[
        Path, typer.Option("--split", help="Split file: train on its training half, score on its test half.")
    ],
    out_dir: Annotated[
        Path, typer.Option("--out", help="Evaluation folder (results.json, runs/, figures/); resumable.")
    ],
    synthetic: Annotated[
        list[str] | None,
        typer.Option(
            help="Synthetic set from `defectgen synth`: NAME=DIR (repeatable; arms name it, e.g. "
            "oversample+NAME). A bare DIR is named 'synthetic'."
        ),
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="Generator checkpoint of one synthetic set, for the diversity measurement."),
    ] = None,
    skip_bad: SkipBad = False,
    labels_complete: LabelsComplete = "true",
    covered_ids: CoveredIds = None,
    image_size: ImageSize = None,
    *,
    config,
):
    """Train segmenters on real vs real + synthetic data (and the cheap baselines) and score them on the test half.

    Example: defectgen evaluate ../shared/data/magnetic_tile --split split25.json --synthetic tiles=synth/tiles --arms real,control,oversample,copypaste,classic,oversample+tiles --checkpoint runs/tiles/checkpoints/last.pt --out eval/tiles
    """
    from defectgen.data.split import Split
    from defectgen.evaluate import evaluate as run_evaluation
    from defectgen.evaluate import parse_synthetic

    sets = parse_synthetic(synthetic or [])
    bases = [a for a in DEFAULT_ARMS if "+" not in a]
    settings = config(arms=bases + [f"real+{name}" for name in sets])
    dataset = _open(data, skip_bad, labels_complete, covered_ids, image_size)
    results = run_evaluation(
        dataset,
        Split.load(split_path),
        out_dir,
        settings,
        synthetic={name: Path(path) for name, path in sets.items()},
        checkpoint=checkpoint,
        split_file=split_path,
    )
    if not launch.is_main():  # under torchrun, rank 0 speaks for all
        return
    out.print(results_table(results))
    for line in verdict_lines(results):
        out.print(line)
    out.print(f"results: {Path(out_dir) / 'results.json'}; make the report with: defectgen report {out_dir}")


def verdict_lines(results: dict) -> list[str]:
    """The claim (declared arm against every baseline) and the noise floor, in words."""
    lines = []
    claim = results.get("claim")
    if claim:
        for base, entry in claim["versus"].items():
            ap = entry["class_mean_pixel_ap"]
            if ap["difference"] is not None:
                lines.append(
                    f"{' + '.join(claim['declared_arms'])} vs {base}: {ap['difference']:+.3f} "
                    f"[{ap['ci95'][0]:+.3f}, {ap['ci95'][1]:+.3f}] class-mean pixel AP"
                )
        condition = " (conditional on one generator)" if claim["conditional_on_one_generator"] else ""
        lines.append(f"claim: {'met' if claim['met'] else 'not met'}{condition}")
    floor = results.get("noise_floor")
    if floor and floor.get("minimal_detectable_effect") is not None:
        lines.append(
            f"noise floor: minimal detectable effect {floor['minimal_detectable_effect']:.3f} class-mean pixel AP "
            f"at {floor['seeds']} seeds"
        )
    return lines


def results_table(results: dict) -> Table:
    """The arms side by side: mean +- std over seeds, and the paired difference against real."""
    table = Table(
        title=f"{results['dataset']}: {results['config']['steps']} steps, seeds {results['config']['seeds']}"
    )
    from defectgen.evaluate import RESULT_COLUMNS, result_rows

    for column in RESULT_COLUMNS:
        table.add_column(column, justify="right")
    for row in result_rows(results):
        table.add_row(*row)
    return table


@app.command()
@config_options(StudioConfig)
def studio(
    data: DataArg,
    checkpoint: Annotated[
        Path, typer.Option(help="Training checkpoint, e.g. runs/NAME/checkpoints/last.pt.")
    ],
    split_path: Annotated[
        Path,
        typer.Option("--split", help="Split file: backgrounds and real shapes come from its training half."),
    ],
    out_dir: Annotated[
        Path, typer.Option("--out", help="Where kept images go (the layout of `synth --format folder`).")
    ],
    skip_bad: SkipBad = False,
    labels_complete: LabelsComplete = "true",
    covered_ids: CoveredIds = None,
    image_size: ImageSize = None,
    *,
    config,
):
    """A local web page: paint a mask on a background, generate defects in it, keep the good ones.

    Example: defectgen studio ../shared/data/magnetic_tile --checkpoint runs/tiles/checkpoints/last.pt --split split.json --out kept/
    """
    from defectgen.data.split import Split
    from defectgen.studio import StudioSession, serve

    settings = config()
    dataset = _open(data, skip_bad, labels_complete, covered_ids, image_size)
    session = StudioSession(checkpoint, dataset, Split.load(split_path), out_dir, settings)
    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        say(
            ("warning:", "yellow"),
            f" listening on {settings.host}: anyone who can reach it and has the URL can use it",
        )
    serve(session, settings, announce=lambda url: out.print(f"defectgen studio: open {url}", soft_wrap=True))


@app.command()
def export(
    checkpoint: Annotated[
        Path, typer.Option(help="Training checkpoint, e.g. runs/NAME/checkpoints/last.pt.")
    ],
    out_path: Annotated[Path, typer.Option("--out", help="ONNX file to write, e.g. model.onnx.")],
):
    """The generator (EMA weights, FFTs as ONNX DFT nodes, composite included) as an ONNX model,
    checked in onnxruntime against PyTorch at two image sizes before it is reported done.

    Example: defectgen export --checkpoint runs/tiles/checkpoints/last.pt --out tiles.onnx
    """
    from defectgen.export import export_verified

    report = export_verified(checkpoint, out_path)
    for row in report:
        out.print(
            f"{row['size'][1]}x{row['size'][0]}: onnxruntime vs PyTorch max |difference| "
            f"{row['max_abs_difference']} grey level(s); same region {row['same_region']}; "
            f"outside untouched {row['outside_untouched']}"
        )
    out.print(f"wrote {out_path}")


@app.command()
def report(
    eval_dir: Annotated[
        Path, typer.Argument(help="Folder written by `defectgen evaluate`.", show_default=False)
    ],
    output: Annotated[
        Path | None, typer.Option("--out", help="HTML file (default: EVAL_DIR/report.html).")
    ] = None,
):
    """A self-contained HTML report (tables, plots, image grids) of an evaluation.

    Example: defectgen report eval/tiles
    """
    from defectgen.report import write_report

    path = write_report(eval_dir, output)
    out.print(f"report: {path}")


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for everything the demo makes.")] = Path(
        "demo_run"
    ),
    quick: Annotated[
        bool, typer.Option("--quick", help="A smaller run (about 2 minutes on 2 cores).")
    ] = False,
):
    """The whole idea on embedded data: generate, split, train, synthesize, evaluate, report.

    Example: defectgen demo --out demo_run --quick
    """
    from defectgen.demo import run_demo

    summary = run_demo(out_dir, quick=quick)
    out.print(results_table(summary["results_data"]))
    out.print(f"report: {summary['report']}")


@app.command()
@config_options(ExperimentConfig)
def experiment(
    data: DataArg,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Experiment folder (every stage's output); resumable.")
    ],
    estimate_only: Annotated[
        bool, typer.Option("--estimate", help="Print the time estimate (short probes) and stop.")
    ] = False,
    skip_bad: SkipBad = False,
    labels_complete: LabelsComplete = "true",
    covered_ids: CoveredIds = None,
    image_size: ImageSize = None,
    *,
    config,
):
    """The whole proof in one command: split, generators on the fit part, synth, evaluate, report.

    Example: defectgen experiment ../shared/data/magnetic_tile --label-fraction 0.25 --out exp/magnetic_tile
    """
    from defectgen.experiment import estimate, is_started, run_experiment

    settings = config()
    dataset = _open(data, skip_bad, labels_complete, covered_ids, image_size)
    if estimate_only or not is_started(out_dir):
        guess = estimate(dataset, settings)
        parts = ", ".join(f"{k} {v / 60:.0f} min" for k, v in guess["seconds"].items())
        say(
            ("estimate", "bold cyan"),
            f" about {guess['total_seconds'] / 3600:.1f} h on this machine ({parts})",
        )
    if estimate_only:
        return
    results = run_experiment(dataset, out_dir, settings)
    out.print(results_table(results))
    for line in verdict_lines(results):
        out.print(line)
    out.print(f"report: {Path(out_dir) / 'eval' / 'report.html'}")


def os_error_line(err: OSError) -> str:
    """'PATH: reason; what to do' for an error the operating system raised on a user's path."""
    path = err.filename if err.filename is not None else "a file"
    reason = err.strerror or str(err)
    advice = {
        "ENOTDIR": "a folder was expected there; choose another path",
        "EISDIR": "a file was expected there; choose another path",
        "EACCES": "check its permissions or choose another path",
        "EROFS": "the file system is read-only; choose another path",
        "ENOSPC": "free some space and run the same command again",
        "EEXIST": "choose another path",
    }.get(errno.errorcode.get(err.errno or 0, ""), "check the path")
    return f"{path}: {reason}; {advice}"


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app, turning user errors into one line and exit code 2."""
    try:
        # standalone mode: typer/click print usage errors themselves and exit with code 2.
        app(args=argv, prog_name="defectgen")
    except DefectgenError as err:
        say(("error:", "bold red"), f" {err}")
        return 2
    except OSError as err:  # the operating system refused a path: name it, no traceback
        say(("error:", "bold red"), f" {os_error_line(err)}")
        return 2
    except UnicodeDecodeError as err:  # a reader that forgot fileio.read_text: still one line
        say(
            ("error:", "bold red"),
            f" a text file is not UTF-8 ({err.reason} at byte {err.start}); save it as UTF-8",
        )
        return 2
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())


def run() -> None:
    """The `defectgen` console script."""
    sys.exit(main())
