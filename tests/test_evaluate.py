"""The evaluation instrument: metrics on hand-computed cases, baselines that keep labels
honest, arms that differ only in data, and a tiny end-to-end evaluate + report run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from defectgen.cli import main
from defectgen.data import open_dataset
from defectgen.data.split import make_split
from defectgen.errors import ConfigError, DataError
from defectgen.evaluate import EvalConfig
from defectgen.evaluate.metrics import ImageScores, pair_scores, paired_bootstrap, summarize
from defectgen.evaluate.run import _sampler, carve_validation
from defectgen.evaluate.sampling import ARMS, copypaste_pool
from defectgen.evaluate.segmenter import build_segmenter, predict

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_folder"


def _mask(shape, *boxes):
    mask = np.zeros(shape, bool)
    for y0, y1, x0, x1 in boxes:
        mask[y0:y1, x0:x1] = True
    return mask


def test_pair_scores_hand_computed():
    empty = np.zeros((1, 4, 4), bool)
    one_pixel = empty.copy()
    one_pixel[0, 0, 0] = True
    assert pair_scores(empty, empty)[0].tolist() == [1.0]  # empty vs empty = 1
    assert pair_scores(one_pixel, empty)[0].tolist() == [0.0]  # one false-positive pixel = 0
    target = _mask((4, 4), (0, 2, 0, 2))[None]  # 4 pixels
    pred = _mask((4, 4), (0, 1, 0, 2))[None]  # 2 of them
    dice, iou = pair_scores(pred, target)
    assert dice[0] == pytest.approx(2 * 2 / (2 + 4)) and iou[0] == pytest.approx(2 / 4)


def test_summary_counts_positive_pairs_and_false_positives():
    scores = ImageScores(2)
    target = np.stack([_mask((4, 4), (0, 2, 0, 2)), np.zeros((4, 4), bool)])
    scores.add(target.copy(), target)  # perfect on a defect image
    scores.add(
        np.stack([np.zeros((4, 4), bool), _mask((4, 4), (3, 4, 3, 4))]), np.zeros((2, 4, 4), bool)
    )  # FP
    scores.add(np.zeros((2, 4, 4), bool), np.zeros((2, 4, 4), bool))  # clean
    summary = summarize(scores.arrays(), ("a", "b"))
    assert summary["positive_dice"] == {"a": 1.0, "b": None}
    assert summary["mean_positive_dice"] == 1.0
    assert summary["kaggle_dice"] == pytest.approx(5 / 6)  # 6 pairs, one is 0
    assert summary["fp_rate_defect_free"] == 0.5


def test_paired_bootstrap():
    rng = np.random.default_rng(0)
    base = [np.linspace(0, 1, 50), np.linspace(0.1, 0.9, 50)]
    same = paired_bootstrap(base, base, rng)
    assert same["difference"] == 0 and same["ci95"] == [0.0, 0.0]
    shifted = paired_bootstrap([b + 0.1 for b in base], base, rng)
    assert shifted["difference"] == pytest.approx(0.1) and shifted["ci95"][0] > 0
    noisy = paired_bootstrap([b + rng.normal(0, 0.3, 50) for b in base], base, rng)
    assert noisy["ci95"][0] < noisy["difference"] < noisy["ci95"][1]


def test_copypaste_keeps_labels_consistent_with_pixels():
    dataset = open_dataset(str(FIXTURE))
    split = make_split(dataset, seed=0)
    train = split.indices(dataset, "train")
    backgrounds = [dataset[i].image for i in train if not dataset.items[i].class_ids]
    pool = copypaste_pool(dataset, train, 6, seed=0)
    for index in range(len(pool)):
        image, masks, _ = pool.get(index)
        assert masks.any() and masks.sum(axis=0).max() <= 1  # labelled, classes never overlap
        outside = ~masks.any(axis=0)
        assert any(np.array_equal(image[outside], b[outside]) for b in backgrounds)  # untouched outside
        # inside, the pasted pixels are defect pixels: darker scratches / brighter pits than the steel
        background = next(b for b in backgrounds if np.array_equal(image[outside], b[outside]))
        assert not np.array_equal(image[~outside], background[~outside])


def test_arms_differ_only_in_data(tmp_path):
    dataset = open_dataset(str(FIXTURE))
    split = make_split(dataset, seed=0)
    train = split.indices(dataset, "train")
    config = EvalConfig(crop_size=32, batch_size=4)
    synthetic = dataset  # stands in for a synthetic folder: only the pool's origin matters here
    samplers = {arm: _sampler(arm, 0, dataset, train, synthetic, 4, config) for arm in ARMS}
    for arm, sampler in samplers.items():
        assert (sampler.crop_size, sampler.defect_crop_share, sampler.seed) == (32, 0.5, 0), arm
        assert (sampler.augment is not None) == (arm == "classic"), arm
    for arm in ("oversample", "copypaste", "synthetic"):
        assert samplers[arm].extra_share == config.extra_share and samplers[arm].extra is not None
    assert samplers["real"].extra is None and samplers["real"].extra_share == 0
    assert samplers["synthetic-only"].main is None and samplers["synthetic-only"].extra_share == 1
    images, masks = samplers["real"].batch(0, 4)
    assert images.shape == (4, 1, 32, 32) and masks.shape == (4, 2, 32, 32)
    again, _ = samplers["real"].batch(0, 4)
    assert torch.equal(images, again)  # a batch is a function of (seed, step)


def test_validation_part_is_deterministic_and_inside_the_training_half(magnetic_tile_dir):
    dataset = open_dataset(str(magnetic_tile_dir))
    split = make_split(dataset, seed=0, label_fraction=0.25)
    train = split.indices(dataset, "train")
    fit, validation = carve_validation(dataset, train, 0.2, seed=0)
    assert (fit, validation) == carve_validation(dataset, train, 0.2, seed=0)
    assert not set(fit) & set(validation) and set(fit) | set(validation) == set(train)
    assert not set(validation) & set(split.indices(dataset, "test"))
    assert all(any(c in dataset.items[i].class_ids for i in validation) for c in dataset.classes.ids)


def test_encoder_weights_from_a_local_file(tmp_path):
    rgb = build_segmenter("resnet18", 3, 2)
    path = tmp_path / "encoder.pt"
    torch.save(rgb.encoder.state_dict(), path)
    gray = build_segmenter("resnet18", 1, 2, encoder_weights=path)
    expected = rgb.encoder.conv1.weight.sum(dim=1, keepdim=True)
    assert torch.allclose(gray.encoder.conv1.weight, expected)
    assert torch.equal(gray.encoder.layer1[0].conv1.weight, rgb.encoder.layer1[0].conv1.weight)
    with pytest.raises(DataError, match="not found"):
        build_segmenter("resnet18", 1, 2, encoder_weights=tmp_path / "missing.pt")
    torch.save({"unrelated": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(DataError, match="no tensor matches"):
        build_segmenter("resnet18", 1, 2, encoder_weights=tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="unknown segmentation encoder"):
        build_segmenter("no-such-encoder", 1, 2)


def test_predict_works_on_native_sizes():
    model = build_segmenter("resnet18", 1, 2).eval()
    for shape in [(48, 64, 1), (37, 101, 1), (256, 1600, 1)]:
        prediction = predict(model, np.full(shape, 100, np.uint8))
        assert prediction.shape == (2, *shape[:2]) and prediction.dtype == bool


def test_tiny_evaluate_and_report_end_to_end(tmp_path, capsys):
    split_file = tmp_path / "split.json"
    assert main(["split", str(FIXTURE), "--out", str(split_file)]) == 0
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                str(FIXTURE),
                "--split",
                str(split_file),
                "--out",
                str(run),
                "--preset",
                "tiny",
                "--steps",
                "2",
                "--set",
                "resolution=32",
                "--set",
                "batch_size=2",
            ]
        )
        == 0
    )
    checkpoint = run / "checkpoints" / "last.pt"
    assert (
        main(
            [
                "synth",
                str(FIXTURE),
                "--checkpoint",
                str(checkpoint),
                "--split",
                str(split_file),
                "--n",
                "4",
                "--out",
                str(tmp_path / "synth"),
            ]
        )
        == 0
    )
    eval_dir = tmp_path / "eval"
    args = [
        "evaluate",
        str(FIXTURE),
        "--split",
        str(split_file),
        "--synthetic",
        str(tmp_path / "synth"),
        "--checkpoint",
        str(checkpoint),
        "--out",
        str(eval_dir),
        "--seeds",
        "2",
        "--max-steps",
        "4",
        "--eval-every",
        "2",
        "--size",
        "32",
        "--batch-size",
        "4",
        "--arms",
        "real,oversample,copypaste,classic,synthetic",
    ]
    assert main(args) == 0
    results = json.loads((eval_dir / "results.json").read_text())
    assert results["step_selection"]["chosen"] in (2, 4)
    assert {(r["arm"], r["seed"]) for r in results["runs"]} == {
        (a, s) for a in ("real", "oversample", "copypaste", "classic", "synthetic") for s in (0, 1)
    }
    assert len({(r["steps"]) for r in results["runs"]}) == 1  # every arm, the same steps
    for run_record in results["runs"]:
        for value in (run_record["test"]["kaggle_dice"], run_record["test"]["fp_rate_defect_free"]):
            assert np.isfinite(value)
    assert results["quality"]["label_fidelity"] and results["quality"]["kid"]["value"] is not None
    assert results["quality"]["diversity"]["mean_pairwise_distance"] >= 0
    first = (eval_dir / "runs" / "real_s0.json").stat().st_mtime
    assert main(args) == 0  # resumable: finished runs are not trained again
    assert (eval_dir / "runs" / "real_s0.json").stat().st_mtime == first
    assert main(["report", str(eval_dir)]) == 0
    html = (eval_dir / "report.html").read_text()
    for section in ("protocol", "results", "per-class", "curves", "quality", "grids", "reading"):
        assert f'id="{section}"' in html
    assert "data:image/png;base64," in html


def test_evaluate_bad_input(tmp_path):
    split_file = tmp_path / "split.json"
    assert main(["split", str(FIXTURE), "--out", str(split_file)]) == 0
    base = ["evaluate", str(FIXTURE), "--split", str(split_file), "--out", str(tmp_path / "e")]
    assert main([*base, "--arms", "real,magic"]) == 2
    assert main([*base, "--arms", "synthetic"]) == 2  # needs --synthetic
    assert main([*base, "--size", "100"]) == 2
    assert main([*base, "--synthetic", str(tmp_path / "nope"), "--arms", "synthetic"]) == 2
