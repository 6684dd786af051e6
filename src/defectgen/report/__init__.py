"""`defectgen report eval/NAME`: one self-contained HTML page from `results.json`.

The page is meant to be judged, not just admired: it states the protocol from the numbers
actually recorded (not from defaults), opens the results with the claim (the arm declared
before the run against every baseline, met or not, with its numbers), shows every arm with its
spread over seeds and its paired difference from the `real` arm (intervals that count seeds,
generators and test images), the noise floor, the one post-processing that every arm shares,
the real arm's validation learning curve (and whether it is flat), the training curves, the
synthetic-data quality checks and the picture grids. Everything is inline (a small <style>,
plots rendered with matplotlib to PNG and embedded as base64 data URIs), so the file can be
mailed or opened offline; nothing refers to an external URL and no JavaScript runs.

Every string that comes from `results.json` goes through `html.escape`: arm, class and set
names and paths are user data. Optional parts of the file (claim, noise floor, learning curve,
post-processing, quality measurements, label filter, figures, synthetic sets) may be null or
empty; the page then says "not measured" or "not available" instead of leaving a gap.
"""

from __future__ import annotations

from pathlib import Path

from defectgen.fileio import check_replaceable, starts_with, write_atomic
from defectgen.report.html import STYLE
from defectgen.report.load import load_results
from defectgen.report.noise import _noise_floor_section
from defectgen.report.protocol import _protocol_section, _reading_section
from defectgen.report.quality import _curves_section, _grids_section, _per_class_section, _quality_section
from defectgen.report.results import _results_section
from defectgen.report.values import _esc, _object

REPORT_FILE = "report.html"


GENERATOR_META = '<meta name="generator" content="defectgen report">'  # how a report is recognised


def write_report(eval_dir: Path, out: Path | None = None) -> Path:
    """Read `eval_dir/results.json`, write the HTML report (default `eval_dir/report.html`)
    atomically, and return its path. Raises `DataError` when results.json is missing or
    malformed."""
    eval_dir = Path(eval_dir)
    out = Path(out) if out is not None else eval_dir / REPORT_FILE
    check_replaceable(out, "report", _is_report, suffix=".html")
    results = load_results(eval_dir)
    page = render_report(results, eval_dir)
    write_atomic(out, page)
    return out


def _is_report(path: Path) -> bool:
    """A page this module wrote (its meta tag; before the tag existed, its title)."""
    return starts_with(path, GENERATOR_META.encode(), 400) or starts_with(
        path, b"<title>defectgen evaluation: ", 400
    )


def render_report(results: dict, eval_dir: Path) -> str:
    """The whole HTML page as a string."""
    sections = [
        _protocol_section(results),
        _results_section(results),
        _noise_floor_section(results),
        _per_class_section(results),
        _curves_section(results),
        _quality_section(results),
        _grids_section(results, Path(eval_dir)),
        _reading_section(),
    ]
    title = f"defectgen evaluation: {Path(eval_dir).resolve().name}"
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            GENERATOR_META,
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_esc(title)}</title>",
            f"<style>{STYLE}</style>",
            "</head>",
            "<body>",
            _header(results, title),
            *sections,
            "</body>",
            "</html>",
            "",
        ]
    )


def _header(results: dict, title: str) -> str:
    versions = _object(results.get("versions"))
    version_text = ", ".join(f"{name} {value}" for name, value in versions.items()) or "not recorded"
    links = " · ".join(
        f'<a href="#{anchor}">{text}</a>'
        for anchor, text in (
            ("protocol", "protocol"),
            ("results", "results"),
            ("noise-floor", "noise floor"),
            ("per-class", "per class"),
            ("curves", "curves"),
            ("quality", "synthetic-data quality"),
            ("grids", "image grids"),
            ("reading", "how to read"),
        )
    )
    return (
        f"<header><h1>{_esc(title)}</h1>"
        f'<p class="meta">Created {_esc(results.get("created") or "(time not recorded)")} · '
        f"versions: {_esc(version_text)}</p>"
        f'<p class="meta">{links}</p></header>'
    )
