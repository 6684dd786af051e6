"""The report's figures (matplotlib, rendered to PNG): per-class bars, learning and loss curves,
label fidelity."""

from __future__ import annotations

import math

from matplotlib.figure import Figure

from defectgen.report.html import _figure_html, _table
from defectgen.report.values import (
    MISSING,
    NOT_FLAT,
    _arms,
    _esc,
    _float_or_nan,
    _is_number,
    _mean_and_std,
    _na,
    _number,
    _object,
    _plain,
    _points,
    _runs_of,
    _summary_of,
)

# per-class fidelity key -> (summary it falls back to, that summary's per-class key)
FIDELITY_FALLBACK = {
    "synthetic": ("synthetic", "positive_dice"),
    "real_test": ("real", "positive_dice"),
    "synthetic_pixel_ap": ("synthetic", "pixel_ap"),
    "real_test_pixel_ap": ("real", "pixel_ap"),
}


# Fixed colours for the bases so they look the same in every plot; `real` is a neutral grey.
# Compositions (real+NAME, NAME-only, ...) get the fallback colours in order.
ARM_COLOURS = {
    "real": "#7f7f7f",
    "control": "#c7c7c7",
    "oversample": "#56b4e9",
    "copypaste": "#e69f00",
    "blendpaste": "#b07aa1",
    "classic": "#009e73",
}


FALLBACK_COLOURS = ["#d55e00", "#0072b2", "#cc79a7", "#f0e442", "#000000", "#8c564b", "#17becf"]


SYNTHETIC_COLOUR = "#d55e00"


def _per_class_chart(results: dict, classes: list[str], arms: list[str]) -> Figure:
    """Grouped bars, pixel AP above positive Dice: one group per class, one bar per arm, error
    bars = std over seeds."""
    figure = Figure(
        figsize=(min(14.0, max(6.0, 0.3 * len(classes) * len(arms) + 2.0)), 6.4), layout="constrained"
    )
    width = 0.8 / len(arms)
    for row, (key, label) in enumerate((("pixel_ap", "pixel AP (test)"), ("positive_dice", "positive Dice"))):
        axes = figure.add_subplot(2, 1, row + 1)
        for index, arm in enumerate(arms):
            per_class = _object(_summary_of(results, arm).get(key))
            means, stds = zip(*(_mean_and_std(per_class.get(name)) for name in classes), strict=True)
            positions = [c + (index - (len(arms) - 1) / 2) * width for c in range(len(classes))]
            axes.bar(
                positions,
                means,
                width,
                yerr=stds,
                capsize=2,
                label=_plain(arm) if row == 0 else None,
                color=_arm_colour(arms, arm),
            )
            for x, mean in zip(positions, means, strict=True):
                if math.isnan(mean):
                    axes.text(x, 0.01, "n/a", rotation=90, ha="center", va="bottom", fontsize="x-small")
        axes.set_xticks(
            range(len(classes)), [_plain(name) for name in classes], rotation=20 if len(classes) > 5 else 0
        )
        axes.set_ylabel(label)
        axes.set_ylim(0, 1)
        axes.grid(axis="y", alpha=0.3)
    figure.legend(loc="outside upper center", ncols=min(len(arms), 6), fontsize="small")
    return figure


def _learning_curve(results: dict) -> str:
    config = results["config"]
    curve = results.get("learning_curve")
    if not isinstance(curve, dict):
        return _na(
            f"No learning curve recorded (the real arm's first seed made no validation point in its "
            f"{config.get('steps', MISSING)} steps), so whether the training budget reaches a flat curve "
            "is not known."
        )
    flat = curve.get("flat")
    late, total, share = curve.get("late_gain"), curve.get("total_gain"), curve.get("late_share")
    gain_text = ""
    if _is_number(late) and _is_number(total):
        share_text = f" ({100 * share:.0f} %)" if _is_number(share) else ""
        gain_text = (
            f" Its last third gained {_number(late, signed=True)} of a total gain of "
            f"{_number(total, signed=True)}{share_text}."
        )
    if flat is True:
        verdict = f"<p>The validation curve is <strong>flat</strong>.{_esc(gain_text)}</p>"
    elif flat is False:
        verdict = f'<p class="warning">{_esc(NOT_FLAT)}{_esc(gain_text)}</p>'
    else:
        verdict = _na(
            "Whether the validation curve is flat: not decided (fewer than three points, or no gain from "
            f"the first point to the last).{gain_text}"
        )
    points = _points(curve.get("points"), numbers=1)
    if not points:
        return verdict + _na("Learning curve recorded without points.")
    columns = curve.get("columns")
    columns = [str(c) for c in columns] if isinstance(columns, list) else []
    labels = [
        columns[i] if len(columns) > i else default
        for i, default in (
            (0, "step"),
            (1, "validation class-mean pixel AP"),
            (2, "validation positive Dice (0.5)"),
        )
    ]
    figure = Figure(figsize=(6.4, 3.4), layout="constrained")
    axes = figure.add_subplot()
    steps = [p[0] for p in points]
    for column, (colour, style) in enumerate([("#0072b2", "-"), ("#7f7f7f", "--")], start=1):
        values = [p[column] if len(p) > column else math.nan for p in points]
        if any(not math.isnan(v) for v in values):
            axes.plot(
                steps,
                values,
                marker="o",
                markersize=3,
                color=colour,
                linestyle=style,
                label=_plain(labels[column]),
            )
    axes.set_xlabel("step")
    axes.set_ylabel("validation score")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    images = _object(results.get("split")).get("validation_images")
    count = f" ({images} images)" if isinstance(images, int) and not isinstance(images, bool) else ""
    caption = (
        f"Real arm, first seed, on the validation part{count}, scored during its own "
        f"{config.get('steps', '')}-step run (one learning-rate schedule over all its steps, so an early "
        f"point is not what a shorter run would reach); rule: {curve.get('rule') or 'not recorded'}."
    )
    rows = [
        "<tr>"
        + "".join(f"<td>{_esc(_curve_value(p[i] if len(p) > i else math.nan, i))}</td>" for i in range(3))
        + "</tr>"
        for p in points
    ]
    table = _table(labels, rows)
    return (
        verdict
        + _figure_html(figure, "Validation pixel AP and positive Dice against training step", caption)
        + f"<details><summary>Learning-curve points ({len(points)})</summary>{table}</details>"
    )


def _curve_value(value: float, column: int) -> str:
    if column == 0:
        return f"{value:.0f}" if math.isfinite(value) else MISSING
    return _number(value)


def _loss_curves(results: dict) -> str:
    arms = [
        arm for arm in _arms(results) if any(_points(run.get("loss_curve")) for run in _runs_of(results, arm))
    ]
    if not arms:
        return _na("No training-loss curves recorded.")
    columns = min(3, len(arms))
    rows = math.ceil(len(arms) / columns)
    figure = Figure(figsize=(4.2 * columns, 3.0 * rows), layout="constrained")
    axes_list = figure.subplots(rows, columns, sharex=True, sharey=True, squeeze=False).ravel()
    for axes, arm in zip(axes_list, arms, strict=False):
        for run in _runs_of(results, arm):
            points = _points(run.get("loss_curve"))
            if points:
                axes.plot(
                    [p[0] for p in points],
                    [p[1] for p in points],
                    linewidth=1,
                    label=f"seed {_plain(run.get('seed', '?'))}",
                )
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


def _fidelity_value(row: dict, synthetic: dict, real: dict, name: str, key: str) -> object:
    """A per-class fidelity number, from the per-class entry or else from the summaries."""
    if key in row:
        return row[key]
    if key not in FIDELITY_FALLBACK:
        return None
    source, per_class_key = FIDELITY_FALLBACK[key]
    summary = synthetic if source == "synthetic" else real
    return _object(summary.get(per_class_key)).get(name)


def _label_fidelity_plot(
    set_name: str, classes: list[str], synthetic: dict, real: dict, per_class: dict
) -> str:
    if not classes:
        return ""
    figure = Figure(figsize=(max(7.0, 2.0 * len(classes) + 3.0), 2.8), layout="constrained")
    panels = (
        ("positive Dice (0.5)", "synthetic", "real_test"),
        ("pixel AP", "synthetic_pixel_ap", "real_test_pixel_ap"),
    )
    for index, (ylabel, synthetic_key, real_key) in enumerate(panels):
        axes = figure.add_subplot(1, 2, index + 1)
        for offset, (label, key, colour) in enumerate(
            [
                (f"synthetic ({_plain(set_name)})", synthetic_key, SYNTHETIC_COLOUR),
                ("real test", real_key, ARM_COLOURS["real"]),
            ]
        ):
            values = [
                _float_or_nan(_fidelity_value(_object(per_class.get(name)), synthetic, real, name, key))
                for name in classes
            ]
            axes.bar(
                [c + (offset - 0.5) * 0.38 for c in range(len(classes))],
                values,
                0.38,
                label=label,
                color=colour,
            )
        axes.set_xticks(range(len(classes)), [_plain(name) for name in classes])
        axes.set_ylim(0, 1)
        axes.set_ylabel(ylabel)
        axes.grid(axis="y", alpha=0.3)
        if index == 0:
            axes.legend(fontsize="small")
    return _figure_html(
        figure,
        f"Label fidelity per class: {set_name}",
        "Positive Dice (left) and pixel AP (right) of the real-data segmenter, per class.",
    )


def _arm_colour(arms: list[str], arm: str) -> str:
    if arm in ARM_COLOURS:
        return ARM_COLOURS[arm]
    others = [a for a in arms if a not in ARM_COLOURS]
    return FALLBACK_COLOURS[others.index(arm) % len(FALLBACK_COLOURS)]
