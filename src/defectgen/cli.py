"""The `defectgen` command: verbs -> API calls. Argument parsing and user errors only.

Every user error (`DefectgenError`) is printed on one line and exits with code 2, without a
traceback; typer/click already do the same for unknown options and wrong types.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from defectgen.errors import ConfigError, DefectgenError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Labelled synthetic defect images from a small annotated set.",
)
console = Console(stderr=True)
out = Console()

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


def _parse_bool(value: str, option: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "yes", "1", "on"):
        return True
    if lowered in ("false", "no", "0", "off"):
        return False
    raise ConfigError(f"{option} takes true or false, got {value!r}")


def _open(data: str, skip_bad: bool, labels_complete: str, covered_ids: Path | None):
    from defectgen.data import open_dataset

    dataset = open_dataset(
        data,
        skip_bad=skip_bad,
        labels_complete=_parse_bool(labels_complete, "--labels-complete"),
        covered_ids=covered_ids,
    )
    for note in dataset.notes:
        console.print(f"[dim]note:[/dim] {note}")
    if dataset.skipped:
        console.print(
            f"[yellow]skipped {len(dataset.skipped)} bad item(s)[/yellow]; first: "
            f"{dataset.skipped[0].item_id}: {dataset.skipped[0].reason}"
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
):
    """Counts per class, mask areas, image sizes, and a contact sheet with masks overlaid.

    Example: defectgen inspect ../shared/data/magnetic_tile --sheet tiles.png
    """
    from defectgen.data.inspect import inspect_dataset, write_contact_sheet

    dataset = _open(data, skip_bad, labels_complete, covered_ids)
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
        out.print(
            f"[yellow]{summary['empty_masks']['count']} labelled images have an empty mask "
            f"after thresholding[/yellow] (e.g. {summary['empty_masks']['items'][0]})"
        )
    if summary["unreadable"]["count"]:
        out.print(f"[yellow]{summary['unreadable']['count']} unreadable items skipped[/yellow]")
    if "contact_sheet" in summary:
        out.print(f"contact sheet: {summary['contact_sheet']}")


@app.command()
def split(
    data: DataArg,
    out_path: Annotated[Path, typer.Option("--out", help="Split file to write.")] = Path("split.json"),
    test_fraction: Annotated[float, typer.Option(help="Share of items in the test half.")] = 0.5,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same split.")] = 0,
    label_fraction: Annotated[
        float, typer.Option(help="Keep this share of the training half's defect images.")
    ] = 1.0,
    skip_bad: SkipBad = False,
    labels_complete: LabelsComplete = "true",
    covered_ids: CoveredIds = None,
):
    """Deterministic train/test split, stratified by class presence, written to a file.

    Example: defectgen split ../shared/data/magnetic_tile --out split.json --test-fraction 0.5 --seed 0
    """
    from defectgen.data.split import make_split, split_report

    dataset = _open(data, skip_bad, labels_complete, covered_ids)
    result = make_split(dataset, test_fraction=test_fraction, seed=seed, label_fraction=label_fraction)
    result.save(out_path)
    report = split_report(result, dataset)
    table = Table(title=f"split of {dataset.spec} (seed {seed})")
    parts = list(report)
    table.add_column("")
    for part in parts:
        table.add_column(part, justify="right")
    for key in report["train"]:
        table.add_row(key, *(str(report[p][key]) for p in parts))
    out.print(table)
    out.print(f"wrote {out_path}")


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app, turning user errors into one line and exit code 2."""
    try:
        # standalone mode: typer/click print usage errors themselves and exit with code 2.
        app(args=argv, prog_name="defectgen")
    except DefectgenError as err:
        console.print(f"[bold red]error:[/bold red] {err}", highlight=False, soft_wrap=True)
        return 2
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())


def run() -> None:
    """The `defectgen` console script."""
    sys.exit(main())
