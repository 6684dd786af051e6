"""`defectgen report`: one self-contained HTML page from a format-3 results.json built on the fly."""

from __future__ import annotations

import base64
import copy
import json
import re
from dataclasses import asdict
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from defectgen.errors import DataError
from defectgen.report import render_report, write_report
from defectgen.report import results as report_results

EVIL = '<script>alert("x")</script>'
CLASSES = ["Blowhole", "Crack", EVIL]
SECTIONS = ["protocol", "results", "noise-floor", "per-class", "curves", "quality", "grids", "reading"]
EVIL_ARM = f"oversample+{EVIL}:filtered"
ARMS = ["real", "control", "oversample", "real+tiles", EVIL_ARM]
CROPS = {"real": 8, "control": 8, "oversample": 12, "real+tiles": 12, EVIL_ARM: 16}
INTERVAL = (
    "t (Satterthwaite df); variance = crossed generator x seed ANOVA term + the shared test images' term"
)
NOT_FLAT = "the training budget did not reach a flat curve"


def _stat(mean: float | None, std: float | None = 0.02) -> dict:
    return {"mean": mean, "std": std}


def _per_class(first: float | None, last: float | None = 0.2) -> dict:
    return {CLASSES[0]: first, CLASSES[1]: None, CLASSES[2]: last}


def _scores(ap: float, dice: float, post_processed: bool = True) -> dict:
    """One run's summary (`scores.summarize`); with post_processed, Kaggle Dice and FP rate too."""
    summary = {
        "class_mean_pixel_ap": ap,
        "class_mean_f1_max": ap + 0.05,
        "class_mean_pixel_auroc": 0.95,
        "positive_dice_plain": dice,
        "pixel_ap": _per_class(ap),
        "f1_max": _per_class(ap + 0.05),
        "pixel_auroc": _per_class(0.95, 0.9),
        "prevalence": _per_class(0.01, 0.002),
        "positive_dice": _per_class(dice),
        "image_auroc": _per_class(0.8, 0.7),
        "images": 672,
        "defect_free_images": 476,
        "positive_images": {CLASSES[0]: 40, CLASSES[1]: 0, CLASSES[2]: 12},
    }
    if post_processed:
        summary.update(kaggle_dice=0.91, fp_rate_defect_free=0.1)
    return summary


def _run(arm: str, seed: int, ap: float) -> dict:
    return {
        "arm": arm,
        "seed": seed,
        "steps": 800,
        "crops_per_step": CROPS[arm],
        "seconds": 190.2,
        "loss_curve": [[10, 1.2 - 0.1 * seed], [20, 1.0], [30, 0.8]],
        "validation": _scores(ap - 0.05, 0.35, post_processed=False),
        "test_plain": _scores(ap, 0.4, post_processed=False),
        "test": _scores(ap, 0.4),
        "real_items_trained_on": ["im_001", "im_002", "im_003"],
        "segmenter": {
            "encoder": "resnet18",
            "encoder_depth": 4,
            "decoder_channels": [64, 32, 16, 8],
            "channels": 1,
            "classes": 3,
        },
    }


def _summary(ap: float, dice: float = 0.4) -> dict:
    return {
        "class_mean_pixel_ap": _stat(ap, 0.021),
        "class_mean_f1_max": _stat(ap + 0.05, 0.03),
        "positive_dice_plain": _stat(dice, 0.015),
        "kaggle_dice": _stat(0.912, 0.004),
        "fp_rate_defect_free": _stat(0.1, 0.05),
        "class_mean_pixel_auroc": _stat(0.812, 0.011),
        "pixel_ap": {CLASSES[0]: _stat(ap), CLASSES[1]: _stat(None, None), CLASSES[2]: _stat(0.2)},
        "positive_dice": {CLASSES[0]: _stat(dice), CLASSES[1]: _stat(None, None), CLASSES[2]: _stat(0.25)},
        "f1_max": {CLASSES[0]: _stat(0.61), CLASSES[1]: _stat(None, None), CLASSES[2]: _stat(0.3)},
    }


def _paired(
    difference: float | None,
    low: float | None,
    high: float | None,
    per_seed: list,
    per_generator: list | None = None,
) -> dict:
    """One paired comparison (`statistics.compare`)."""
    per_generator = per_generator if per_generator is not None else [difference]
    entry = {
        "difference": difference,
        "ci95": [low, high],
        "per_seed": per_seed,
        "per_generator": per_generator,
        "cells": [per_seed for _ in per_generator],
        "se": None if difference is None else 0.0123,
        "chance_variance": None if difference is None else 0.0001,
        "image_variance": None if difference is None else 0.00005,
        "df": None if difference is None else 3.4,
        "generators": len(per_generator),
        "seeds": len(per_seed),
        "conditional_on_one_generator": len(per_generator) == 1,
    }
    if difference is None:
        entry["note"] = "the metric is undefined on this test set for some run (e.g. no defect-free image)"
    return entry


def _arm_pairs(ap: dict, dice: dict | None = None, fp_rate: dict | None = None) -> dict:
    return {
        "class_mean_pixel_ap": ap,
        "class_mean_f1_max": _paired(0.004, -0.01, 0.018, [0.003, 0.005]),
        "positive_dice_plain": dice or _paired(0.002, -0.03, 0.034, [0.01, -0.006]),
        "kaggle_dice": _paired(0.001, -0.004, 0.006, [0.0, 0.002]),
        "fp_rate_defect_free": fp_rate or _paired(0.0, -0.01, 0.01, [0.0, 0.0]),
    }


def _floor(
    seed_sd: float | None, mde: float | None, control: list[float], needed: dict | None = None
) -> dict:
    entry: dict = {"arms_pooled": ["control", "oversample", "real+tiles"], "residual_df": 3}
    if mde is not None:
        entry.update(
            seed_sd=seed_sd,
            image_se=0.0083,
            minimal_detectable_effect=mde,
            seeds_needed_for=needed,
            control={"per_seed_differences": control, "minimal_detectable_effect": 0.31},
        )
    return entry


def _config() -> dict:
    """`asdict(EvalConfig)` plus the text entries `Evaluation.config_record` adds."""
    return {
        "arms": ["real", "control", "oversample", "tiles", EVIL_ARM],  # as the user wrote them
        "seeds": [0, 1],
        "declared_arms": ["real+tiles"],
        "steps": 800,
        "curve": True,
        "val_fraction": 0.2,
        "crop_size": 128,
        "batch_size": 8,
        "lr": 0.0003,
        "encoder": "resnet18",
        "encoder_depth": 4,
        "decoder_channels": [64, 32, 16, 8],
        "encoder_weights": None,
        "extra_share": 0.5,
        "synthetic_share": 0.25,
        "synthetic_until": 0.5,
        "defect_crop_share": 0.5,
        "filter_floor": 0.2,
        "filter_ratio": 0.5,
        "precision": "bf16",
        "quality_samples": 200,
        "inception_weights": None,
        "diversity_masks": 16,
        "diversity_draws": 4,
        "loss": "BCE + Dice (multilabel)",
        "std": "sample standard deviation over seeds (ddof 1)",
        "interval": INTERVAL,
        "post_processing": {
            "thresholds": [0.3, 0.5, 0.7],
            "min_areas": [0, 16, 32, 64],
            "rule": "one per class for every arm: best pooled Dice on the real arm's validation predictions",
        },
        "training_data": "the fit part of the training half",
    }


def _results() -> dict:
    ap = {"real": 0.4, "control": 0.401, "oversample": 0.41, "real+tiles": 0.456, EVIL_ARM: 0.43}
    return {
        "format": "defectgen-eval/3",
        "created": "2026-11-27T10:00:00Z",
        "versions": {"defectgen": "0.1.0", "torch": "2.5.0", "segmentation_models_pytorch": "0.3.4"},
        "dataset": "folder:../shared/data/magnetic_tile",
        "classes": [{"id": i + 1, "name": name} for i, name in enumerate(CLASSES)],
        "split": {
            "file": "split.json",
            "seed": 0,
            "test_fraction": 0.5,
            "label_fraction": 0.25,
            "train_images": 524,
            "fit_images": 419,
            "validation_images": 105,
            "test_images": 672,
            "test_images_per_class": {CLASSES[0]: 40, CLASSES[1]: 0, CLASSES[2]: 12},
        },
        "synthetic": {
            "tiles": {
                "path": "synth/tiles",
                "images": 1000,
                "fingerprint": "10805fff12009f18",
                "mask_source": "real",
            },
            EVIL: {"path": "synth/evil", "images": 10, "fingerprint": "ab", "mask_source": None},
        },
        "config": _config(),
        "arm_descriptions": {
            "real": "the labelled training half only",
            "control": "noise-floor twin of real",
            "oversample": "real crops + extra crops centred on the real defects again",
            "real+tiles": "the labelled training half only + extra crops from synthetic set 'tiles'",
            EVIL_ARM: f"oversample + set {EVIL} (label-filtered)",
        },
        "crops_per_step": dict(CROPS),
        "learning_curve": {
            "columns": ["step", "validation class-mean pixel AP", "validation positive Dice (0.5)"],
            "points": [[150, 0.05, 0.3], [300, 0.12, 0.35], [450, 0.3, 0.4], [600, 0.36, 0.42]],
            "late_gain": 0.06,
            "total_gain": 0.31,
            "late_share": 0.1935,
            "flat": False,
            "rule": "flat when the last third of the steps gained under 10 % of the total gain",
        },
        "post_processing": {
            CLASSES[0]: {
                "threshold": 0.6,
                "min_area": 16,
                "pooled_validation_dice": 0.52,
                "plain_validation_dice": 0.41,
                "rule": "best pooled validation Dice",
            },
            CLASSES[1]: {
                "threshold": 0.5,
                "min_area": 0,
                "pooled_validation_dice": None,
                "plain_validation_dice": None,
                "rule": "no validation positives: the plain candidate",
            },
            EVIL: {
                "threshold": 0.4,
                "min_area": 64,
                "pooled_validation_dice": 0.3,
                "plain_validation_dice": 0.28,
                "rule": "best pooled validation Dice",
            },
        },
        "runs": [_run(arm, seed, ap[arm]) for arm in ARMS for seed in (0, 1)],
        "summary": {arm: _summary(value) for arm, value in ap.items()},
        "paired": {
            "control": _arm_pairs(_paired(0.001, -0.02, 0.022, [0.011, -0.009])),
            "oversample": _arm_pairs(_paired(0.01, -0.02, 0.04, [0.03, -0.01])),
            "real+tiles": _arm_pairs(
                _paired(0.056, 0.021, 0.087, [0.05, 0.062]),
                _paired(-0.03, -0.05, -0.01, [-0.02, -0.04]),
                _paired(-0.04, -0.07, -0.01, [-0.03, -0.05]),  # fewer false positives: better
            ),
            EVIL_ARM: _arm_pairs(_paired(0.03, -0.01, 0.07, [0.02, 0.04])),
        },
        "noise_floor": {
            "seeds": 2,
            "metric": "class_mean_pixel_ap",
            "target_effect": 0.03,
            "minimal_detectable_effect": 0.2345,
            "rule": "two-sided 5 % paired t test, 80 % power; per-seed residuals pooled",
            "class_mean_pixel_ap": _floor(0.0141, 0.2345, [0.011, -0.009], {"0.03": 120, "0.05": 45}),
            "positive_dice_plain": _floor(0.0222, 0.0271, [0.02, 0.001], {"0.03": 2, "0.05": 2}),
        },
        "claim": {
            "declared_arms": ["real+tiles"],
            "generators": 1,
            "conditional_on_one_generator": True,
            "baselines": ["real", "oversample"],
            "metric": "class_mean_pixel_ap",
            "versus": {
                "real": _arm_pairs(_paired(0.056, 0.021, 0.087, [0.05, 0.062])),
                "oversample": _arm_pairs(
                    _paired(0.046, -0.012, 0.104, [0.031, 0.061]),
                    _paired(-0.002, -0.01, 0.006, [-0.001, -0.003]),
                ),
            },
            "crops_per_step": {"real+tiles": 12, "real": 8, "oversample": 12},
            "crop_matched_baselines": ["oversample"],
            "every_interval_above_zero": False,
            "smallest_difference": 0.046,
            "target_effect": 0.03,
            "met": False,
            "meets_target_effect": False,
            "rule": "declared before the run; beats every baseline: each paired 95 % interval above 0",
        },
        "beside_the_claim": {
            EVIL_ARM: {
                "arms": [EVIL_ARM],
                "baselines": ["real", "oversample"],
                "versus": {
                    "real": _arm_pairs(_paired(0.03, -0.01, 0.07, [0.02, 0.04])),
                    "oversample": _arm_pairs(_paired(-0.041, -0.07, -0.012, [-0.03, -0.05])),
                },
                "every_interval_above_zero": False,
                "smallest_difference": -0.041,
            }
        },
        "label_filter": {
            f"{EVIL}:filtered": {
                "set": EVIL,
                "judge": "real arm, seed 0 (fit part of the training half only)",
                "thresholds": {CLASSES[0]: 0.21, CLASSES[1]: None, CLASSES[2]: None},
                "not_judgeable": [CLASSES[1], CLASSES[2]],
                "items": 10,
                "kept": 7,
                "kept_per_class": {CLASSES[0]: 4, CLASSES[1]: 2, CLASSES[2]: 3},
                "kept_indices": [9101, 9202, 9303],
            }
        },
        "quality": {
            "tiles": {
                "label_fidelity": {
                    "synthetic": {
                        **_scores(0.33, 0.5, post_processed=False),
                        "images": 64,
                    },
                    "real_test": _scores(0.44, 0.55, post_processed=False),
                    "per_class": {
                        CLASSES[0]: {
                            "real_test": 0.55,
                            "synthetic": 0.5,
                            "real_test_pixel_ap": 0.44,
                            "synthetic_pixel_ap": 0.33,
                            "judgeable": True,
                            "ratio": 0.5 / 0.55,
                            "pixel_ap_ratio": 0.75,
                        },
                        CLASSES[2]: {
                            "real_test": 0.1,
                            "synthetic": 0.2,
                            "real_test_pixel_ap": 0.05,
                            "synthetic_pixel_ap": 0.1,
                            "judgeable": False,
                            "ratio": None,
                            "pixel_ap_ratio": None,
                        },
                    },
                    "segmenter": "real arm, seed 0",
                },
                "kid": {
                    "feature_space": "domain encoder (real-arm U-Net encoder)",
                    "value": 0.0123,
                    "std": 0.0031,
                    "subsets": 50,
                    "real_crops": 200,
                    "synthetic_crops": 200,
                },
                "diversity": None,
            },
            EVIL: {"label_fidelity": None, "kid": None, "diversity": None},
        },
        "figures": {
            "tiles": {
                "overlays": "figures/tiles_overlays.png",
                "real_vs_synthetic": {CLASSES[0]: "figures/tiles_real_vs_synthetic_1.png"},
                "label_fidelity_failures": "figures/missing.png",
            },
            EVIL: {"overlays": "../outside.png"},
        },
    }


def _eval_dir(folder: Path, results: dict) -> Path:
    (folder / "figures").mkdir(parents=True)
    for name in ("tiles_real_vs_synthetic_1.png", "tiles_overlays.png"):
        Image.new("RGB", (8, 4), (200, 30, 30)).save(folder / "figures" / name)
    (folder / "results.json").write_text(json.dumps(results))
    return folder


class _Collector(HTMLParser):
    """Element ids and every src/href value of a page."""

    def __init__(self):
        super().__init__()
        self.ids: list[str] = []
        self.links: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        if "id" in values:
            self.ids.append(values["id"])
        self.links += [v for k, v in attrs if k in ("src", "href") and v]
        self.scripts += tag == "script"


def _parse(page: str) -> _Collector:
    collector = _Collector()
    collector.feed(page)
    return collector


def _section(page: str, section_id: str) -> str:
    match = re.search(rf'<section id="{section_id}">(.*?)</section>', page, re.S)
    assert match, f"section {section_id} missing"
    return re.sub(r"data:image/[a-z]+;base64,[A-Za-z0-9+/=]+", "DATA", match.group(1))


def _text(fragment: str) -> str:
    """Tags dropped, whitespace collapsed: for assertions on sentences that span markup."""
    return " ".join(re.sub(r"<[^>]+>", " ", fragment).split())


def _claim(page: str) -> str:
    results = _section(page, "results")
    end = results.find("<h3>Measured beside the claim</h3>")
    return results[: end if end >= 0 else results.index("<h3>Every arm</h3>")]


def _row(fragment: str, first_cell: str) -> str:
    """The table row whose first cell is `first_cell` (as it appears in the page)."""
    match = re.search(rf"<tr><td>{re.escape(first_cell)}</td>.*?</tr>", fragment, re.S)
    assert match, f"no row {first_cell}"
    return match.group(0)


def _render(folder: Path, results: dict) -> str:
    return write_report(_eval_dir(folder, results)).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, str]:
    """One rendered report, shared: rendering the plots is the slow part."""
    folder = _eval_dir(tmp_path_factory.mktemp("report") / "eval" / "run", _results())
    out = write_report(folder)
    return out, out.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def variant(tmp_path_factory) -> str:
    """A second evaluation: claim met by two generators, a flat curve, an unmeasurable noise floor."""
    results = _results()
    both = _paired(0.061, 0.012, 0.11, [0.05, 0.072], per_generator=[0.055, 0.067])
    results["claim"].update(
        declared_arms=["real+tiles", "real+tiles2"],
        generators=2,
        conditional_on_one_generator=False,
        versus={"real": _arm_pairs(both), "oversample": _arm_pairs(both)},
        every_interval_above_zero=True,
        smallest_difference=0.061,
        met=True,
        meets_target_effect=True,
    )
    results["learning_curve"].update(flat=True, late_gain=0.004, late_share=0.013)
    results["noise_floor"]["class_mean_pixel_ap"] = _floor(None, None, [])
    del results["noise_floor"]["minimal_detectable_effect"]
    results["noise_floor"]["positive_dice_plain"] = _floor(
        0.1, 0.09, [0.1, -0.1], {"0.03": None, "0.05": None}
    )
    return _render(tmp_path_factory.mktemp("variant") / "run", results)


def test_writes_report_with_every_section(report):
    out, page = report
    assert out.name == "report.html" and out.parent.name == "run"
    assert page.startswith("<!DOCTYPE html>")
    assert set(SECTIONS) <= set(_parse(page).ids)
    assert not list(out.parent.glob(".report.html.*")), "temporary file left behind"


def test_results_table_shows_every_arm_with_paired_seed_differences(report):
    results = _section(report[1], "results")
    table = results[results.index("<h3>Every arm</h3>") :]
    for arm in ("real", "control", "oversample", "real+tiles"):
        assert f"<td>{arm}</td>" in table
    row = _row(table, "real+tiles")
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
    assert cells[1] == "12"  # crops per step
    assert cells[2] == "0.456 ± 0.021"  # headline pixel AP mean ± std over seeds
    assert "<strong>+0.056 [+0.021, +0.087]</strong> ▲ better" in cells[3]  # excludes 0: marked
    assert cells[4] == "+0.050, +0.062"  # per-seed differences
    assert cells[5] == "0.506 ± 0.030"  # F1-max
    assert cells[6] == "0.400 ± 0.015"  # positive Dice (0.5)
    assert "<strong>-0.030 [-0.050, -0.010]</strong> ▼ worse" in cells[7]  # Dice lost: marked worse
    assert cells[8:10] == ["0.912 ± 0.004", "0.100 ± 0.050"]  # Kaggle Dice, FP rate
    assert "<strong>-0.040 [-0.070, -0.010]</strong> ▲ better" in cells[10]  # a lower FP rate is better
    assert cells[11] == "0.812 ± 0.011"  # pixel AUROC
    oversample = _row(table, "oversample")
    assert "+0.010 [-0.020, +0.040]" in oversample and "<strong>+0.010" not in oversample  # straddles 0
    assert "<td>baseline</td>" in _row(table, "real")
    assert "Satterthwaite" in table
    assert "0.60" not in table.split("<h3>")[0]  # post-processing is in the protocol
    assert "Every paired difference (20)" in table  # 4 arms x 5 metrics
    assert "se 0.012, df 3.4" in table  # what the interval is made of, on hover


def test_per_class_tables_read_their_own_metric(report):
    results = _section(report[1], "results")
    pixel_ap = results[results.index("<h3>Pixel AP per class</h3>") : results.index("<h3>Positive Dice per")]
    assert "<td>Blowhole</td><td>0.400 ± 0.020</td>" in pixel_ap
    dice = results[results.index("<h3>Positive Dice per class</h3>") : results.index("<h3>F1-max per")]
    assert "<td>Blowhole</td><td>0.400 ± 0.020</td>" in dice and "0.250 ± 0.020" in dice
    assert "0.610 ± 0.020" in results[results.index("<h3>F1-max per class</h3>") :]


def test_claim_not_met_shows_declared_arm_against_every_baseline(report):
    claim = _claim(report[1])
    assert 'class="claim not-met"' in claim and "<strong>Claim not met</strong>" in claim
    text = _text(claim)
    assert "the declared arm real+tiles against every baseline (real, oversample)" in text
    assert "best" not in text.lower()  # declared before the run, never picked
    assert "conditional on this one generator" in text
    real, oversample = _row(claim, "real"), _row(claim, "oversample")
    assert "<td>8</td>" in real and "<td>12</td>" in oversample  # crops per step
    assert "<strong>+0.056 [+0.021, +0.087]</strong> ▲ better" in real
    assert "+0.046 [-0.012, +0.104]" in oversample and "+0.031, +0.061" in oversample
    assert "<strong>+0.046" not in oversample
    assert "-0.002 [-0.010, +0.006]" in oversample  # positive Dice beside the headline
    assert "Not every interval of the headline difference lies above 0" in text
    assert "Smallest difference: +0.046; the target effect 0.03 is not reached" in text
    assert (
        "smallest pixel-AP effect these seeds can detect at 0.234; the smallest difference (+0.046)" in text
    )
    assert "Baselines that see at least as many: oversample" in text


def test_claim_met_by_several_generators(variant):
    claim = _claim(variant)
    assert 'class="claim met"' in claim and "<strong>Claim met</strong>" in claim
    text = _text(claim)
    assert "the declared arm real+tiles, real+tiles2 against every baseline" in text
    assert "sets from 2 generators" in text and "conditional on this one generator" not in text
    assert "<strong>+0.061 [+0.012, +0.110]</strong> ▲ better" in claim
    assert "(per generator: +0.055, +0.067)" in claim
    assert "Every interval of the headline difference lies above 0" in text
    assert "the target effect 0.03 is reached" in text


def test_claim_without_a_crop_matched_or_any_baseline_says_so():
    results = _results()
    results["claim"].update(crop_matched_baselines=[], met=False)
    text = _text(report_results._claim_block(results))
    assert "No baseline sees as many" in text and "is not met without one" in text
    results["claim"].update(baselines=[], versus={})
    assert "nothing to beat" in report_results._claim_block(results)


def test_the_other_synthetic_arms_are_shown_against_every_baseline_and_not_as_results(report):
    results = _section(report[1], "results")
    beside = results[
        results.index("<h3>Measured beside the claim</h3>") : results.index("<h3>Every arm</h3>")
    ]
    assert EVIL not in beside  # the hostile set name is escaped
    row = _row(beside, html_escape(EVIL_ARM))
    assert "+0.030 [-0.010, +0.070]" in row and "<strong>-0.041 [-0.070, -0.012]</strong> ▼ worse" in row
    assert "Δ vs real [95 % CI]" in beside and "Δ vs oversample [95 % CI]" in beside
    assert "the best of them is not a result" in _text(beside)
    bare = _results()
    del bare["beside_the_claim"]
    assert "Measured beside the claim" not in report_results._results_section(bare)


def test_noise_floor_section(report):
    section = _section(report[1], "noise-floor")
    floor = _text(section)
    assert "smallest effect this evaluation can see" in floor
    ap, dice = _row(section, "class-mean pixel AP"), _row(section, "positive Dice (0.5)")
    assert "control, oversample, real+tiles (df 3)" in ap
    assert "<td>0.014</td><td>0.008</td><td>0.234</td>" in ap  # seed sd, image se, smallest effect
    assert "0.03: 120 seeds; 0.05: 45 seeds" in ap
    assert "+0.011, -0.009" in ap and "<td>0.310</td>" in ap  # the control twin's own estimate
    assert "<td>0.022</td><td>0.008</td><td>0.027</td>" in dice
    assert "With these 2 seeds the smallest true difference in class-mean pixel AP" in floor
    assert "is 0.234 ; the target effect 0.03 would need 120 seeds" in floor
    assert "positive Dice (0.5) that the evaluation detects" in floor
    assert "is 0.027 ; the target effect 0.03 is within reach" in floor


def test_noise_floor_unmeasurable(variant):
    floor = _text(_section(variant, "noise-floor"))
    assert "In class-mean pixel AP the smallest detectable effect is not measurable" in floor
    assert "inf" not in floor.lower()
    dice = _row(_section(variant, "noise-floor"), "positive Dice (0.5)")
    assert "0.03: out of reach; 0.05: out of reach" in dice
    assert "the target effect 0.03 is out of reach of any seed count searched" in floor


def test_not_flat_curve_is_warned(report):
    curves = _section(report[1], "curves")
    assert 'class="warning"' in curves and NOT_FLAT in curves
    assert "Its last third gained +0.060 of a total gain of +0.310 (19 %)." in curves
    assert curves.count("<img") == 2  # learning curve + training loss
    assert "<tr><td>600</td><td>0.360</td><td>0.420</td></tr>" in curves  # the points, as a table
    assert "validation class-mean pixel AP" in curves
    assert "Real arm, first seed, on the validation part (105 images)" in curves
    assert NOT_FLAT in _section(report[1], "protocol")  # seen before the table too


def test_flat_curve_is_said(variant):
    curves = _section(variant, "curves")
    assert "<strong>flat</strong>" in curves and "Its last third gained +0.004" in curves
    assert NOT_FLAT not in variant


def test_protocol_is_built_from_recorded_values(report):
    section = _section(report[1], "protocol")
    protocol = _text(section)
    for fact in (
        "magnetic_tile",
        "50 % test",
        "seed 0",
        "25 %",
        "resnet18 encoder (4 stages), decoder channels 64, 32, 16, 8",
        "from scratch",
        "128×128 px",
        "fit part of 419 images",
        "validation part of 105 images (20 %)",
        "same 800 steps",
        "a third and two thirds of the steps",
        "still rising in its last third",
        "seeds 0, 1",
        "same initial weights",
        "same 8 real crops per step",
        "4 crops = 50 % of the batch size per step",  # extra_share
        "2 crops = 25 % of the batch size per step, during the first 50 % of the steps only",
        "Crops per training step: real 8, control 8, oversample 12, real+tiles 12",
        "independent stream",
        "Declared before the run for the claim: real+tiles",
        "validation predictions pooled over its seeds",
        "thresholds 0.3, 0.5, 0.7 and the minimum areas 0, 16, 32, 64 px",
        "best pooled Dice",
        "class-mean pixel AP",
        "threshold-free",
        "Satterthwaite",
        "crossed generator × seed",
        "label filter on",
        "kept 7 of 10 items",
    ):
        assert fact in protocol, fact
    assert "noise-floor twin of real" in protocol  # descriptions come from results.json
    assert "<li><strong>tiles</strong>" not in section  # the configured 'tiles' is the arm real+tiles
    # one post-processing table for the whole evaluation
    assert "<tr><td>Blowhole</td><td>0.60</td><td>16</td><td>0.520</td><td>0.410</td>" in section
    assert "<tr><td>Crack</td><td>0.50</td><td>0</td><td>—</td><td>—</td>" in section
    assert section.count("<table>") == 1
    assert "warning" in section and "Runs differ" not in section and "has runs for seeds" not in section


def test_protocol_warns_when_runs_differ_in_steps(tmp_path):
    results = _results()
    results["runs"][1]["steps"] = 400
    results["learning_curve"]["flat"] = True
    protocol = _section(_render(tmp_path / "run", results), "protocol")
    assert "Runs differ in step count" in protocol
    assert NOT_FLAT not in protocol


def test_quality_per_set_and_label_filter(report):
    section = _section(report[1], "quality")
    quality = _text(section)
    assert "7 of 10" in quality
    assert "Crack, &lt;script&gt;" in quality  # classes not judgeable, escaped
    assert "threshold 0.210" in quality and "none (not judgeable)" in quality
    assert "9303" not in quality and "kept_indices" not in report[1]
    assert "0.0123 ± 0.0031" in quality
    assert quality.count("not measured") == 4  # tiles diversity; the hostile set's three parts
    assert "64 synthetic images" in quality
    # per class: positive Dice and pixel AP on synthetic and real test images, and their ratios
    blowhole = _row(section, "Blowhole")
    assert re.findall(r"<td>(.*?)</td>", blowhole)[1:8] == [
        "0.500",
        "0.550",
        "0.909x",
        "0.330",
        "0.440",
        "0.750x",
        "judgeable",
    ]
    assert "not judgeable" in _row(section, html_escape(EVIL))
    assert "<th>class mean</th><th>0.500</th><th>0.550</th><th></th><th>0.330</th><th>0.440</th>" in section


def html_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def test_images_inlined_and_nothing_external(report):
    _, page = report
    collector = _parse(page)
    data = [link for link in collector.links if link.startswith("data:image/png;base64,")]
    # 2 figure files + per-class chart, learning curve, loss curves, label fidelity (tiles)
    assert len(data) == 6
    assert all(link.startswith(("data:", "#")) for link in collector.links)
    assert not re.search(r"(src|href)\s*=\s*[\"']?https?://", page)
    assert "http://" not in page and "https://" not in page
    assert collector.scripts == 0
    payload = base64.b64decode(data[0].split(",", 1)[1])
    assert payload.startswith(b"\x89PNG")


def test_missing_figures_are_said(report):
    grids = _section(report[1], "grids")
    assert "figures/missing.png not found" in grids
    assert "outside the evaluation folder" in grids
    # Crack, script class, tiles failures; hostile set: overlays, 3 classes, failures (no copy-paste
    # arm, so no copy-paste grid)
    assert grids.count("not available") == 8
    assert "Copy-paste" not in grids


def test_hostile_names_are_escaped(report):
    _, page = report
    assert "<script" not in page
    assert _parse(page).scripts == 0
    escaped = html_escape(EVIL)
    assert f"<td>oversample+{escaped}:filtered</td>" in _section(page, "results")  # arm name
    assert f"<td>{escaped}</td>" in _section(page, "results")  # class name
    assert f"<td>{escaped}</td>" in _section(page, "protocol")  # class in the post-processing table
    assert f"Set <code>{escaped}</code>" in _section(page, "quality")  # set name
    assert escaped in _section(page, "grids")


def test_missing_results_raises_helpful_error(tmp_path):
    with pytest.raises(DataError, match=r"results\.json not found.*defectgen evaluate"):
        write_report(tmp_path)


def test_unreadable_old_or_incomplete_results_raise(tmp_path):
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(DataError, match="not readable JSON"):
        write_report(tmp_path)
    results = _results()
    del results["summary"]
    (tmp_path / "results.json").write_text(json.dumps(results))
    with pytest.raises(DataError, match="lacks the key.*summary"):
        write_report(tmp_path)
    for old in ("defectgen-eval/1", "defectgen-eval/2"):
        results = _results() | {"format": old}
        (tmp_path / "results.json").write_text(json.dumps(results))
        with pytest.raises(DataError, match=rf"format '{old}'.*reads 'defectgen-eval/3'.*defectgen evaluate"):
            write_report(tmp_path)
    for key in ("claim", "learning_curve", "post_processing", "crops_per_step"):
        results = _results() | {key: [1, 2]}
        (tmp_path / "results.json").write_text(json.dumps(results))
        with pytest.raises(DataError, match=f'"{key}" must be an object or null'):
            write_report(tmp_path)
    assert not (tmp_path / "report.html").exists()


def test_nulls_everywhere_optional_still_render(tmp_path):
    results = copy.deepcopy(_results())
    results.update(
        synthetic={},
        arm_descriptions=None,
        crops_per_step=None,
        learning_curve=None,
        post_processing=None,
        paired=None,
        noise_floor=None,
        claim=None,
        beside_the_claim=None,
        label_filter={},
        quality={},
        figures={},
        split=None,
        versions=None,
    )
    results["config"]["arms"] = ["real", "control", "oversample"]
    results["config"]["declared_arms"] = []
    results["config"]["seeds"] = [0]
    results["runs"] = [
        run for run in results["runs"] if run["seed"] == 0 and run["arm"] in ("real", "control")
    ]
    results["runs"][0]["test"] = None
    results["summary"] = {arm: results["summary"][arm] for arm in ("real", "control", "oversample")}
    results["summary"]["real"]["class_mean_pixel_ap"] = {"mean": 0.3, "std": None}
    results["summary"]["oversample"] = None
    folder = tmp_path / "eval" / "nulls"
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(results))
    out = write_report(folder, tmp_path / "elsewhere" / "page.html")
    assert out == tmp_path / "elsewhere" / "page.html"
    page = out.read_text()
    assert set(SECTIONS) <= set(_parse(page).ids)
    assert "Claim: not evaluated" in _section(page, "results")
    assert "Noise floor: not measured" in _section(page, "noise-floor")
    assert "not measured" in _section(page, "quality")
    protocol = _text(_section(page, "protocol"))
    assert "no validation learning curve was recorded" in protocol and "One seed only" in protocol
    assert "Post-processing: not recorded" in protocol
    assert "No arm was declared" in protocol
    assert "(description not recorded)" in protocol  # last-resort description
    assert "No learning curve recorded" in _section(page, "curves")
    real = _row(_section(page, "results"), "real")
    assert "<td>8</td><td>0.300</td>" in real  # crops per step from the runs; one seed: no ± shown
    assert "not available" in _section(page, "grids")


def test_malformed_entries_render_as_missing(tmp_path):
    """Entries of the right container type but wrong contents: no crash, shown as missing."""
    results = _results()
    results["paired"]["oversample"]["class_mean_pixel_ap"] = _paired(None, None, None, [None, 0.01])
    results["paired"]["control"] = {"class_mean_pixel_ap": [1], "positive_dice_plain": "x"}
    results["claim"].update(
        declared_arms="real+tiles",
        versus={"real": None, "oversample": {"class_mean_pixel_ap": {"ci95": "?", "difference": 0.1}}},
        crops_per_step=None,
        crop_matched_baselines=None,
        smallest_difference="0.1",
    )
    results["learning_curve"] = {
        "points": [[150, None, 0.3], "junk", [300, 0.2], [None, 0.3, 0.1], [450, 0.4, 0.5]],
        "flat": None,
        "late_share": None,
    }
    results["post_processing"] = {CLASSES[0]: "0.5", "Ghost": {"threshold": "high", "min_area": None}}
    results["noise_floor"] = {
        "seeds": "2",
        "class_mean_pixel_ap": [],
        "positive_dice_plain": {"seeds_needed_for": 3},
    }
    results["crops_per_step"] = {"real": "eight"}  # control falls back to its runs' crops per step
    results["runs"][2]["crops_per_step"] = [8]
    results["runs"][0]["loss_curve"] = [["a", 1], [1]]
    results["runs"][1]["validation_curve"] = "none"
    results["quality"]["tiles"]["label_fidelity"]["per_class"] = {CLASSES[0]: None, CLASSES[2]: []}
    results["summary"]["real"]["pixel_ap"] = [0.3]
    results["beside_the_claim"] = {
        "none": None,
        "list": [],
        "no versus": {"versus": None},
        "odd": {"versus": {"real": {"class_mean_pixel_ap": {"ci95": "?", "difference": 0.1}}, "x": 3}},
    }
    page = render_report(results, _eval_dir(tmp_path / "run", results))
    assert set(SECTIONS) <= set(_parse(page).ids)
    results_part = _section(page, "results")
    table = results_part[results_part.index("<h3>Every arm</h3>") :]
    assert "— (undefined)" in _row(table, "oversample")
    assert _row(table, "real").startswith("<tr><td>real</td><td>?</td>")
    assert _row(table, "control").startswith("<tr><td>control</td><td>8</td>")
    assert "no defect-free image" in results_part  # the note is kept, on hover
    assert "+0.100 [no interval]" in _claim(page)
    beside = results_part[results_part.index("<h3>Measured beside the claim</h3>") :]
    assert "<tr><td>none</td><td>—</td><td>—</td></tr>" in beside  # columns real and x
    assert "+0.100 [no interval]" in _row(beside, "odd")
    assert "Per-seed Δ" in _claim(page)
    curves = _section(page, "curves")
    assert "not decided" in curves and "<tr><td>150</td><td>—</td><td>0.300</td></tr>" in curves
    assert "<tr><td>300</td><td>0.200</td><td>—</td></tr>" in curves
    assert "<td>Ghost</td><td>—</td><td>?</td>" in _section(page, "protocol")
    assert "not measurable" in _text(_section(page, "noise-floor"))


def _evaluation_results() -> dict:
    """results.json assembled as `Evaluation.results` assembles it, by the evaluation's own
    functions on random per-image score arrays (no segmenter is trained): the report must read
    what the evaluation writes, not only the hand-built dict above."""
    from defectgen.evaluate.arms import parse_arms
    from defectgen.evaluate.comparison import Verdict, learning_curve
    from defectgen.evaluate.config import EvalConfig
    from defectgen.evaluate.scores import MIN_AREAS, THRESHOLDS, ScoreSheet, summarize

    names = ("Blowhole", "Crack")
    seeds = [0, 1, 2]
    config = EvalConfig(arms=["real", "control", "oversample", "tiles"], seeds=seeds, steps=60)
    arms = parse_arms(config.arms, ("tiles",))
    crops = {"real": 8, "control": 8, "oversample": 12, "real+tiles": 12}
    rng = np.random.default_rng(0)
    targets = {}
    for part, count in (("test", 14), ("validation", 10)):
        masks = np.zeros((count, 2, 16, 16), dtype=bool)
        for i in range(count - 4):  # the last four images are defect-free
            k = i % 2
            y, x = rng.integers(0, 10, size=2)
            masks[i, k, y : y + 5, x : x + 6] = True
        targets[part] = masks
    skill = {"real": 0.5, "control": 0.5, "oversample": 0.55, "real+tiles": 0.62}

    def sheet(arm: str, seed: int, part: str) -> dict:
        scores = ScoreSheet(len(names))
        noise = np.random.default_rng([seed, len(arm), len(part)])
        for masks in targets[part]:
            probability = np.clip(masks * skill[arm] + noise.random(masks.shape) * 0.6, 0, 1)
            scores.add(probability.astype(np.float32), masks)
        return scores.arrays()

    arrays = {(a.name, s): sheet(a.name, s, "test") for a in arms for s in seeds}
    validation = {(a.name, s): sheet(a.name, s, "validation") for a in arms for s in seeds}
    verdict = Verdict(arrays, validation, seeds, names)
    arm_names = [a.name for a in arms]
    paired = {arm: verdict.compare([arm], "real") for arm in arm_names if arm != "real"}
    curve = [[20, 0.2, 0.3], [40, 0.35, 0.4], [60, 0.36, 0.41]]
    runs = [
        {
            "arm": arm,
            "seed": seed,
            "steps": config.steps,
            "crops_per_step": crops[arm],
            "seconds": 1.5,
            "loss_curve": [[10, 0.9], [20, 0.7], [60, 0.5]],
            "validation": summarize(validation[(arm, seed)], names),
            "test_plain": summarize(arrays[(arm, seed)], names),
            "test": verdict.run_summary(arm, seed),
            "real_items_trained_on": ["a", "b"],
            "segmenter": {"encoder": "resnet18", "encoder_depth": 4, "decoder_channels": [64, 32, 16, 8]},
        }
        for arm in arm_names
        for seed in seeds
    ]
    return {
        "format": "defectgen-eval/3",
        "created": "2026-11-27T10:00:00Z",
        "versions": {"defectgen": "test"},
        "dataset": "folder:random",
        "classes": [{"id": i + 1, "name": name} for i, name in enumerate(names)],
        "split": {"validation_images": 10, "test_images": 14},
        "synthetic": {"tiles": {"path": "synth", "images": 5, "fingerprint": "f", "mask_source": "real"}},
        "config": {
            **asdict(config),
            "declared_arms": ["real+tiles"],
            "loss": "BCE + Dice",
            "std": "sample standard deviation over seeds (ddof 1)",
            "interval": INTERVAL,
            "post_processing": {
                "thresholds": list(THRESHOLDS),
                "min_areas": list(MIN_AREAS),
                "rule": "pooled",
            },
            "training_data": "the fit part",
        },
        "arm_descriptions": {arm.name: arm.describe() for arm in arms},
        "crops_per_step": crops,
        "learning_curve": learning_curve(curve),
        "post_processing": verdict.post_processing_table,
        "runs": runs,
        "summary": verdict.summary(arm_names),
        "paired": paired,
        "noise_floor": verdict.noise_floor(paired, arm_names),
        "claim": verdict.claim([a for a in arms if a.name == "real+tiles"], arms, crops),
        "label_filter": {},
        "quality": {},
        "figures": {},
    }


def test_renders_what_the_evaluation_writes(tmp_path):
    results = json.loads(json.dumps(_evaluation_results()))  # through JSON, as a file would be
    folder = tmp_path / "eval"
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(results))
    page = write_report(folder).read_text(encoding="utf-8")
    assert set(SECTIONS) <= set(_parse(page).ids)
    claim = _claim(page)
    assert "the declared arm <strong>real+tiles</strong> against every baseline (real, oversample)" in claim
    headline = results["claim"]["versus"]["oversample"]["class_mean_pixel_ap"]
    assert f"{headline['difference']:+.3f} [{headline['ci95'][0]:+.3f}, {headline['ci95'][1]:+.3f}]" in (
        _row(claim, "oversample")
    )
    assert "conditional on this one generator" in _text(claim)
    table = _section(page, "results")
    table = table[table.index("<h3>Every arm</h3>") :]
    summary = results["summary"]["real+tiles"]["class_mean_pixel_ap"]
    assert f"<td>{summary['mean']:.3f} ± {summary['std']:.3f}</td>" in _row(table, "real+tiles")
    dice = results["paired"]["control"]["positive_dice_plain"]
    assert f"{dice['difference']:+.3f} [{dice['ci95'][0]:+.3f}" in _row(table, "control")
    chosen = results["post_processing"]["Blowhole"]
    protocol = _section(page, "protocol")
    assert f"<tr><td>Blowhole</td><td>{chosen['threshold']:.2f}</td><td>{chosen['min_area']}</td>" in protocol
    floor = _row(_section(page, "noise-floor"), "class-mean pixel AP")
    assert f"{results['noise_floor']['class_mean_pixel_ap']['minimal_detectable_effect']:.3f}" in floor
    assert "control, oversample, real+tiles (df 6)" in floor
    curves = _section(page, "curves")
    assert curves.count("<img") == 2 and "<strong>flat</strong>" in curves  # 0.01 of 0.16 in the last third
    assert "undefined" not in table and MISSING_CELL not in _row(table, "real+tiles")


MISSING_CELL = "<td>—</td>"


def test_the_protocol_says_what_a_set_saw_of_what_the_evaluation_holds_out():
    from defectgen.report.protocol import _lineage_text

    clean = {"items_read": 41, "split_digest": "a", "generator_split_digest": "b", "validation_items_read": 0,
             "unlabelled_items_read": 0, "judged": False}  # fmt: skip
    assert _lineage_text(clean).endswith("none of the test half; nothing the evaluation holds out")
    assert "cannot carry" not in _lineage_text(clean)
    for change, words in [
        ({"validation_items_read": 3}, "3 of the validation part, so it cannot carry the claim"),
        ({"unlabelled_items_read": 2}, "2 whose labels the split holds back, so it cannot carry the claim"),
        ({"judged": True}, "its items chosen by a judge's validation scores, so it cannot carry the claim"),
    ]:
        assert _lineage_text({**clean, **change}).endswith(words)
    assert _lineage_text(None) == "its lineage is not recorded"
