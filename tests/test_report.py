"""`defectgen report`: one self-contained HTML page from a results.json built on the fly."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from defectgen.errors import DataError
from defectgen.report import write_report

CLASSES = ["Blowhole", "Crack", "<script>alert(1)</script>"]
SECTIONS = ["protocol", "results", "per-class", "curves", "quality", "grids", "reading"]


def _stat(mean: float, std: float | None = 0.02) -> dict:
    return {"mean": mean, "std": std}


def _run(arm: str, seed: int, dice: float) -> dict:
    return {
        "arm": arm,
        "seed": seed,
        "steps": 800,
        "seconds": 190.2,
        "curve": [[10, 1.2 - 0.1 * seed], [20, 1.0], [30, 0.8]],
        "test": {
            "kaggle_dice": 0.91,
            "positive_dice": {CLASSES[0]: dice, CLASSES[1]: None, CLASSES[2]: 0.2},
            "mean_positive_dice": dice,
            "iou": {CLASSES[0]: 0.3, CLASSES[1]: None, CLASSES[2]: 0.1},
            "mean_iou": 0.2,
            "fp_rate_defect_free": 0.1,
            "images": 672,
            "defect_free_images": 476,
        },
    }


def _summary(dice: float) -> dict:
    return {
        "kaggle_dice": _stat(0.912, 0.004),
        "mean_positive_dice": _stat(dice, 0.021),
        "mean_iou": _stat(0.2, 0.01),
        "fp_rate_defect_free": _stat(0.1, 0.05),
        "positive_dice": {CLASSES[0]: _stat(dice), CLASSES[1]: None, CLASSES[2]: _stat(0.2)},
    }


def _results() -> dict:
    arms = ["real", "copypaste", "synthetic"]
    return {
        "format": "defectgen-eval/1",
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
            "test_images": 672,
        },
        "synthetic": {"path": "synth/x", "images": 1000, "mask_source": "real"},
        "config": {
            "arms": arms,
            "seeds": [0, 1],
            "steps": 800,
            "crop_size": 128,
            "batch_size": 8,
            "encoder": "resnet18",
            "encoder_weights": None,
            "extra_share": 0.5,
            "defect_crop_share": 0.5,
            "threshold": 0.5,
            "lr": 0.0003,
            "val_fraction": 0.2,
            "precision": "bf16",
        },
        "step_selection": {
            "arm": "real",
            "curve": [[100, 0.05], [200, 0.12], [400, 0.3], [800, 0.31]],
            "chosen": 800,
            "rule": "first step within 0.02 of the best validation positive Dice",
        },
        "runs": [_run(arm, seed, 0.4) for arm in arms for seed in (0, 1)],
        "summary": {"real": _summary(0.4), "copypaste": _summary(0.41), "synthetic": _summary(0.456)},
        "paired": {
            "copypaste": {
                "mean_positive_dice": {"difference": 0.01, "ci95": [-0.02, 0.04], "images": 196, "seeds": 2},
                "fp_rate_defect_free": {"difference": 0.0, "ci95": [-0.01, 0.01], "images": 476, "seeds": 2},
            },
            "synthetic": {
                "mean_positive_dice": {
                    "difference": 0.056,
                    "ci95": [0.021, 0.087],
                    "images": 196,
                    "seeds": 2,
                },
                "fp_rate_defect_free": {"difference": 0.0, "ci95": [-0.01, 0.01], "images": 476, "seeds": 2},
            },
        },
        "quality": {
            "label_fidelity": {
                "synthetic": {"mean_positive_dice": 0.5, "positive_dice": {CLASSES[0]: 0.5, CLASSES[2]: 0.5}},
                "real_test": {
                    "mean_positive_dice": 0.55,
                    "positive_dice": {CLASSES[0]: 0.6, CLASSES[2]: 0.5},
                },
                "segmenter": "real arm, seed 0",
            },
            "kid": {
                "feature_space": "domain encoder (real-arm U-Net encoder, trained on the real training half)",
                "value": 0.0123,
                "std": 0.0031,
                "subsets": 50,
                "real_crops": 200,
                "synthetic_crops": 200,
            },
            "diversity": None,
        },
        "figures": {
            "real_vs_synthetic": {CLASSES[0]: "figures/real_vs_synthetic_1.png"},
            "synthetic_overlays": "figures/synthetic_overlays.png",
            "copypaste_examples": "figures/missing.png",
            "label_fidelity_failures": None,
        },
    }


def _eval_dir(tmp_path: Path, results: dict) -> Path:
    folder = tmp_path / "eval" / "run"
    (folder / "figures").mkdir(parents=True)
    for name in ("real_vs_synthetic_1.png", "synthetic_overlays.png"):
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
    return match.group(1)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, str]:
    """One rendered report, shared: rendering the plots is the slow part."""
    folder = _eval_dir(tmp_path_factory.mktemp("report"), _results())
    out = write_report(folder)
    return out, out.read_text(encoding="utf-8")


def test_writes_report_with_every_section(report):
    out, page = report
    assert out.name == "report.html" and out.parent.name == "run"
    assert page.startswith("<!DOCTYPE html>")
    assert set(SECTIONS) <= set(_parse(page).ids)
    assert not list(out.parent.glob(".report.html.*")), "temporary file left behind"


def test_every_arm_and_formatted_numbers(report):
    _, page = report
    results = _section(report[1], "results")
    for arm in ("real", "copypaste", "synthetic"):
        assert f"<td>{arm}</td>" in results
    assert "0.456 ± 0.021" in results  # mean positive Dice ± std over seeds
    assert "0.912 ± 0.004" in results  # Kaggle Dice
    assert "+0.010 [-0.020, +0.040]" in results  # paired difference, CI includes 0: not marked
    assert "<strong>+0.010" not in results
    assert "<strong>+0.056 [+0.021, +0.087]</strong>" in results  # CI excludes 0: marked
    assert "better" in results
    assert "0.0123 ± 0.0031" in _section(page, "quality")


def test_protocol_is_built_from_results(report):
    protocol = _section(report[1], "protocol")
    for fact in ("magnetic_tile", "50 % test", "seed 0", "25 %", "resnet18", "from scratch", "128×128 px"):
        assert fact in protocol, fact
    assert "same 800 steps" in protocol and "0.50" in protocol and "seeds 0, 1" in protocol
    assert "validation part (20 % of it)" in protocol
    assert "bootstrap" in protocol
    assert "warning" not in protocol


def test_protocol_warns_when_runs_differ_in_steps(tmp_path):
    results = _results()
    results["runs"][1]["steps"] = 400
    page = write_report(_eval_dir(tmp_path, results)).read_text()
    assert 'class="warning"' in _section(page, "protocol")


def test_images_inlined_and_nothing_external(report):
    _, page = report
    collector = _parse(page)
    data = [link for link in collector.links if link.startswith("data:image/png;base64,")]
    # 2 figure files + per-class chart, loss curves, step selection, label fidelity
    assert len(data) == 6
    assert all(link.startswith("data:") for link in collector.links)
    assert not re.search(r"(src|href)\s*=\s*[\"']?https?://", page)
    assert "http://" not in page and "https://" not in page
    assert collector.scripts == 0
    payload = base64.b64decode(data[0].split(",", 1)[1])
    assert payload.startswith(b"\x89PNG")


def test_missing_figures_are_said(report):
    grids = _section(report[1], "grids")
    assert "figures/missing.png not found" in grids
    assert grids.count("not available") == 4  # Crack, script class, copy-paste, label-fidelity failures


def test_class_names_are_escaped(report):
    _, page = report
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_missing_results_raises_helpful_error(tmp_path):
    with pytest.raises(DataError, match=r"results\.json not found.*defectgen evaluate"):
        write_report(tmp_path)


def test_unreadable_or_incomplete_results_raise(tmp_path):
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(DataError, match="not readable JSON"):
        write_report(tmp_path)
    results = _results()
    del results["summary"]
    (tmp_path / "results.json").write_text(json.dumps(results))
    with pytest.raises(DataError, match="lacks the key.*summary"):
        write_report(tmp_path)
    results = _results() | {"format": "defectgen-eval/9"}
    (tmp_path / "results.json").write_text(json.dumps(results))
    with pytest.raises(DataError, match="format"):
        write_report(tmp_path)
    assert not (tmp_path / "report.html").exists()


def test_nulls_everywhere_optional_still_render(tmp_path):
    results = _results()
    results.update(
        synthetic=None,
        step_selection=None,
        paired=None,
        quality=None,
        figures=None,
        split=None,
        versions=None,
    )
    results["config"]["seeds"] = [0]
    results["runs"] = [run for run in results["runs"] if run["seed"] == 0]
    for arm in results["summary"].values():
        arm["mean_positive_dice"] = {"mean": 0.3, "std": None}
    folder = tmp_path / "eval" / "nulls"
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(results))
    out = write_report(folder, tmp_path / "elsewhere" / "page.html")
    assert out == tmp_path / "elsewhere" / "page.html"
    page = out.read_text()
    assert set(SECTIONS) <= set(_parse(page).ids)
    quality = _section(page, "quality")
    assert quality.count("not measured") == 3
    assert "given by the user" in _section(page, "protocol")
    assert "given by the user" in _section(page, "curves")
    assert "<td>0.300</td>" in _section(page, "results")  # one seed: no ± shown
    assert "not available" in _section(page, "grids")
