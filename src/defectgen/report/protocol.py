"""The protocol section, written from the numbers recorded (not from defaults), and the guide to
reading the page."""

from __future__ import annotations

from defectgen.report.html import _table
from defectgen.report.values import (
    MISSING,
    NOT_FLAT,
    _arm_description,
    _arms,
    _class_names,
    _count,
    _esc,
    _is_number,
    _list_text,
    _na,
    _names,
    _number,
    _object,
    _percent,
    _runs_of,
    _sorted,
)


def _protocol_section(results: dict) -> str:
    arms = _arms(results)
    parts = [
        _dataset_sentence(results),
        _split_sentence(_object(results.get("split")), results["config"]),
        _segmenter_sentence(results["config"]),
        _steps_sentence(results),
        _seeds_sentence(results, arms),
    ]
    arm_items = "".join(
        f"<li><strong>{_esc(arm)}</strong>: {_esc(_arm_description(results, arm))}"
        f"{_esc(_filter_note(results, arm))}</li>"
        for arm in arms
    )
    warnings = "".join(f'<p class="warning">{_esc(text)}</p>' for text in _protocol_warnings(results))
    return (
        '<section id="protocol"><h2>Protocol</h2>'
        f"{warnings}"
        f"<p>{' '.join(parts)}</p>"
        f"<p>{_pairing_sentence(results, arms)}</p>"
        f"<p>Arms:</p><ul>{arm_items}</ul>"
        f"<p>{_declared_sentence(results)}</p>"
        f"<p>{_post_processing_sentence(results['config'])}</p>"
        f"{_post_processing_table(results)}"
        f"<p>{_metrics_sentence(results)}</p>"
        f"<p>{_interval_sentence(results)}</p></section>"
    )


def _dataset_sentence(results: dict) -> str:
    names = ", ".join(_class_names(results)) or "none listed"
    text = (
        f"Dataset <code>{_esc(results.get('dataset') or 'not recorded')}</code> with classes {_esc(names)}."
    )
    sets = _object(results.get("synthetic"))
    if sets:
        described = []
        for name, entry in sets.items():
            entry = _object(entry)
            described.append(
                f"<code>{_esc(name)}</code> (<code>{_esc(entry.get('path', MISSING))}</code>, "
                f"{_esc(_count(entry.get('images')))} images, masks from "
                f"{_esc(entry.get('mask_source') or 'an unrecorded source')}, fingerprint "
                f"{_esc(entry.get('fingerprint') or MISSING)}; {_lineage_text(entry.get('lineage'))})"
            )
        text += f" Synthetic sets: {'; '.join(described)}."
    else:
        text += " No synthetic set was given."
    return text


def _lineage_text(lineage: object) -> str:
    """What a set was made from, as evaluate checked it (no test item: it would have refused)."""
    lineage = _object(lineage)
    if not lineage:
        return "its lineage is not recorded"
    read = lineage.get("items_read")
    text = (
        f"made from {_count(read)} items of this dataset's training half (split "
        f"{_esc(lineage.get('split_digest') or MISSING)}, generator's split "
        f"{_esc(lineage.get('generator_split_digest') or MISSING)}), none of the test half"
    )
    held_out = [
        f"{_count(lineage[key])} {what}"
        for key, what in (("validation_items_read", "of the validation part"),
                          ("unlabelled_items_read", "whose labels the split holds back"))
        if _is_number(lineage.get(key)) and lineage[key] > 0
    ]  # fmt: skip
    if lineage.get("judged") is True:
        held_out.append("its items chosen by a judge's validation scores")
    if held_out:
        return text + f"; {', '.join(held_out)}, so it cannot carry the claim"
    return text + ("; nothing the evaluation holds out" if "validation_items_read" in lineage else "")


def _split_sentence(split: dict, config: dict) -> str:
    if not split:
        return "The train/test split is not recorded."
    test = split.get("test_fraction")
    shares = (
        f"{_percent(1 - test)} train / {_percent(test)} test"
        if _is_number(test)
        else "an unrecorded train/test share"
    )
    label = split.get("label_fraction")
    per_class = _object(split.get("test_images_per_class"))
    per_class_text = (
        " (" + ", ".join(f"{name}: {_count(count)}" for name, count in per_class.items()) + " with the class)"
        if per_class
        else ""
    )
    file = split.get("file") or "not saved to a file"
    text = (
        f"{shares}, stratified by the set of classes in each image, seed {split.get('seed', MISSING)}. "
        f"The segmenters see {_percent(label)} of the training half's defect images (all its "
        f"defect-free images are kept): {_count(split.get('train_images'))} training images, cut "
        f"into a fit part of {_count(split.get('fit_images'))} images that segmenters train on and a "
        f"stratified validation part of {_count(split.get('validation_images'))} images "
        f"({_percent(config.get('val_fraction'))}) that gives the real arm's learning curve and the shared "
        f"post-processing; {_count(split.get('test_images'))} test images{per_class_text} only score."
    )
    return f"Split <code>{_esc(file)}</code>: {_esc(text)}"


def _segmenter_sentence(config: dict) -> str:
    weights = config.get("encoder_weights")
    init = "trained from scratch" if not weights else f"initialised with the weights {weights}"
    depth = config.get("encoder_depth")
    depth_text = f" ({depth} stages)" if isinstance(depth, int) and not isinstance(depth, bool) else ""
    decoder = config.get("decoder_channels")
    decoder_text = f", decoder channels {_list_text(decoder)}" if isinstance(decoder, list) else ""
    crop = config.get("crop_size")
    crop_text = f"{crop}×{crop} px" if crop is not None else "fixed-size"
    defect_share = config.get("defect_crop_share")
    defect_text = (
        f" ({_percent(defect_share)} of real crops placed on a defect)" if _is_number(defect_share) else ""
    )
    loss = f"; loss: {config['loss']}" if config.get("loss") else ""
    return _esc(
        f"Segmenter: segmentation_models_pytorch U-Net with a {config.get('encoder', 'unrecorded')} "
        f"encoder{depth_text}{decoder_text}, {init}, on {crop_text} crops cut at native resolution"
        f"{defect_text}; batch size {config.get('batch_size', MISSING)}, learning rate "
        f"{config.get('lr', MISSING)}, {config.get('precision', 'unrecorded')} precision{loss}."
    )


def _steps_sentence(results: dict) -> str:
    config = results["config"]
    steps = config.get("steps", MISSING)
    curve = results.get("learning_curve")
    if not isinstance(curve, dict):
        how = (
            "no validation learning curve was recorded, so whether that budget reaches a flat curve "
            "is unknown"
        )
    else:
        flat = curve.get("flat")
        flat_text = (
            "it is flat"
            if flat is True
            else "it was still rising in its last third"
            if flat is False
            else "whether it is flat could not be decided"
        )
        how = (
            "the budget is fixed in advance (nothing is chosen on validation or test data); the real arm's "
            "first seed is also trained for a third and two thirds of the steps, each on its own schedule, "
            f"and the validation part scores every budget: {flat_text}"
        )
    return _esc(f"Every arm trains for the same {steps} steps; {how}.")


def _pairing_sentence(results: dict, arms: list[str]) -> str:
    config = results["config"]
    batch = config.get("batch_size")
    batch_text = f"{batch}" if _is_number(batch) else "batch-size"
    extra = _extra_count(batch, config.get("extra_share"))
    synthetic = _extra_count(batch, config.get("synthetic_share"))
    until = config.get("synthetic_until")
    if _is_number(until) and until < 1:
        until_text = f", during the first {_percent(until)} of the steps only"
    elif _is_number(until):
        until_text = ", during all steps"
    else:
        until_text = ""
    text = (
        f"Pairing: at each seed every arm starts from the same initial weights and sees the same "
        f"{batch_text} real crops per step, in the same order. An arm only adds crops on top of them "
        f"— oversampled or copy-pasted real defects ({extra} per step), each synthetic set "
        f"({synthetic} per step{until_text}) — or, for classic, augments those same crops."
    )
    crops = _object(results.get("crops_per_step"))
    if crops:
        listed = ", ".join(f"{arm} {_count(count)}" for arm, count in crops.items())
        text += f" Crops per training step: {listed}."
    if "control" in arms:
        text += (
            " The control arm draws its real crops from an independent stream, so its difference from "
            "real is pure training noise (the noise floor, below)."
        )
    if any(arm.endswith("-only") for arm in arms):
        text += " A NAME-only arm trains on that synthetic set's crops instead of real crops."
    text += (
        " So the arms of one seed differ only by what they add, and are compared seed by seed on the "
        "same test images."
    )
    return _esc(text)


def _extra_count(batch: object, share: object) -> str:
    if _is_number(batch) and _is_number(share):
        return f"{max(1, round(batch * share))} crops = {_percent(share)} of the batch size"
    return "an unrecorded number of crops"


def _seeds_sentence(results: dict, arms: list[str]) -> str:
    seeds = results["config"].get("seeds")
    seed_text = ", ".join(str(s) for s in seeds) if isinstance(seeds, list) else "not recorded"
    count = len(seeds) if isinstance(seeds, list) else 0
    spread = (
        "mean ± std over seeds" if count > 1 else "a single seed, so no spread over seeds and no interval"
    )
    std = results["config"].get("std")
    std_text = f"; std: {std}" if std and count > 1 else ""
    return _esc(
        f"Each of the {len(arms)} arms is trained with seeds {seed_text} ({spread}{std_text}); a seed fixes "
        "the initial weights and the real crops, the same for every arm."
    )


def _declared_sentence(results: dict) -> str:
    declared = _names(results["config"].get("declared_arms"))
    if not declared:
        return _esc(
            "No arm was declared for the claim before the run, so the evaluation makes no claim; every arm "
            "is still compared with real below."
        )
    many = len(declared) > 1
    return _esc(
        f"Declared before the run for the claim: {', '.join(declared)}"
        + (" (one recipe, sets from different generators)" if many else "")
        + ". It is compared with every baseline arm; no arm is picked after seeing the test half."
    )


def _post_processing_sentence(config: dict) -> str:
    grid = _object(config.get("post_processing"))
    thresholds, areas = grid.get("thresholds"), grid.get("min_areas")
    grid_text = (
        f"from the thresholds {_list_text(thresholds)} and the minimum areas {_list_text(areas)} px"
        if isinstance(thresholds, list) and isinstance(areas, list)
        else "from a grid that is not recorded"
    )
    rule = f" (recorded rule: {grid['rule']})" if grid.get("rule") else ""
    return _esc(
        "Post-processing: one per class for every arm and seed, chosen once, after every run has finished, "
        "on the real arm's validation predictions pooled over its seeds: a probability threshold and a "
        f"minimum connected-component area (smaller components are erased), {grid_text}, by the best "
        "pooled Dice (2 × overlap / (predicted + target pixels), summed over all validation images, so "
        f"predicting nothing cannot win){rule}. It applies to the Kaggle Dice and the FP rate only; "
        "pixel AP, F1-max and pixel AUROC need no threshold, and positive Dice is taken at 0.5 without it. "
        "The test half never chooses anything. Chosen values:"
    )


def _post_processing_table(results: dict) -> str:
    table = _object(results.get("post_processing"))
    if not table:
        return _na("Post-processing: not recorded.")
    classes = _class_names(results)
    rows = []
    for name in classes + [c for c in table if c not in classes]:
        entry = _object(table.get(name))
        if not entry:
            rows.append(f"<tr><td>{_esc(name)}</td>" + f"<td>{MISSING}</td>" * 5 + "</tr>")
            continue
        values = [
            name,
            _number(entry.get("threshold"), 2),
            _count(entry.get("min_area")),
            _number(entry.get("pooled_validation_dice")),
            _number(entry.get("plain_validation_dice")),
            entry.get("rule") or "not recorded",
        ]
        rows.append("<tr>" + "".join(f"<td>{_esc(v)}</td>" for v in values) + "</tr>")
    return _table(
        [
            "Class",
            "Threshold",
            "Min. area (px)",
            "Pooled validation Dice",
            "Plain (0.5, no area filter)",
            "Why",
        ],
        rows,
        "One post-processing per class for all arms, chosen on the real arm's validation predictions "
        f"pooled over seeds; {MISSING} = no validation positives to measure.",
    )


def _metrics_sentence(results: dict) -> str:
    return (
        "Metrics on the test half. The headline is <strong>class-mean pixel AP</strong>: per class, the "
        "average precision of the pixel probabilities against the target pixels of all test images "
        "(probabilities binned to 1/256), threshold-free, then averaged over the classes that have test "
        "positives. Beside it: class-mean <strong>F1-max</strong>, the best pixel F1 over all thresholds "
        "(picked on the test pixels themselves, so an optimistic bound); <strong>positive Dice</strong> at "
        "a fixed 0.5 threshold without post-processing, per class over only the images that contain the "
        "class, averaged over classes; class-mean (Kaggle-style) Dice over all (image, class) pairs, where "
        "an empty prediction on an empty target counts 1, and the image-level false-positive rate, the "
        "share of defect-free test images with any predicted defect pixel, both under the shared "
        "post-processing; and class-mean pixel AUROC."
    )


def _interval_sentence(results: dict) -> str:
    interval = results["config"].get("interval") or "not recorded"
    return _esc(
        "Comparison: Δ = arm − real, paired by seed (same initial weights and real crops) and by test "
        "image (same images). The per-seed differences are shown; the 95 % interval is a t-interval with "
        "Satterthwaite degrees of freedom. Its variance adds the chance term of a crossed generator × seed "
        "layout (from the ANOVA mean squares; with one generator simply the seed-to-seed variance of the "
        "differences over the number of seeds, and the result is conditional on that generator) to the "
        "term of the shared test images (the bootstrap covariance of two cells that share neither seed "
        f"nor generator) (recorded rule: {interval}). With few seeds it is wide by construction."
    )


def _filter_note(results: dict, arm: str) -> str:
    filters = _object(results.get("label_filter"))
    notes = []
    for part in arm.split("+")[1:]:
        entry = filters.get(part)
        if isinstance(entry, dict):
            notes.append(
                f"label filter on {entry.get('set', part)} kept {_count(entry.get('kept'))} of "
                f"{_count(entry.get('items'))} items"
            )
    return f" ({'; '.join(notes)})" if notes else ""


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
    if _object(results.get("learning_curve")).get("flat") is False:
        warnings.append(NOT_FLAT)
    seeds = results["config"].get("seeds")
    if isinstance(seeds, list):
        for arm in _arms(results):
            done = _sorted(run.get("seed") for run in _runs_of(results, arm))
            if done != _sorted(seeds):
                warnings.append(f"Arm {arm} has runs for seeds {done}, not the configured {_sorted(seeds)}.")
        if len(seeds) < 2:
            warnings.append(
                "One seed only: no spread over seeds and no confidence interval for any difference."
            )
    return warnings


def _reading_section() -> str:
    return (
        '<section id="reading"><h2>How to read this report</h2><p>'
        "At one seed every arm starts from the same weights, sees the same real crops and is scored on the "
        "same test images; arms differ only by what they add. <strong>Class-mean pixel AP is the number to "
        "watch.</strong> It needs no threshold, so no choice made after training can move it, and it ranks "
        "every pixel of every test image: an arm that paints defects everywhere loses precision, one that "
        "finds nothing loses recall. An arm beats <em>real</em> only when its paired difference has a 95 % "
        "interval entirely above 0 (bold, ▲); an interval that straddles 0 means these seeds and test images "
        "cannot tell the two apart, whatever the means say. The interval already contains the seed-to-seed "
        "training noise, the generator-to-generator spread when there are several generators, and the "
        "choice of test images, so with a handful of seeds it is wide by construction. Look at the per-seed "
        "differences too: a gain that changes sign between seeds is not a gain. The noise floor says how "
        "large an effect must be before this evaluation can see it at all. The claim is about one arm "
        "declared before the run, against every baseline: with a single generator it is conditional on that "
        "generator, and a baseline that sees fewer crops per step cannot by itself settle it. "
        "Positive Dice at 0.5 is the plain segmentation score on the images that contain a defect; Kaggle "
        "Dice and the false-positive rate on defect-free images depend on the one shared post-processing "
        "(chosen on the real arm's validation predictions, the same for every arm). Most (image, class) "
        "pairs are empty and Kaggle Dice gives 1 for predicting nothing on them, so read it with positive "
        "Dice; a Dice gain that comes with a clearly higher FP rate is a trade-off, not a win. F1-max picks "
        "its threshold on the test pixels and is an optimistic bound. If the real arm's validation curve "
        "was not flat, every arm stopped early and the ranking may change with longer training. Label "
        "fidelity tells whether synthetic masks can be trusted as labels; KID (lower = closer to real) and "
        "diversity describe the images themselves and do not by themselves prove usefulness."
        "</p></section>"
    )
