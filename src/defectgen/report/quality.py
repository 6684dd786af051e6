"""The per-class, curves, synthetic-data quality and picture-grid sections."""

from __future__ import annotations

from pathlib import Path

from defectgen.report.html import _figure_html, _inlined_figure, _table
from defectgen.report.plots import (
    _fidelity_value,
    _label_fidelity_plot,
    _learning_curve,
    _loss_curves,
    _per_class_chart,
)
from defectgen.report.values import (
    HEADLINE,
    MISSING,
    _arms,
    _class_names,
    _count,
    _esc,
    _is_number,
    _na,
    _number,
    _object,
)

FIDELITY_COLUMNS = (
    "synthetic",
    "real_test",
    "ratio",
    "synthetic_pixel_ap",
    "real_test_pixel_ap",
    "pixel_ap_ratio",
)


def _per_class_section(results: dict) -> str:
    classes, arms = _class_names(results), _arms(results)
    if not classes or not arms:
        body = _na("No classes or arms.")
    else:
        body = _figure_html(
            _per_class_chart(results, classes, arms),
            "Grouped bar charts of pixel AP and positive Dice per class and arm",
            "Top: pixel AP (threshold-free); bottom: positive Dice at 0.5. Bars: mean over seeds; error "
            "bars: std over seeds; n/a: no value for that arm and class.",
        )
    return f'<section id="per-class"><h2>Per class: pixel AP and positive Dice</h2>{body}</section>'


def _curves_section(results: dict) -> str:
    body = (
        "<h3>Learning curve of the real arm on validation data</h3>"
        + _learning_curve(results)
        + "<h3>Training loss</h3>"
        + _loss_curves(results)
    )
    return f'<section id="curves"><h2>Training curves</h2>{body}</section>'


def _quality_section(results: dict) -> str:
    quality = _object(results.get("quality"))
    names = list(quality)
    parts = [_label_filter_part(results)]
    if not names:
        parts.append(
            _na("Synthetic-data quality: not measured (no synthetic set, or quality checks were off).")
        )
    for name in names:
        entry = _object(quality.get(name))
        parts.append(
            f"<h3>Set <code>{_esc(name)}</code></h3>"
            f"<h4>Label fidelity</h4>{_label_fidelity(results, name, _object(entry.get('label_fidelity')))}"
            f"<h4>KID</h4>{_kid(_object(entry.get('kid')))}"
            f"<h4>Diversity</h4>{_diversity(_object(entry.get('diversity')))}"
        )
    return f'<section id="quality"><h2>Synthetic-data quality</h2>{"".join(parts)}</section>'


def _label_filter_part(results: dict) -> str:
    filters = _object(results.get("label_filter"))
    if not filters:
        return ""
    classes = _class_names(results)
    rows = []
    for name, entry in filters.items():
        entry = _object(entry)
        thresholds = _object(entry.get("thresholds"))
        kept_per_class = _object(entry.get("kept_per_class"))
        not_judgeable = entry.get("not_judgeable")
        not_judgeable = (
            ", ".join(str(c) for c in not_judgeable) if isinstance(not_judgeable, list) else MISSING
        )
        per_class = "; ".join(
            f"{c}: {_count(kept_per_class.get(c))} kept, threshold "
            f"{_number(thresholds.get(c)) if _is_number(thresholds.get(c)) else 'none (not judgeable)'}"
            for c in classes
        )
        values = [
            name,
            f"{_count(entry.get('kept'))} of {_count(entry.get('items'))}",
            per_class or MISSING,
            not_judgeable or "none",
            entry.get("judge") or "not recorded",
        ]
        rows.append("<tr>" + "".join(f"<td>{_esc(v)}</td>" for v in values) + "</tr>")
    return "<h3>Label filter</h3>" + _table(
        ["Filtered set", "Items kept", "Per class", "Classes not judgeable (kept unfiltered)", "Judge"],
        rows,
        "A real-data U-Net (never trained on synthetic data) scores each synthetic item against its own "
        "mask; items whose Dice falls below the class threshold are dropped. Classes the judge cannot "
        "segment on real validation images are not judged: their items are all kept.",
    )


def _label_fidelity(results: dict, set_name: str, fidelity: dict) -> str:
    if not fidelity:
        return _na("Label fidelity: not measured.")
    if fidelity.get("not_independent"):
        return _na(f"Label fidelity: not measured: {fidelity['not_independent']}.")
    synthetic = _object(fidelity.get("synthetic"))
    real = _object(fidelity.get("real_test"))
    per_class = _object(fidelity.get("per_class"))
    classes = _class_names(results)
    rows = []
    for name in classes:
        row = _object(per_class.get(name))
        values = [_fidelity_value(row, synthetic, real, name, key) for key in FIDELITY_COLUMNS]
        if row.get("judgeable") is True:
            verdict = "judgeable"
        elif row:
            verdict = "not judgeable (the judge cannot find it on real images; ratios not computed)"
        else:
            verdict = ""
        rows.append(
            f"<tr><td>{_esc(name)}</td>"
            + "".join(
                f"<td>{_number(v)}{'x' if 'ratio' in key and _is_number(v) else ''}</td>"
                for key, v in zip(FIDELITY_COLUMNS, values, strict=True)
            )
            + f"<td>{_esc(verdict)}</td></tr>"
        )
    means = [
        synthetic.get("positive_dice_plain"),
        real.get("positive_dice_plain"),
        None,
        synthetic.get(HEADLINE),
        real.get(HEADLINE),
        None,
    ]
    rows.append(
        "<tr><th>class mean</th>"
        + "".join(f"<th>{_number(v) if v is not None else ''}</th>" for v in means)
        + "<th></th></tr>"
    )
    intro = (
        f"<p>A segmenter trained on real data ({_esc(fidelity.get('segmenter', 'not recorded'))}) is "
        f"applied to {_esc(_count(synthetic.get('images')))} synthetic images and scored against the masks "
        "they were generated from, and to the real test images: positive Dice at threshold 0.5 without "
        "post-processing, and threshold-free pixel AP. Similar scores mean the generator paints defects "
        "where its masks say; much lower scores on synthetic images mean its labels are not trustworthy.</p>"
    )
    table = _table(
        [
            "Class",
            "Pos. Dice, synthetic",
            "Pos. Dice, real test",
            "Dice ratio",
            "Pixel AP, synthetic",
            "Pixel AP, real test",
            "AP ratio",
            "Judgeable",
        ],
        rows,
    )
    return intro + table + _label_fidelity_plot(set_name, classes, synthetic, real, per_class)


def _kid(kid: dict) -> str:
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


def _diversity(diversity: dict) -> str:
    if not diversity:
        return _na("Diversity: not measured.")
    per_class = _object(diversity.get("per_class"))
    rows = []
    for name, row in per_class.items():
        row = _object(row)
        if not row.get("measured"):
            cells = [
                _esc(name),
                f"<td colspan='6'>not measured: {_esc(row.get('why') or 'no reason recorded')}</td>",
            ]
            rows.append(f"<tr><td>{cells[0]}</td>{cells[1]}</tr>")
            continue
        keys = ("mean_pairwise_distance", "real_pairwise_distance", "ratio", "window_ratio")
        values = [row.get(key) for key in keys]
        moved = row.get("hole_pixel_change")
        rows.append(
            f"<tr><td>{_esc(name)}</td>"
            + "".join(f"<td>{_number(v) if _is_number(v) else MISSING}</td>" for v in values)
            + f"<td>{_number(moved) if _is_number(moved) else MISSING}</td>"
            + f"<td>{_esc(_count(row.get('real_defects')))}</td></tr>"
        )
    table = _table(
        ["class", "draws apart", "real defects apart", "ratio", "whole-window ratio", "hole pixels moved"]
        + ["real defects"],
        rows,
    )
    return (
        f"<p>Per class: mean pairwise feature distance between {_esc(_count(diversity.get('draws')))} "
        "draws for the same mask and background, against the distance between different real defects "
        "of the class (fit part), with the features pooled over the defects (the whole-window ratio "
        "also counts the real defects' different surroundings, which draws for one background cannot "
        "have); and the mean |difference| of the hole's pixels between draws (0..1). "
        f"Worst ratio <strong>{_number(diversity.get('worst_ratio'))}</strong>. Feature space: "
        f"{_esc(diversity.get('feature_space') or 'not recorded')}. A ratio near 0 means the generator "
        f"ignores its noise (one defect per mask).</p>{table}"
    )


def _grids_section(results: dict, eval_dir: Path) -> str:
    figures = _object(results.get("figures"))
    parts = []
    pasted = {"copypaste": "Copy-paste examples", "blendpaste": "Poisson-blended copy-paste examples"}
    for base, title in pasted.items():
        if f"{base}_examples" in figures or base in _arms(results):
            figure = _inlined_figure(eval_dir, figures.get(f"{base}_examples"), title)
            parts.append(f"<h3>{_esc(title)}</h3>{figure}")
    set_names = list(_object(results.get("synthetic")))
    set_names += [k for k, v in figures.items() if isinstance(v, dict) and k not in set_names]
    classes = _class_names(results)
    for name in set_names:
        entry = _object(figures.get(name))
        parts.append(f"<h3>Set <code>{_esc(name)}</code></h3>")
        title = f"{name}: synthetic images with their masks overlaid"
        parts.append(f"<h4>Overlays</h4>{_inlined_figure(eval_dir, entry.get('overlays'), title)}")
        per_class = _object(entry.get("real_vs_synthetic"))
        parts.append("<h4>Real vs synthetic, per class</h4>")
        for class_name in classes + [c for c in per_class if c not in classes]:
            parts.append(
                _inlined_figure(
                    eval_dir, per_class.get(class_name), f"{name}: real vs synthetic {class_name}"
                )
            )
        title = f"{name}: label-fidelity failures (synthetic images where the real segmenter misses)"
        failures = _inlined_figure(eval_dir, entry.get("label_fidelity_failures"), title)
        parts.append(f"<h4>Label-fidelity failures</h4>{failures}")
    for key, value in figures.items():
        if key not in ("copypaste_examples", "blendpaste_examples") and isinstance(value, str):
            parts.append(f"<h3>{_esc(key)}</h3>{_inlined_figure(eval_dir, value, key)}")
    if not parts:
        parts.append(_na("Image grids: not available (no synthetic set and no copy-paste arm)."))
    return f'<section id="grids"><h2>Image grids</h2>{"".join(parts)}</section>'
