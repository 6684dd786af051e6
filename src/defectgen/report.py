"""`defectgen report eval/NAME`: one self-contained HTML page from `results.json`.

The page is meant to be judged, not just admired: it states the protocol (from the numbers
actually recorded, not from defaults), shows every arm with its spread over seeds and its
paired difference from the `real` arm, the training curves, the synthetic-data quality
checks and the picture grids. Everything is inline (a small <style>, plots rendered with
matplotlib to PNG and embedded as base64 data URIs), so the file can be mailed or opened
offline; nothing refers to an external URL and no JavaScript runs.

Every string that comes from `results.json` goes through `html.escape`: class names and
paths are user data. Optional parts of the file (quality measurements, step selection,
figures, the synthetic dataset) may be null; the page then says "not measured" or "not
available" instead of leaving a gap.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Iterable
from pathlib import Path

from matplotlib.figure import Figure

from defectgen.errors import DataError
from defectgen.fileio import write_atomic

FORMAT = "defectgen-eval/1"
RESULTS_FILE = "results.json"
REPORT_FILE = "report.html"
REQUIRED_KEYS = ("format", "classes", "config", "runs", "summary")

# What each arm adds to the real training crops. results.json may override or extend this
# with an optional {"arm_descriptions": {arm: text}}.
ARM_DESCRIPTIONS = {
    "real": "the labelled real training images only (the baseline)",
    "oversample": "real + defect images drawn more often (no new pixels)",
    "copypaste": "real + real defects cut out along their masks and pasted onto other training images",
    "classic": "real + classic augmentation (geometric and photometric transforms)",
    "synthetic": "real + defectgen synthetic images with their masks",
    "defectgen": "real + defectgen synthetic images with their masks",
    "synthetic_only": "defectgen synthetic images only",
    "defectgen-only": "defectgen synthetic images only",
}
# Fixed colours so an arm looks the same in every plot; `real` is a neutral grey baseline.
ARM_COLOURS = {
    "real": "#7f7f7f",
    "oversample": "#56b4e9",
    "copypaste": "#e69f00",
    "classic": "#009e73",
    "synthetic": "#d55e00",
    "defectgen": "#d55e00",
}
FALLBACK_COLOURS = ["#0072b2", "#cc79a7", "#f0e442", "#000000", "#8c564b", "#17becf"]
MISSING = "—"

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1d1d1f;
       max-width: 1150px; margin: 2em auto; padding: 0 1.2em; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.1em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
.meta { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; vertical-align: top; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
td.better { background: #e3f4e8; } td.worse { background: #fbe4e1; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { color: #555; font-size: 0.9em; }
.na { color: #8a5a00; font-style: italic; }
.warning { background: #fff4d6; border-left: 4px solid #e6a700; padding: 0.4em 0.8em; }
details { margin: 0.8em 0; } code { background: #f3f3f3; padding: 0 0.2em; }
"""


# ---------------------------------------------------------------------------------------- API


def write_report(eval_dir: Path, out: Path | None = None) -> Path:
    """Read `eval_dir/results.json`, write the HTML report (default `eval_dir/report.html`)
    atomically, and return its path. Raises `DataError` when results.json is missing or
    malformed."""
    eval_dir = Path(eval_dir)
    out = Path(out) if out is not None else eval_dir / REPORT_FILE
    results = load_results(eval_dir)
    page = render_report(results, eval_dir)
    write_atomic(out, page)
    return out


def load_results(eval_dir: Path) -> dict:
    """`eval_dir/results.json` -> dict, checked for the keys the report cannot do without."""
    path = Path(eval_dir) / RESULTS_FILE
    rerun = "run `defectgen evaluate` to (re)create it, then `defectgen report` on that folder"
    if not path.is_file():
        where = "" if Path(eval_dir).is_dir() else f" (the folder {eval_dir} does not exist either)"
        raise DataError(f"{path} not found{where}: {rerun}")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path} is not readable JSON ({err}): {rerun}") from err
    if not isinstance(results, dict):
        raise DataError(f"{path} holds {type(results).__name__}, not an object: {rerun}")
    missing = [key for key in REQUIRED_KEYS if key not in results]
    if missing:
        raise DataError(f"{path} lacks the key(s) {', '.join(missing)}: {rerun}")
    if results["format"] != FORMAT:
        raise DataError(
            f"{path} has format {results['format']!r}; this defectgen reads {FORMAT!r}: {rerun} "
            "with this version"
        )
    _check_shapes(results, path, rerun)
    return results


def render_report(results: dict, eval_dir: Path) -> str:
    """The whole HTML page as a string."""
    sections = [
        _protocol_section(results),
        _results_section(results),
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


# ------------------------------------------------------------------------------- validation


def _check_shapes(results: dict, path: Path, rerun: str) -> None:
    """The few structural facts every section relies on; the rest is read defensively."""
    problems = []
    classes = results["classes"]
    if not isinstance(classes, list) or not all(isinstance(c, dict) and "name" in c for c in classes):
        problems.append('"classes" must be a list of {"id", "name"} objects')
    if not isinstance(results["config"], dict):
        problems.append('"config" must be an object')
    if not isinstance(results["runs"], list) or not all(isinstance(run, dict) for run in results["runs"]):
        problems.append('"runs" must be a list of objects')
    if not isinstance(results["summary"], dict):
        problems.append('"summary" must be an object with one entry per arm')
    for key in ("split", "synthetic", "step_selection", "paired", "quality", "figures", "versions"):
        if results.get(key) is not None and not isinstance(results[key], dict):
            problems.append(f'"{key}" must be an object or null')
    if problems:
        raise DataError(f"{path} is malformed: {'; '.join(problems)}: {rerun}")


# ---------------------------------------------------------------------------------- sections


def _header(results: dict, title: str) -> str:
    versions = results.get("versions") or {}
    version_text = ", ".join(f"{name} {value}" for name, value in versions.items()) or "not recorded"
    return (
        f"<header><h1>{_esc(title)}</h1>"
        f'<p class="meta">Created {_esc(results.get("created") or "(time not recorded)")} · '
        f"versions: {_esc(version_text)}</p></header>"
    )


def _protocol_section(results: dict) -> str:
    config = results["config"]
    arms = _arms(results)
    parts = [
        _dataset_sentence(results),
        _split_sentence(results.get("split") or {}),
        _segmenter_sentence(config),
        _steps_sentence(results),
        _seeds_sentence(results, arms),
        "Whole test images are predicted at native resolution (no resizing) and binarised at a fixed "
        f"threshold of {_esc(_number(config.get('threshold'), 2))}.",
        _METRICS_SENTENCE,
    ]
    arm_items = "".join(
        f"<li><strong>{_esc(arm)}</strong>: {_esc(_arm_description(results, arm))}</li>" for arm in arms
    )
    warnings = "".join(f'<p class="warning">{_esc(text)}</p>' for text in _protocol_warnings(results))
    return (
        '<section id="protocol"><h2>Protocol</h2>'
        f"<p>{' '.join(parts)}</p>"
        f"<p>Arms:</p><ul>{arm_items}</ul>{warnings}</section>"
    )


_METRICS_SENTENCE = (
    "Metrics on the test half: Kaggle-style mean Dice over all (image, class) pairs, where an empty "
    "prediction on an empty target counts 1; positive Dice per class, over only the pairs whose "
    "target contains the class; IoU over the same positive pairs; and the image-level false-positive "
    "rate, the share of defect-free test images with any predicted defect pixel. Each arm is "
    "compared with <em>real</em> by paired differences on the same test images (mean over seeds of "
    "the per-seed mean difference), with a 95 % bootstrap confidence interval from resampling test "
    "images."
)


def _dataset_sentence(results: dict) -> str:
    names = ", ".join(_class_names(results)) or "none listed"
    text = (
        f"Dataset <code>{_esc(results.get('dataset') or 'not recorded')}</code> with classes {_esc(names)}."
    )
    synthetic = results.get("synthetic")
    if synthetic:
        text += (
            f" Synthetic data: <code>{_esc(synthetic.get('path', MISSING))}</code>, "
            f"{_esc(_count(synthetic.get('images')))} images, masks from "
            f"{_esc(synthetic.get('mask_source', 'an unrecorded source'))}."
        )
    else:
        text += " No synthetic dataset was given."
    return text


def _split_sentence(split: dict) -> str:
    if not split:
        return "The train/test split is not recorded."
    test = split.get("test_fraction")
    shares = (
        f"{_percent(1 - test)} train / {_percent(test)} test"
        if _is_number(test)
        else "an unrecorded train/test share"
    )
    label = split.get("label_fraction")
    return (
        f"Split <code>{_esc(split.get('file', MISSING))}</code>: {_esc(shares)}, stratified by the set of "
        f"classes in each image, seed {_esc(split.get('seed', MISSING))}. The segmenters see "
        f"{_esc(_percent(label))} of the training half's defect images (all its defect-free images are "
        f"kept): {_esc(_count(split.get('train_images')))} training images; "
        f"{_esc(_count(split.get('test_images')))} test images."
    )


def _segmenter_sentence(config: dict) -> str:
    weights = config.get("encoder_weights")
    init = "trained from scratch" if not weights else f"initialised with the weights {weights}"
    crop = config.get("crop_size")
    crop_text = f"{crop}×{crop} px" if crop is not None else "fixed-size"
    defect_share = config.get("defect_crop_share")
    defect_text = (
        f" ({_percent(defect_share)} of crops placed on a defect)" if _is_number(defect_share) else ""
    )
    return _esc(
        f"Segmenter: segmentation_models_pytorch U-Net with a {config.get('encoder', 'unrecorded')} "
        f"encoder, {init}, on {crop_text} crops cut at native resolution{defect_text}; batch size "
        f"{config.get('batch_size', MISSING)}, learning rate {config.get('lr', MISSING)}, "
        f"{config.get('precision', 'unrecorded')} precision."
    )


def _steps_sentence(results: dict) -> str:
    config = results["config"]
    steps = config.get("steps", MISSING)
    selection = results.get("step_selection")
    if not selection:
        how = "the step count was given by the user, not chosen on validation data"
    else:
        val = config.get("val_fraction")
        val_text = f" ({_percent(val)} of it)" if _is_number(val) else ""
        how = (
            f"the step count was chosen once on the {selection.get('arm', 'real')} arm, trained on the "
            f"training half minus a validation part{val_text}, by the rule "
            f"“{selection.get('rule', 'not recorded')}” (chosen step {selection.get('chosen', MISSING)})"
        )
    extra = config.get("extra_share")
    extra_text = (
        f" In every arm other than real, {_percent(extra)} of each batch are extra samples from that arm's "
        "source (synthetic, oversampled, copy-paste or augmented), the rest real crops."
        if _is_number(extra)
        else ""
    )
    return _esc(f"Every arm trains for the same {steps} steps with the same batch; {how}.{extra_text}")


def _seeds_sentence(results: dict, arms: list[str]) -> str:
    seeds = results["config"].get("seeds")
    seed_text = ", ".join(str(s) for s in seeds) if isinstance(seeds, list) else "not recorded"
    count = len(seeds) if isinstance(seeds, list) else 0
    spread = "mean ± std over seeds" if count > 1 else "a single seed, so no spread over seeds"
    return _esc(f"Each of the {len(arms)} arms is trained with seeds {seed_text} ({spread}).")


def _protocol_warnings(results: dict) -> list[str]:
    """Departures from the protocol that a reader must see before trusting the table."""
    warnings = []
    steps = {run.get("steps") for run in results["runs"] if _is_number(run.get("steps"))}
    if len(steps) > 1:
        warnings.append(
            f"Runs differ in step count ({', '.join(map(str, _sorted(steps)))}): arms are not comparable."
        )
    configured = results["config"].get("steps")
    configured = configured if _is_number(configured) else None
    if steps and configured is not None and steps != {configured}:
        warnings.append(f"The runs' step counts {_sorted(steps)} differ from the configured {configured}.")
    selection = results.get("step_selection") or {}
    if selection.get("chosen") is not None and configured is not None and selection["chosen"] != configured:
        warnings.append(
            f"The chosen step {selection['chosen']} differs from the steps trained, {configured}."
        )
    seeds = results["config"].get("seeds")
    if isinstance(seeds, list):
        for arm in _arms(results):
            done = _sorted(run.get("seed") for run in _runs_of(results, arm))
            if done != _sorted(seeds):
                warnings.append(f"Arm {arm} has runs for seeds {done}, not the configured {_sorted(seeds)}.")
    return warnings


def _results_section(results: dict) -> str:
    return (
        '<section id="results"><h2>Results</h2>'
        f"{_results_table(results)}"
        "<h3>Positive Dice per class</h3>"
        f"{_per_class_table(results)}"
        f"{_runs_details(results)}</section>"
    )


def _results_table(results: dict) -> str:
    header = [
        "Arm",
        "Positive Dice",
        "Kaggle Dice",
        "Mean IoU",
        "FP rate (defect-free)",
        "Δ positive Dice vs real [95 % CI]",
        "Δ FP rate vs real [95 % CI]",
    ]
    rows = []
    for arm in _arms(results):
        summary = _summary_of(results, arm)
        paired = _object(_object(results.get("paired")).get(arm))
        seeds = len(_runs_of(results, arm))
        cells = [f"<td>{_esc(arm)}</td>"]
        for metric in ("mean_positive_dice", "kaggle_dice", "mean_iou", "fp_rate_defect_free"):
            cells.append(f"<td>{_esc(_mean_std(summary.get(metric), seeds))}</td>")
        if arm == "real":
            cells += ["<td>baseline</td>", "<td>baseline</td>"]
        else:
            cells.append(_paired_cell(paired.get("mean_positive_dice"), higher_is_better=True))
            cells.append(_paired_cell(paired.get("fp_rate_defect_free"), higher_is_better=False))
        rows.append(f"<tr>{''.join(cells)}</tr>")
    caption = (
        "Mean ± std over seeds. Δ = arm − real, paired on the same test images; a difference whose "
        "95 % CI excludes 0 is in bold and marked ▲ (better) or ▼ (worse). Higher Dice and IoU are "
        "better; a lower false-positive rate is better."
    )
    return _table(header, rows, caption)


def _paired_cell(entry: object, higher_is_better: bool) -> str:
    if not isinstance(entry, dict) or not _is_number(entry.get("difference")):
        return f"<td>{MISSING}</td>"
    ci = entry.get("ci95") or [None, None]
    low, high = (ci + [None, None])[:2] if isinstance(ci, list) else (None, None)
    interval = f"[{_number(low, signed=True)}, {_number(high, signed=True)}]"
    text = f"{_number(entry['difference'], signed=True)} {interval}"
    detail = f"{_count(entry.get('images'))} images, {_count(entry.get('seeds'))} seeds"
    if _is_number(low) and _is_number(high) and (low > 0 or high < 0):
        better = (low > 0) == higher_is_better
        verdict, marker = ("better", "▲") if better else ("worse", "▼")
        return (
            f'<td class="{verdict}" title="{_esc(detail)}"><strong>{_esc(text)}</strong> '
            f"{marker} {verdict}</td>"
        )
    return f'<td title="{_esc(detail)}">{_esc(text)}</td>'


def _per_class_table(results: dict) -> str:
    arms = _arms(results)
    rows = []
    for name in _class_names(results):
        cells = [f"<td>{_esc(name)}</td>"]
        for arm in arms:
            stat = _object(_summary_of(results, arm).get("positive_dice")).get(name)
            cells.append(f"<td>{_esc(_mean_std(stat, len(_runs_of(results, arm))))}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    caption = f"Positive Dice on test images that contain the class; {MISSING} = no such test image."
    return _table(["Class", *arms], rows, caption)


def _runs_details(results: dict) -> str:
    rows = []
    for run in results["runs"]:
        test = _object(run.get("test"))
        values = [
            run.get("arm", MISSING),
            run.get("seed", MISSING),
            run.get("steps", MISSING),
            _number(run.get("seconds"), 1),
            _number(test.get("mean_positive_dice")),
            _number(test.get("kaggle_dice")),
            _number(test.get("mean_iou")),
            _number(test.get("fp_rate_defect_free")),
            f"{_count(test.get('images'))} ({_count(test.get('defect_free_images'))} defect-free)",
        ]
        rows.append("<tr>" + "".join(f"<td>{_esc(v)}</td>" for v in values) + "</tr>")
    header = ["Arm", "Seed", "Steps", "Seconds", "Pos. Dice", "Kaggle Dice", "IoU", "FP rate", "Test images"]
    return f"<details><summary>Every run ({len(rows)})</summary>{_table(header, rows)}</details>"


def _per_class_section(results: dict) -> str:
    classes, arms = _class_names(results), _arms(results)
    if not classes or not arms:
        body = _na("No classes or arms.")
    else:
        body = _figure_html(
            _per_class_chart(results, classes, arms),
            "Grouped bar chart of positive Dice per class and arm",
            "Bars: mean over seeds; error bars: std over seeds; n/a: no value for that arm and class.",
        )
    return f'<section id="per-class"><h2>Positive Dice per class</h2>{body}</section>'


def _per_class_chart(results: dict, classes: list[str], arms: list[str]) -> Figure:
    """Grouped bars: one group per class, one bar per arm, error bars = std over seeds."""
    figure = Figure(
        figsize=(min(14.0, max(6.0, 0.3 * len(classes) * len(arms) + 2.0)), 4.0), layout="constrained"
    )
    axes = figure.add_subplot()
    width = 0.8 / len(arms)
    for index, arm in enumerate(arms):
        per_class = _object(_summary_of(results, arm).get("positive_dice"))
        means, stds = zip(*(_mean_and_std(per_class.get(name)) for name in classes), strict=True)
        positions = [c + (index - (len(arms) - 1) / 2) * width for c in range(len(classes))]
        axes.bar(
            positions, means, width, yerr=stds, capsize=2, label=_plain(arm), color=_arm_colour(arms, arm)
        )
        for x, mean in zip(positions, means, strict=True):
            if math.isnan(mean):
                axes.text(x, 0.01, "n/a", rotation=90, ha="center", va="bottom", fontsize="x-small")
    axes.set_xticks(
        range(len(classes)), [_plain(name) for name in classes], rotation=20 if len(classes) > 5 else 0
    )
    axes.set_ylabel("positive Dice (test)")
    axes.set_ylim(0, 1)
    axes.grid(axis="y", alpha=0.3)
    figure.legend(loc="outside upper center", ncols=min(len(arms), 6), fontsize="small")
    return figure


def _curves_section(results: dict) -> str:
    body = _loss_curves(results) + _step_selection_curve(results.get("step_selection"))
    return f'<section id="curves"><h2>Training curves</h2>{body}</section>'


def _loss_curves(results: dict) -> str:
    arms = [arm for arm in _arms(results) if any(_curve(run.get("curve")) for run in _runs_of(results, arm))]
    if not arms:
        return _na("No training-loss curves recorded.")
    columns = min(3, len(arms))
    rows = math.ceil(len(arms) / columns)
    figure = Figure(figsize=(4.2 * columns, 3.0 * rows), layout="constrained")
    axes_list = figure.subplots(rows, columns, sharex=True, sharey=True, squeeze=False).ravel()
    for axes, arm in zip(axes_list, arms, strict=False):
        for run in _runs_of(results, arm):
            points = _curve(run.get("curve"))
            if points:
                steps, losses = zip(*points, strict=True)
                axes.plot(steps, losses, linewidth=1, label=f"seed {_plain(run.get('seed', '?'))}")
        axes.set_title(_plain(arm))
        axes.grid(alpha=0.3)
        axes.legend(fontsize="x-small")
    for axes in axes_list[len(arms) :]:
        axes.set_visible(False)
    figure.supxlabel("step")
    figure.supylabel("training loss")
    return _figure_html(
        figure, "Training loss per arm and seed", "Training loss of every run: one panel per arm."
    )


def _step_selection_curve(selection: dict | None) -> str:
    if not selection:
        return _na("No step selection: the step count was given by the user.")
    points = _curve(selection.get("curve"))
    if not points:
        return _na("Step selection recorded without a validation curve.")
    steps, scores = zip(*points, strict=True)
    figure = Figure(figsize=(6.0, 3.2), layout="constrained")
    axes = figure.add_subplot()
    axes.plot(
        steps, scores, marker="o", markersize=3, color=ARM_COLOURS["real"], label="validation positive Dice"
    )
    chosen = selection.get("chosen")
    if _is_number(chosen):
        axes.axvline(chosen, color="#d55e00", linestyle="--", label=f"chosen step {chosen}")
    best = max(range(len(scores)), key=lambda i: scores[i])
    axes.plot(
        [steps[best]],
        [scores[best]],
        marker="*",
        markersize=11,
        color="#0072b2",
        linestyle="none",
        label="best",
    )
    axes.set_xlabel("step")
    axes.set_ylabel("validation positive Dice")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    caption = (
        f"Step selection on the {selection.get('arm', 'real')} arm; "
        f"rule: {selection.get('rule', 'not recorded')}. "
        "A curve still rising at its last step suggests that longer training could change the results."
    )
    return _figure_html(figure, "Validation positive Dice against training step", caption)


def _quality_section(results: dict) -> str:
    quality = _object(results.get("quality"))
    return (
        '<section id="quality"><h2>Synthetic-data quality</h2>'
        f"<h3>Label fidelity</h3>{_label_fidelity(results, _object(quality.get('label_fidelity')))}"
        f"<h3>KID</h3>{_kid(_object(quality.get('kid')))}"
        f"<h3>Diversity</h3>{_diversity(_object(quality.get('diversity')))}</section>"
    )


def _label_fidelity(results: dict, fidelity: dict | None) -> str:
    if not fidelity:
        return _na("Label fidelity: not measured.")
    synthetic = _object(fidelity.get("synthetic"))
    real = _object(fidelity.get("real_test"))
    classes = _class_names(results)
    rows = []
    for name in classes:
        values = (
            _object(synthetic.get("positive_dice")).get(name),
            _object(real.get("positive_dice")).get(name),
        )
        rows.append(
            f"<tr><td>{_esc(name)}</td>" + "".join(f"<td>{_number(v)}</td>" for v in values) + "</tr>"
        )
    mean_values = (synthetic.get("mean_positive_dice"), real.get("mean_positive_dice"))
    rows.append("<tr><th>mean</th>" + "".join(f"<th>{_number(v)}</th>" for v in mean_values) + "</tr>")
    intro = (
        f"<p>A segmenter trained on real data ({_esc(fidelity.get('segmenter', 'not recorded'))}) is "
        "applied to synthetic images and scored against the masks they were generated from, and to the "
        "real test images. Similar Dice means the generator paints defects where its masks say; much "
        "lower Dice on synthetic images means its labels are not trustworthy.</p>"
    )
    table = _table(["Class", "Synthetic images", "Real test images"], rows)
    return intro + table + _label_fidelity_plot(classes, synthetic, real)


def _label_fidelity_plot(classes: list[str], synthetic: dict, real: dict) -> str:
    if not classes:
        return ""
    figure = Figure(figsize=(max(4.5, 1.0 * len(classes) + 1.5), 2.8), layout="constrained")
    axes = figure.add_subplot()
    for offset, (label, source, colour) in enumerate(
        [("synthetic", synthetic, ARM_COLOURS["synthetic"]), ("real test", real, ARM_COLOURS["real"])]
    ):
        values = [_float_or_nan(_object(source.get("positive_dice")).get(name)) for name in classes]
        axes.bar(
            [c + (offset - 0.5) * 0.38 for c in range(len(classes))], values, 0.38, label=label, color=colour
        )
    axes.set_xticks(range(len(classes)), [_plain(name) for name in classes])
    axes.set_ylim(0, 1)
    axes.set_ylabel("positive Dice")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize="small")
    return _figure_html(
        figure, "Label fidelity per class", "Positive Dice of the real-data segmenter, per class."
    )


def _kid(kid: dict | None) -> str:
    if not kid:
        return _na("KID: not measured.")
    space = str(kid.get("feature_space") or "not recorded")
    inception = "inception" in space.lower()
    comparability = (
        "Computed with InceptionV3 features, as published KID values are; still compare only values "
        "measured on the same crops and data."
        if inception
        else "This is <strong>not</strong> the InceptionV3 feature space of published KID values: compare "
        "it only with KID measured in the same feature space."
    )
    return (
        f"<p>KID = <strong>{_number(kid.get('value'), 4)} ± {_number(kid.get('std'), 4)}</strong> (lower = "
        f"synthetic crops closer to real ones), from {_esc(_count(kid.get('subsets')))} subsets of "
        f"{_esc(_count(kid.get('real_crops')))} real and "
        f"{_esc(_count(kid.get('synthetic_crops')))} synthetic crops.</p>"
        f"<p>Feature space: <strong>{_esc(space)}</strong>. {comparability}</p>"
    )


def _diversity(diversity: dict | None) -> str:
    if not diversity:
        return _na("Diversity: not measured.")
    synthetic, real = diversity.get("mean_pairwise_distance"), diversity.get("real_pairwise_distance")
    ratio = f" (ratio {synthetic / real:.2f})" if _is_number(synthetic) and _is_number(real) and real else ""
    return (
        f"<p>Mean pairwise feature distance between defects drawn for the same mask: "
        f"<strong>{_number(synthetic)}</strong>, against {_number(real)} between real defects{_esc(ratio)}; "
        f"{_esc(_count(diversity.get('masks')))} masks × {_esc(_count(diversity.get('draws')))} draws, "
        f"feature space: {_esc(diversity.get('feature_space') or 'not recorded')}. A value near 0 means the "
        "generator ignores its noise (mode collapse).</p>"
    )


def _grids_section(results: dict, eval_dir: Path) -> str:
    figures = results.get("figures") or {}
    per_class = figures.get("real_vs_synthetic")
    per_class = per_class if isinstance(per_class, dict) else {}
    parts = ["<h3>Real vs synthetic, per class</h3>"]
    names = _class_names(results) + [name for name in per_class if name not in _class_names(results)]
    for name in names:
        parts.append(_inlined_figure(eval_dir, per_class.get(name), f"Real vs synthetic: {name}"))
    for key, title in (
        ("synthetic_overlays", "Synthetic images with their masks overlaid"),
        ("copypaste_examples", "Copy-paste examples"),
        (
            "label_fidelity_failures",
            "Label-fidelity failures (synthetic images where the real segmenter misses)",
        ),
    ):
        parts.append(f"<h3>{_esc(title)}</h3>{_inlined_figure(eval_dir, figures.get(key), title)}")
    return f'<section id="grids"><h2>Image grids</h2>{"".join(parts)}</section>'


def _reading_section() -> str:
    return (
        '<section id="reading"><h2>How to read this report</h2><p>'
        "Every arm uses the same segmenter, steps, batch, crops, seeds and test images; only the training "
        "data differ, so differences between rows are due to the data. An arm beats <em>real</em> only "
        "when its paired difference in positive Dice has a 95 % CI entirely above 0 (bold, ▲); a CI "
        "that straddles 0 means these test images cannot tell the two apart, whatever the means say. "
        "The CI covers the choice of test images; the std covers training noise over seeds: a gain "
        "smaller than the std is fragile even when its CI excludes 0. "
        "<strong>Positive Dice is the number to watch.</strong> Most (image, class) pairs are empty, and "
        "on those the Kaggle score gives 1 for predicting nothing, so a segmenter that never finds a "
        "defect can still score high Kaggle Dice; positive Dice counts only the images that contain "
        "the class. The opposite trap: an arm can raise positive Dice by painting defects everywhere. "
        "That shows up in the false-positive rate on defect-free images, so read the two together: a "
        "Dice gain that comes with a clearly higher FP rate is a trade-off, not a win. "
        "Label fidelity tells whether synthetic masks can be trusted as labels; KID (lower = closer to "
        "real) and diversity describe the images themselves and do not by themselves prove usefulness."
        "</p></section>"
    )


# ----------------------------------------------------------------------------------- helpers


def _arms(results: dict) -> list[str]:
    """Configured arms first, in their order, then any arm that only appears in runs/summary."""
    configured = results["config"].get("arms")
    arms = [str(a) for a in configured] if isinstance(configured, list) else []
    for arm in [*results["summary"], *(run.get("arm") for run in results["runs"])]:
        if arm is not None and str(arm) not in arms:
            arms.append(str(arm))
    return arms


def _class_names(results: dict) -> list[str]:
    return [str(c["name"]) for c in results["classes"]]


def _runs_of(results: dict, arm: str) -> list[dict]:
    return [run for run in results["runs"] if str(run.get("arm")) == arm]


def _summary_of(results: dict, arm: str) -> dict:
    summary = results["summary"].get(arm)
    return summary if isinstance(summary, dict) else {}


def _arm_description(results: dict, arm: str) -> str:
    custom = results.get("arm_descriptions")
    if isinstance(custom, dict) and arm in custom:
        return str(custom[arm])
    key = arm.removeprefix("real+")
    return ARM_DESCRIPTIONS.get(arm) or ARM_DESCRIPTIONS.get(key) or "(no description)"


def _arm_colour(arms: list[str], arm: str) -> str:
    if arm in ARM_COLOURS:
        return ARM_COLOURS[arm]
    others = [a for a in arms if a not in ARM_COLOURS]
    return FALLBACK_COLOURS[others.index(arm) % len(FALLBACK_COLOURS)]


def _curve(points: object) -> list[tuple[float, float]]:
    """[[step, value], ...] -> finite (step, value) pairs; anything malformed is dropped."""
    if not isinstance(points, list):
        return []
    return [
        (float(p[0]), float(p[1]))
        for p in points
        if isinstance(p, list | tuple) and len(p) == 2 and _is_number(p[0]) and _is_number(p[1])
    ]


def _object(value: object) -> dict:
    """A JSON object, or {} for null / anything else (the section then says 'not measured')."""
    return value if isinstance(value, dict) else {}


def _sorted(values: Iterable) -> list:
    """Sorted for display; mixed types (a hand-edited file) sort by their text."""
    values = list(values)
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=str)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _float_or_nan(value: object) -> float:
    return float(value) if _is_number(value) else math.nan


def _number(value: object, digits: int = 3, signed: bool = False) -> str:
    if not _is_number(value):
        return MISSING
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _percent(value: object) -> str:
    return f"{100 * value:.0f} %" if _is_number(value) else "an unrecorded share"


def _count(value: object) -> str:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else "?"


def _mean_and_std(stat: object) -> tuple[float, float]:
    if not isinstance(stat, dict):
        return math.nan, 0.0
    std = stat.get("std")
    return _float_or_nan(stat.get("mean")), max(0.0, float(std)) if _is_number(std) else 0.0


def _mean_std(stat: object, seeds: int) -> str:
    """{"mean", "std"} -> '0.412 ± 0.031'; the ± part only when there is a spread to show."""
    if not isinstance(stat, dict):
        return _number(stat)
    mean, std = stat.get("mean"), stat.get("std")
    if not _is_number(mean):
        return MISSING
    if seeds > 1 and _is_number(std):
        return f"{mean:.3f} ± {std:.3f}"
    return f"{mean:.3f}"


def _na(text: str) -> str:
    """A visible 'not measured / not available' note (text is escaped here)."""
    return f'<p class="na">{_esc(text)}</p>'


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _plain(value: object) -> str:
    """A string for a matplotlib label: '$' would otherwise start mathtext."""
    return str(value).replace("$", r"\$")


def _table(header: Iterable[str], rows: list[str], caption: str = "") -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    caption_html = f"<caption>{_esc(caption)}</caption>" if caption else ""
    return f"<table>{caption_html}<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _figure_html(figure: Figure, alt: str, caption: str) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    return _img_html(_data_uri(buffer.getvalue(), "image/png"), alt, caption)


def _img_html(uri: str, alt: str, caption: str) -> str:
    return f'<figure><img src="{uri}" alt="{_esc(alt)}"><figcaption>{_esc(caption)}</figcaption></figure>'


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _inlined_figure(eval_dir: Path, relative: object, title: str) -> str:
    """A figure file under eval_dir, inlined; otherwise a note saying why it is not shown."""
    if not isinstance(relative, str) or not relative:
        return _na(f"{title}: not available (not recorded in results.json).")
    root = eval_dir.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        return _na(f"{title}: not available ({relative} is outside the evaluation folder).")
    if not path.is_file():
        return _na(f"{title}: not available ({relative} not found).")
    data = path.read_bytes()
    mime = _image_mime(data)
    if mime is None:
        return _na(f"{title}: not available ({relative} is not a PNG or JPEG).")
    return _img_html(_data_uri(data, mime), title, f"{title} ({relative})")


def _image_mime(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    return None
