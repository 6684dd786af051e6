"""The results section: the claim, every arm with its spread and paired difference, per-class and
per-run detail."""

from __future__ import annotations

from defectgen.report.html import _table
from defectgen.report.values import (
    HEADLINE,
    MISSING,
    PAIRED_METRICS,
    _arms,
    _class_names,
    _count,
    _esc,
    _interval,
    _is_number,
    _mean_std,
    _na,
    _names,
    _number,
    _object,
    _per_seed_text,
    _run_crops,
    _runs_of,
    _summary_of,
)


def _results_section(results: dict) -> str:
    return (
        '<section id="results"><h2>Results</h2>'
        f"{_claim_block(results)}"
        f"{_beside_block(results)}"
        "<h3>Every arm</h3>"
        f"{_results_table(results)}"
        f"{_paired_details(results)}"
        "<h3>Pixel AP per class</h3>"
        + _per_class_table(results, "pixel_ap", "Pixel average precision on the test half (threshold-free)")
        + "<h3>Positive Dice per class</h3>"
        + _per_class_table(
            results,
            "positive_dice",
            "Positive Dice at threshold 0.5 without post-processing, on the test images holding the class",
        )
        + "<h3>F1-max per class</h3>"
        + _per_class_table(
            results, "f1_max", "Best pixel F1 over all thresholds on the test half (an optimistic bound)"
        )
        + f"{_runs_details(results)}</section>"
    )


def _claim_block(results: dict) -> str:
    claim = results.get("claim")
    if not isinstance(claim, dict):
        return _na(
            "Claim: not evaluated. It needs an arm declared before the run that adds a synthetic set to a "
            "base (the declared_arms setting, or exactly one such arm among the arms)."
        )
    met = claim.get("met")
    if met is True:
        css, verdict = "claim met", "Claim met"
    elif met is False:
        css, verdict = "claim not-met", "Claim not met"
    else:
        css, verdict = "claim", "Claim undecided (no verdict recorded)"
    declared = _names(claim.get("declared_arms"))
    declared_text = ", ".join(declared) or "(not recorded)"
    baselines = _names(claim.get("baselines"))
    versus = _object(claim.get("versus"))
    baselines += [str(b) for b in versus if str(b) not in baselines]
    crops = _object(claim.get("crops_per_step"))
    metric = str(claim.get("metric") or HEADLINE)
    metric_label = PAIRED_METRICS.get(metric, (metric, True))[0]
    columns = [(metric, "Per-seed Δ"), ("positive_dice_plain", None), ("fp_rate_defect_free", None)]
    rows = []
    for base in baselines:
        entry = _object(versus.get(base))
        cells = [f"<td>{_esc(base)}</td>", f"<td>{_esc(_count(crops.get(base)))}</td>"]
        for key, spread in columns:
            higher = PAIRED_METRICS.get(key, (key, True))[1]
            cells.append(_paired_cell(entry.get(key), higher))
            if spread:
                cells.append(f"<td>{_esc(_spread_text(_object(entry.get(key))))}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    header = [
        "Baseline",
        "Crops / step",
        f"Δ {metric_label} = declared − baseline [95 % CI]",
        "Per-seed Δ",
        "Δ positive Dice (0.5) [95 % CI]",
        "Δ FP rate, defect-free [95 % CI]",
    ]
    table = (
        _table(
            header,
            rows,
            "Paired by seed and test image; 95 % t-interval (Satterthwaite df) whose variance counts the "
            "seeds, the generators and the shared test images. A lower FP rate is better.",
        )
        if rows
        else _na("No baseline arm ran, so there is nothing to beat: the claim cannot be met.")
    )
    parts = [
        f'<p class="verdict"><strong>{_esc(verdict)}</strong>: the declared arm '
        f"<strong>{_esc(declared_text)}</strong> against every baseline "
        f"({_esc(', '.join(baselines) or 'none')}), in {_esc(metric_label)}.</p>",
        f"<p>{_esc(_generator_text(claim, declared))}</p>",
        table,
        f"<p>{_esc(_claim_verdict_text(claim, results))}</p>",
        f"<p>{_esc(_crop_match_text(claim, declared, crops))}</p>",
        f'<p class="meta">Rule: {_esc(claim.get("rule") or "not recorded")}.</p>',
    ]
    return f'<div class="{css}">{"".join(parts)}</div>'


def _beside_block(results: dict) -> str:
    """The other synthetic arms against every baseline, as the claim's arm is measured; absent
    when the results hold none."""
    beside = _object(results.get("beside_the_claim"))
    if not beside:
        return ""
    baselines: list[str] = []
    for entry in beside.values():
        baselines += [str(b) for b in _object(_object(entry).get("versus")) if str(b) not in baselines]
    rows = []
    for label, entry in beside.items():
        versus = _object(_object(entry).get("versus"))
        cells = [_paired_cell(_object(versus.get(base)).get(HEADLINE), True) for base in baselines]
        rows.append(f"<tr><td>{_esc(label)}</td>{''.join(cells)}</tr>")
    metric_label = PAIRED_METRICS.get(HEADLINE, (HEADLINE, True))[0]
    return "<h3>Measured beside the claim</h3>" + _table(
        ["Arm (generators pooled)", *(f"Δ vs {b} [95 % CI]" for b in baselines)],
        rows,
        f"Δ {metric_label}, paired as the claim is. These arms were not declared: several are shown, so "
        "the best of them is not a result of this evaluation.",
    )


def _generator_text(claim: dict, declared: list[str]) -> str:
    text = (
        "The arm was declared in the settings before the run, and it is compared with every baseline, so "
        "nothing here is picked on the test half. "
    )
    generators = claim.get("generators")
    conditional = claim.get("conditional_on_one_generator")
    if conditional is True:
        return text + (
            "It uses one generator: the interval counts seeds and test images but not the generator, so the "
            "result is conditional on this one generator (another training of it could land elsewhere)."
        )
    if conditional is False:
        return text + (
            f"It is one recipe with sets from {_count(generators)} generators ({', '.join(declared)}): "
            "the interval counts the generator-to-generator spread too."
        )
    return text + "Whether the result rests on one generator is not recorded."


def _claim_verdict_text(claim: dict, results: dict) -> str:
    every = claim.get("every_interval_above_zero")
    smallest, target = claim.get("smallest_difference"), claim.get("target_effect")
    text = {
        True: "Every interval of the headline difference lies above 0.",
        False: "Not every interval of the headline difference lies above 0.",
    }.get(every, "Whether every interval lies above 0 is not recorded.")
    if _is_number(smallest):
        text += f" Smallest difference: {_number(smallest, signed=True)}"
        if _is_number(target):
            meets = claim.get("meets_target_effect")
            reached = {True: "reached", False: "not reached"}.get(meets, "not recorded")
            text += f"; the target effect {_number(target, 2)} is {reached}"
        text += "."
    floor = _object(_object(results.get("noise_floor")).get(HEADLINE))
    mde = floor.get(
        "minimal_detectable_effect", _object(results.get("noise_floor")).get("minimal_detectable_effect")
    )
    if _is_number(mde):
        text += (
            " The noise floor (below) puts the smallest pixel-AP effect these seeds can detect at "
            f"{_number(mde)}"
        )
        if _is_number(smallest) and abs(smallest) < mde:
            text += f"; the smallest difference ({_number(smallest, signed=True)}) is below it."
        else:
            text += "."
    return text


def _crop_match_text(claim: dict, declared: list[str], crops: dict) -> str:
    own = crops.get(declared[0]) if declared else None
    matched = claim.get("crop_matched_baselines")
    if not isinstance(matched, list):
        return "Which baselines see as many crops per step as the declared arm is not recorded."
    head = f"The declared arm sees {_count(own)} crops per training step. "
    if matched:
        return head + (
            f"Baselines that see at least as many: {', '.join(str(b) for b in matched)}; so more crops alone "
            "cannot explain a win."
        )
    return head + (
        "No baseline sees as many, so a win could come from the extra crops rather than the synthetic data: "
        "the claim requires a crop-matched baseline and is not met without one."
    )


def _results_table(results: dict) -> str:
    header = [
        "Arm",
        "Crops / step",
        "Pixel AP",
        "Δ pixel AP vs real [95 % CI]",
        "Per-seed Δ",
        "F1-max",
        "Positive Dice (0.5)",
        "Δ positive Dice vs real [95 % CI]",
        "Kaggle Dice",
        "FP rate, defect-free",
        "Δ FP rate vs real [95 % CI]",
        "Pixel AUROC",
    ]
    rows = []
    arms = _arms(results)
    crops = _object(results.get("crops_per_step"))
    for arm in arms:
        summary = _summary_of(results, arm)
        paired = _object(_object(results.get("paired")).get(arm))
        seeds = len(_runs_of(results, arm))

        def stat(key: str, summary=summary, seeds=seeds) -> str:
            return f"<td>{_esc(_mean_std(summary.get(key), seeds))}</td>"

        def delta(key: str, arm=arm, paired=paired) -> str:
            if arm == "real":
                return "<td>baseline</td>"
            return _paired_cell(paired.get(key), PAIRED_METRICS[key][1])

        headline = _object(paired.get(HEADLINE))
        spread = MISSING if arm == "real" else _spread_text(headline)
        rows.append(
            "<tr>"
            + "".join(
                [
                    f"<td>{_esc(arm)}</td>",
                    f"<td>{_esc(_count(crops.get(arm, _run_crops(results, arm))))}</td>",
                    stat(HEADLINE),
                    delta(HEADLINE),
                    f"<td>{_esc(spread)}</td>",
                    stat("class_mean_f1_max"),
                    stat("positive_dice_plain"),
                    delta("positive_dice_plain"),
                    stat("kaggle_dice"),
                    stat("fp_rate_defect_free"),
                    delta("fp_rate_defect_free"),
                    stat("class_mean_pixel_auroc"),
                ]
            )
            + "</tr>"
        )
    caption = (
        "Mean ± std over seeds, on the test half. Pixel AP (the headline), F1-max and pixel AUROC are "
        "class means and threshold-free; positive Dice is at threshold 0.5 without post-processing; "
        "Kaggle Dice and the FP rate are under the one post-processing every arm shares. Δ = arm − real, "
        "paired by seed and test image, with a 95 % t-interval (Satterthwaite df) whose variance counts "
        "the seed-to-seed spread and the shared test images; a Δ whose interval excludes 0 is in bold and "
        "marked ▲ (better) or ▼ (worse). A lower FP rate is better. Crops / step: the crops one training "
        "step sees (real crops plus whatever the arm adds)."
    )
    if "real" not in arms:
        caption += " There is no real arm in this evaluation, so no Δ vs real."
    return _table(header, rows, caption)


def _paired_cell(entry: object, higher_is_better: bool) -> str:
    if not isinstance(entry, dict):
        return f"<td>{MISSING}</td>"
    detail = _paired_detail(entry)
    if not _is_number(entry.get("difference")):
        text = f"{MISSING} (undefined)" if entry.get("note") else MISSING
        return f'<td title="{_esc(detail)}">{_esc(text)}</td>'
    low, high = _interval(entry)
    if _is_number(low) and _is_number(high):
        interval = f"[{_number(low, signed=True)}, {_number(high, signed=True)}]"
    else:
        interval = "[no interval]"
    text = f"{_number(entry['difference'], signed=True)} {interval}"
    if _is_number(low) and _is_number(high) and (low > 0 or high < 0):
        better = (low > 0) == higher_is_better
        verdict, marker = ("better", "▲") if better else ("worse", "▼")
        return (
            f'<td class="{verdict}" title="{_esc(detail)}"><strong>{_esc(text)}</strong> '
            f"{marker} {verdict}</td>"
        )
    return f'<td title="{_esc(detail)}">{_esc(text)}</td>'


def _paired_detail(entry: dict) -> str:
    generators = entry.get("generators")
    text = (
        f"{_count(entry.get('seeds'))} seeds × {_count(generators)} generator(s); se "
        f"{_number(entry.get('se'))}, df {_number(entry.get('df'), 1)}; seed/generator variance "
        f"{_number(entry.get('chance_variance'), 6)}, test-image variance "
        f"{_number(entry.get('image_variance'), 6)}"
    )
    if entry.get("note"):
        text += f"; {entry['note']}"
    return text


def _spread_text(entry: dict) -> str:
    """Per-seed differences, and per-generator ones when there are several generators."""
    text = _per_seed_text(entry.get("per_seed"))
    generators = entry.get("per_generator")
    if isinstance(generators, list) and len(generators) > 1:
        text += f" (per generator: {_per_seed_text(generators)})"
    return text


def _paired_details(results: dict) -> str:
    rows = []
    for arm, metrics in _object(results.get("paired")).items():
        metrics = _object(metrics)
        for key in [*PAIRED_METRICS, *(k for k in metrics if k not in PAIRED_METRICS)]:
            if key not in metrics:
                continue
            entry = _object(metrics.get(key))
            label, higher = PAIRED_METRICS.get(key, (key, True))
            values = [
                _per_seed_text(entry.get("per_seed")),
                _number(entry.get("se")),
                _number(entry.get("df"), 1),
                _number(entry.get("chance_variance"), 6),
                _number(entry.get("image_variance"), 6),
                entry.get("note") or "",
            ]
            rows.append(
                f"<tr><td>{_esc(arm)}</td><td>{_esc(label)}</td>{_paired_cell(entry, higher)}"
                + "".join(f"<td>{_esc(v)}</td>" for v in values)
                + "</tr>"
            )
    if not rows:
        return ""
    header = [
        "Arm",
        "Metric",
        "Δ vs real [95 % CI]",
        "Per-seed Δ",
        "se",
        "df",
        "Seed variance",
        "Test-image variance",
        "Note",
    ]
    caption = (
        "se² = seed (and generator) variance of the mean difference + the variance the shared test "
        "images add; df by Satterthwaite's rule over those terms."
    )
    return (
        f"<details><summary>Every paired difference ({len(rows)})</summary>"
        f"{_table(header, rows, caption)}</details>"
    )


def _per_class_table(results: dict, key: str, what: str) -> str:
    arms = _arms(results)
    rows = []
    for name in _class_names(results):
        cells = [f"<td>{_esc(name)}</td>"]
        for arm in arms:
            stat = _object(_summary_of(results, arm).get(key)).get(name)
            cells.append(f"<td>{_esc(_mean_std(stat, len(_runs_of(results, arm))))}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    caption = f"{what}; mean ± std over seeds; {MISSING} = not measurable (no such test image)."
    return _table(["Class", *arms], rows, caption)


def _runs_details(results: dict) -> str:
    rows = []
    for run in results["runs"]:
        test = _object(run.get("test"))
        validation = _object(run.get("validation"))
        trained_on = run.get("real_items_trained_on")
        values = [
            run.get("arm", MISSING),
            run.get("seed", MISSING),
            run.get("steps", MISSING),
            _count(run.get("crops_per_step")),
            _number(run.get("seconds"), 1),
            _number(validation.get(HEADLINE)),
            _number(validation.get("positive_dice_plain")),
            _number(test.get(HEADLINE)),
            _number(test.get("class_mean_f1_max")),
            _number(test.get("positive_dice_plain")),
            _number(test.get("kaggle_dice")),
            _number(test.get("fp_rate_defect_free")),
            _number(test.get("class_mean_pixel_auroc")),
            len(trained_on) if isinstance(trained_on, list) else MISSING,
            f"{_count(test.get('images'))} ({_count(test.get('defect_free_images'))} defect-free)",
        ]
        rows.append("<tr>" + "".join(f"<td>{_esc(v)}</td>" for v in values) + "</tr>")
    header = [
        "Arm",
        "Seed",
        "Steps",
        "Crops / step",
        "Seconds",
        "Val. pixel AP",
        "Val. pos. Dice (0.5)",
        "Pixel AP",
        "F1-max",
        "Pos. Dice (0.5)",
        "Kaggle Dice",
        "FP rate",
        "Pixel AUROC",
        "Real images used",
        "Test images",
    ]
    caption = (
        "Validation: the validation part, no post-processing. Test: the test half; Kaggle Dice and FP rate "
        "under the shared post-processing, the rest without. Real images used: distinct real training "
        "images whose crops the run saw."
    )
    return f"<details><summary>Every run ({len(rows)})</summary>{_table(header, rows, caption)}</details>"
