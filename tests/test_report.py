"""`defectgen report`: one self-contained HTML page from a format-2 results.json built on the fly."""

from __future__ import annotations

import base64
import copy
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from defectgen.errors import DataError
from defectgen.report import write_report

EVIL = '<script>alert("x")</script>'
CLASSES = ["Blowhole", "Crack", EVIL]
SECTIONS = ["protocol", "results", "noise-floor", "per-class", "curves", "quality", "grids", "reading"]
EVIL_ARM = f"oversample+{EVIL}:filtered"
ARMS = ["real", "control", "oversample", "real+tiles", EVIL_ARM]
INTERVAL = "t over seeds (df S-1), se^2 = seed_sd^2 / S + image_se^2"
NOT_FLAT = "the CPU budget did not reach a flat curve"


def _stat(mean: float | None, std: float | None = 0.02) -> dict:
    return {"mean": mean, "std": std}


def _scores(dice: float, auroc: float = 0.8) -> dict:
    return {
        "kaggle_dice": 0.91,
        "positive_dice": {CLASSES[0]: dice, CLASSES[1]: None, CLASSES[2]: 0.2},
        "mean_positive_dice": dice,
        "iou": {CLASSES[0]: 0.3, CLASSES[1]: None, CLASSES[2]: 0.1},
        "mean_iou": 0.2,
        "fp_rate_defect_free": 0.1,
        "auroc": {CLASSES[0]: auroc, CLASSES[1]: None, CLASSES[2]: 0.7},
        "mean_auroc": auroc,
        "images": 672,
        "defect_free_images": 476,
    }


def _run(arm: str, seed: int, dice: float) -> dict:
    return {
        "arm": arm,
        "seed": seed,
        "steps": 800,
        "seconds": 190.2,
        "curve": [[10, 1.2 - 0.1 * seed], [20, 1.0], [30, 0.8]],
        "post_processing": {
            CLASSES[0]: {
                "threshold": 0.6,
                "min_area": 16 * seed,
                "validation_dice": 0.5,
                "default_dice": 0.4,
            },
            CLASSES[1]: {"threshold": 0.4, "min_area": 32, "validation_dice": 0.7, "default_dice": 0.7},
        },
        "validation": _scores(dice - 0.05),
        "test": _scores(dice),
        "real_items_trained_on": ["im_001", "im_002", "im_003"],
    }


def _summary(dice: float, auroc: float = 0.812) -> dict:
    return {
        "kaggle_dice": _stat(0.912, 0.004),
        "mean_positive_dice": _stat(dice, 0.021),
        "mean_iou": _stat(0.2, 0.01),
        "fp_rate_defect_free": _stat(0.1, 0.05),
        "mean_auroc": _stat(auroc, 0.011),
        "positive_dice": {CLASSES[0]: _stat(dice), CLASSES[1]: _stat(None, None), CLASSES[2]: _stat(0.2)},
        "auroc": {CLASSES[0]: _stat(auroc), CLASSES[1]: _stat(None, None), CLASSES[2]: _stat(0.7)},
    }


def _paired(difference: float, low: float | None, high: float | None, per_seed: list[float]) -> dict:
    return {
        "difference": difference,
        "ci95": [low, high],
        "per_seed": per_seed,
        "seed_sd": 0.012,
        "image_se": 0.008,
        "seeds": len(per_seed),
        "images": 196,
        "interval": INTERVAL,
    }


def _arm_pairs(dice: dict) -> dict:
    return {
        "mean_positive_dice": dice,
        "kaggle_dice": _paired(0.001, -0.004, 0.006, [0.0, 0.002]),
        "fp_rate_defect_free": _paired(0.0, -0.01, 0.01, [0.0, 0.0]),
    }


def _results() -> dict:
    dice = {"real": 0.4, "control": 0.401, "oversample": 0.41, "real+tiles": 0.456, EVIL_ARM: 0.43}
    return {
        "format": "defectgen-eval/2",
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
        "config": {
            "arms": ARMS,
            "seeds": [0, 1],
            "steps": 800,
            "max_steps": 1500,
            "eval_every": 150,
            "tolerance": 0.02,
            "val_fraction": 0.2,
            "crop_size": 128,
            "batch_size": 8,
            "lr": 0.0003,
            "encoder": "resnet18",
            "encoder_weights": None,
            "extra_share": 0.5,
            "synthetic_share": 0.25,
            "synthetic_until": 0.5,
            "defect_crop_share": 0.5,
            "precision": "bf16",
            "loss": "BCE + Dice (multilabel)",
            "std": "sample standard deviation over seeds (ddof 1)",
            "interval": "t over seeds (df S-1); se^2 = per-seed sd^2 / S + test-image se^2",
            "post_processing": {"thresholds": [0.3, 0.5, 0.7], "min_areas": [0, 16, 32, 64]},
            "training_data": "the fit part of the training half",
        },
        "arm_descriptions": {
            "real": "the labelled training half only",
            "control": "noise-floor twin of real",
            "oversample": "real crops + extra crops centred on the real defects again",
            "real+tiles": "the labelled training half only + extra crops from synthetic set 'tiles'",
            EVIL_ARM: f"oversample + set {EVIL} (label-filtered)",
        },
        "step_selection": {
            "arm": "real",
            "curve": [[150, 0.05, 0.8], [300, 0.12, 0.85], [450, 0.3, 0.88], [600, 0.36, 0.9]],
            "curve_columns": ["step", "validation positive Dice (0.5)", "validation class-mean Dice (0.5)"],
            "chosen": 800,
            "flattened": False,
            "late_gain": 0.06,
            "validation_images": 105,
            "rule": "first step within 0.02 of the best validation positive Dice (0.360)",
        },
        "runs": [_run(arm, seed, dice[arm]) for arm in ARMS for seed in (0, 1)],
        "summary": {arm: _summary(value) for arm, value in dice.items()},
        "paired": {
            "control": _arm_pairs(_paired(0.001, -0.02, 0.022, [0.011, -0.009])),
            "oversample": _arm_pairs(_paired(0.01, -0.02, 0.04, [0.03, -0.01])),
            "real+tiles": _arm_pairs(_paired(0.056, 0.021, 0.087, [0.05, 0.062])),
            EVIL_ARM: _arm_pairs(_paired(0.03, -0.01, 0.07, [0.02, 0.04])),
        },
        "noise_floor": {
            "arms": ["control", "real"],
            "per_seed_differences": [0.011, -0.009],
            "seed_sd": 0.0141,
            "image_se": 0.0083,
            "minimal_detectable_effect": 0.2345,
            "seeds": 2,
            "seeds_needed_for": {"0.05": 7, "0.01": None},
            "rule": "two-sided 5 % paired t-test, 80 % power, positive Dice",
        },
        "claim": {
            "best_cheap_baseline": "oversample",
            "best_synthetic_arm": "real+tiles",
            "paired": {
                "mean_positive_dice": _paired(0.046, -0.012, 0.104, [0.031, 0.061]),
                "kaggle_dice": _paired(-0.002, -0.01, 0.006, [-0.001, -0.003]),
                "fp_rate_defect_free": _paired(0.02, -0.03, 0.07, [0.0, 0.04]),
            },
            "target": "positive Dice difference >= +0.05 with its 95 % interval above 0",
            "met": False,
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
                        "mean_positive_dice": 0.5,
                        "positive_dice": {CLASSES[0]: 0.5, CLASSES[2]: 0.5},
                        "images": 64,
                    },
                    "real_test": _scores(0.55),
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
    """A second evaluation: claim met, a flat validation curve, one seed's noise floor."""
    results = _results()
    results["claim"]["met"] = True
    results["claim"]["paired"]["mean_positive_dice"] = _paired(0.061, 0.012, 0.11, [0.05, 0.072])
    results["step_selection"].update(flattened=True, late_gain=0.004)
    results["noise_floor"].update(
        minimal_detectable_effect=float("inf"), seed_sd=None, seeds=1, seeds_needed_for={"0.05": None}
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
    for arm in ("real", "control", "oversample", "real+tiles"):
        assert f"<td>{arm}</td>" in results
    assert "0.456 ± 0.021" in results  # positive Dice mean ± std over seeds
    assert "0.912 ± 0.004" in results  # class-mean (Kaggle) Dice
    assert "0.100 ± 0.050" in results  # FP rate on defect-free images
    assert "0.812 ± 0.011" in results  # mean AUROC
    assert "+0.010 [-0.020, +0.040]" in results  # interval includes 0: not marked
    assert "<strong>+0.010" not in results
    assert "<strong>+0.056 [+0.021, +0.087]</strong> ▲ better" in results  # excludes 0: marked
    assert "+0.050, +0.062" in results  # per-seed differences
    assert "t-interval over seeds" in results
    assert "0.60 / 0 px" not in results  # post-processing is in the protocol


def test_claim_not_met_is_shown_first_with_its_numbers(report):
    results = _section(report[1], "results")
    claim = results[: results.index("<h3>Every arm</h3>")]
    assert 'class="claim not-met"' in claim
    text = _text(claim)
    assert "<strong>Claim not met</strong>" in claim
    assert "best synthetic arm real+tiles against the best cheap baseline oversample" in text
    assert "+0.046 [-0.012, +0.104]" in claim and "+0.031, +0.061" in claim
    assert "-0.002 [-0.010, +0.006]" in claim  # class-mean Dice
    assert "+0.020 [-0.030, +0.070]" in claim  # FP rate
    assert "Target: positive Dice difference &gt;= +0.05" in claim
    assert (
        "smallest positive-Dice effect these seeds can detect at 0.234; this difference (+0.046) is below it"
        in text
    )


def test_claim_met_is_shown(variant):
    claim = _section(variant, "results").split("<h3>Every arm</h3>")[0]
    assert 'class="claim met"' in claim
    assert "<strong>Claim met</strong>" in claim
    assert "<strong>+0.061 [+0.012, +0.110]</strong> ▲ better" in claim


def test_noise_floor_section(report):
    floor = _text(_section(report[1], "noise-floor"))
    assert "smallest effect this evaluation can see" in floor
    assert "control − real differences in positive Dice: +0.011, -0.009" in floor
    assert "seed sd 0.014, test-image se 0.008" in floor
    assert "With these 2 seeds" in floor and "0.234" in floor
    assert "an effect of 0.05 needs 7 seeds" in floor
    assert "an effect of 0.01 is out of reach" in floor


def test_noise_floor_unmeasurable_with_one_seed(variant):
    floor = _text(_section(variant, "noise-floor"))
    assert "not measurable" in floor and "inf" not in floor.lower()
    assert "seed sd —" in floor


def test_not_flattened_curve_is_warned(report):
    curves = _section(report[1], "curves")
    assert 'class="warning"' in curves and NOT_FLAT in curves
    assert "late gain +0.060" in curves
    assert "validation positive Dice against training step" not in curves  # the old one-line plot
    assert curves.count("<img") == 2  # validation curve + training loss
    assert NOT_FLAT in _section(report[1], "protocol")  # seen before the table too


def test_flattened_curve_is_said(variant):
    curves = _section(variant, "curves")
    assert "<strong>flattened</strong>" in curves and "late gain +0.004" in curves
    assert NOT_FLAT not in variant


def test_protocol_is_built_from_recorded_values(report):
    protocol = _text(_section(report[1], "protocol"))
    for fact in (
        "magnetic_tile",
        "50 % test",
        "seed 0",
        "25 %",
        "resnet18",
        "from scratch",
        "128×128 px",
        "fit part of 419 images",
        "validation part of 105 images (20 %)",
        "same 800 steps",
        "seeds 0, 1",
        "same initial weights",
        "same 8 real crops per step",
        "4 crops = 50 % of the batch size per step",  # extra_share
        "2 crops = 25 % of the batch size per step, during the first 50 % of the steps only",
        "independent stream",
        "thresholds 0.3, 0.5, 0.7 and the minimum areas 0, 16, 32, 64 px",
        "t-interval over seeds",
        "label filter on",
        "kept 7 of 10 items",
    ):
        assert fact in protocol, fact
    assert "noise-floor twin of real" in protocol  # descriptions come from results.json
    # chosen post-processing per arm and class: one value, or each seed's when they differ
    assert "0.60 / 0 px (s0); 0.60 / 16 px (s1)" in protocol
    assert "0.40 / 32 px" in protocol


def test_protocol_warns_when_runs_differ_in_steps(tmp_path):
    results = _results()
    results["runs"][1]["steps"] = 400
    results["step_selection"]["flattened"] = True
    protocol = _section(_render(tmp_path / "run", results), "protocol")
    assert "Runs differ in step count" in protocol


def test_quality_per_set_and_label_filter(report):
    quality = _text(_section(report[1], "quality"))
    assert "7 of 10" in quality
    assert "Crack, &lt;script&gt;" in quality  # classes not judgeable, escaped
    assert "threshold 0.210" in quality and "none (not judgeable)" in quality
    assert "9303" not in quality and "kept_indices" not in report[1]
    assert "0.0123 ± 0.0031" in quality
    assert quality.count("not measured") == 4  # tiles diversity; the hostile set's three parts
    assert "64 synthetic images" in quality


def test_images_inlined_and_nothing_external(report):
    _, page = report
    collector = _parse(page)
    data = [link for link in collector.links if link.startswith("data:image/png;base64,")]
    # 2 figure files + per-class chart, validation curve, loss curves, label fidelity (tiles)
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
    escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"
    assert f"<td>oversample+{escaped}:filtered</td>" in _section(page, "results")  # arm name
    assert f"<td>{escaped}</td>" in _section(page, "results")  # class name
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
    results = _results() | {"format": "defectgen-eval/1"}
    (tmp_path / "results.json").write_text(json.dumps(results))
    with pytest.raises(
        DataError, match=r"format 'defectgen-eval/1'.*reads 'defectgen-eval/2'.*defectgen evaluate"
    ):
        write_report(tmp_path)
    results = _results() | {"claim": [1, 2]}
    (tmp_path / "results.json").write_text(json.dumps(results))
    with pytest.raises(DataError, match='"claim" must be an object or null'):
        write_report(tmp_path)
    assert not (tmp_path / "report.html").exists()


def test_nulls_everywhere_optional_still_render(tmp_path):
    results = copy.deepcopy(_results())
    results.update(
        synthetic={},
        arm_descriptions=None,
        step_selection=None,
        paired=None,
        noise_floor=None,
        claim=None,
        label_filter={},
        quality={},
        figures={},
        split=None,
        versions=None,
    )
    results["config"]["arms"] = ["real", "control", "oversample"]
    results["config"]["seeds"] = [0]
    results["runs"] = [
        run for run in results["runs"] if run["seed"] == 0 and run["arm"] in ("real", "control")
    ]
    results["runs"][0]["post_processing"] = None
    results["summary"] = {arm: results["summary"][arm] for arm in ("real", "control", "oversample")}
    results["summary"]["real"]["mean_positive_dice"] = {"mean": 0.3, "std": None}
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
    assert "given by the user" in protocol and "One seed only" in protocol
    assert "(description not recorded)" in protocol  # last-resort description
    assert "given by the user" in _section(page, "curves")
    assert "<td>0.300</td>" in _section(page, "results")  # one seed: no ± shown
    assert "not available" in _section(page, "grids")
