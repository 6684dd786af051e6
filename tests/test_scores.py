"""The evaluation's per-image score records and the metrics computed from them, each checked
against an independent computation whose answer is known (sklearn, direct pixel counting)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from defectgen.evaluate import postprocess
from defectgen.evaluate.scores import (
    BINS,
    CANDIDATES,
    PLAIN,
    ScoreSheet,
    bin_index,
    class_mean,
    dice_table,
    fp_rate,
    kaggle_dice,
    pair_scores,
    pixel_curves,
    positive_dice,
    summarize,
)


def _images(seed: int, count: int = 6, classes: int = 2, size: int = 24):
    """Random images: probability maps that partly follow blob targets; some defect-free."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        target = np.zeros((classes, size, size), dtype=bool)
        if i % 3:  # every third image is defect-free
            k = i % classes
            top, left = rng.integers(0, size - 8, size=2)
            target[k, top : top + rng.integers(3, 8), left : left + rng.integers(3, 8)] = True
        probability = np.clip(0.6 * target + rng.uniform(0, 0.55, target.shape), 0, 1).astype(np.float32)
        out.append((probability, target))
    return out


def _sheet(images) -> dict:
    sheet = ScoreSheet(images[0][0].shape[0])
    for probability, target in images:
        sheet.add(probability, target)
    return sheet.arrays()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pixel_ap_f1_and_auroc_match_sklearn_on_binned_scores(seed):
    images = _images(seed)
    curves = pixel_curves(_sheet(images))
    for k in range(2):
        scores = np.concatenate([bin_index(p[k]).ravel() for p, _ in images])
        labels = np.concatenate([t[k].ravel() for _, t in images])
        assert curves["pixel_ap"][0, k] == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
        assert curves["pixel_auroc"][0, k] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
        f1 = max(
            2 * (labels & (scores >= t)).sum() / ((scores >= t).sum() + labels.sum()) for t in range(BINS)
        )
        assert curves["f1_max"][0, k] == pytest.approx(f1, abs=1e-12)
        assert curves["prevalence"][0, k] == pytest.approx(labels.mean())


def test_a_perfect_and_a_useless_map():
    target = np.zeros((1, 10, 10), dtype=bool)
    target[0, 2:5, 2:5] = True
    perfect = _sheet([(target.astype(np.float32), target)])
    constant = _sheet([(np.full((1, 10, 10), 0.5, np.float32), target)])
    assert pixel_curves(perfect)["pixel_ap"][0, 0] == 1.0
    assert pixel_curves(constant)["pixel_ap"][0, 0] == pytest.approx(0.09)  # the prevalence
    assert pixel_curves(constant)["pixel_auroc"][0, 0] == 0.5


def test_a_class_without_positives_is_left_out_of_the_class_mean():
    target = np.zeros((2, 8, 8), dtype=bool)
    target[0, :3, :3] = True
    arrays = _sheet([(np.where(target, 0.9, 0.1).astype(np.float32), target)])
    ap = pixel_curves(arrays)["pixel_ap"][0]
    assert ap[0] == 1.0 and np.isnan(ap[1])
    assert class_mean(pixel_curves(arrays)["pixel_ap"])[0] == 1.0  # not (1 + 0) / 2


def test_candidate_records_give_the_dice_of_thresholded_filtered_predictions():
    images = _images(5, count=5)
    arrays = _sheet(images)
    for c, (threshold, min_area) in enumerate(CANDIDATES):
        chosen = np.full(2, c)
        for i, (probability, target) in enumerate(images):
            predicted = postprocess.apply(probability, list(chosen))
            assert predicted.sum() == arrays["predicted"][i, c].sum()
            dice, _ = pair_scores(predicted, target)
            assert dice_table(arrays, chosen)[i] == pytest.approx(dice)
        assert min_area in (0, 16, 32, 64, 128, 256, 512) and 0 < threshold < 1


def test_weighted_metrics_equal_metrics_of_repeated_images():
    """Bootstrap counts act as repeated images: weight 2 == the image listed twice."""
    images = _images(3, count=4)
    arrays = _sheet(images)
    doubled = _sheet([images[0], images[0], *images[1:]])
    weights = np.array([[2.0, 1.0, 1.0, 1.0]])
    for function in (positive_dice, lambda a, w: pixel_curves(a, w)["pixel_ap"]):
        assert np.allclose(function(arrays, weights), function(doubled, None), equal_nan=True)
    assert kaggle_dice(arrays, weights)[0] == pytest.approx(kaggle_dice(doubled)[0])
    assert fp_rate(arrays, weights)[0] == pytest.approx(fp_rate(doubled)[0])


def test_plain_positive_dice_and_fp_rate_by_hand():
    target = np.zeros((1, 10, 10), dtype=bool)
    target[0, :4, :5] = True  # 20 pixels
    probability = np.zeros((1, 10, 10), np.float32)
    probability[0, :4, :5] = 0.9
    probability[0, 9, 9] = 0.8  # one false pixel: Dice 40 / 41
    clean = np.zeros((1, 10, 10), bool)
    noisy = np.zeros((1, 10, 10), np.float32)
    noisy[0, 0, 0] = 0.6
    arrays = _sheet([(probability, target), (noisy, clean), (np.zeros_like(noisy), clean)])
    assert positive_dice(arrays)[0, 0] == pytest.approx(40 / 41)
    assert fp_rate(arrays)[0] == pytest.approx(0.5)
    area_16 = CANDIDATES.index((0.5, 16))  # erases the 1-pixel speck and the 1-pixel noise
    assert fp_rate(arrays, None, area_16)[0] == 0.0
    assert kaggle_dice(arrays, None, area_16)[0] == pytest.approx((1 + 1 + 1) / 3)
    summary = summarize(arrays, ("scratch",), [area_16])
    assert summary["positive_dice_plain"] == pytest.approx(40 / 41)  # headline Dice is never post-processed
    assert summary["fp_rate_defect_free"] == 0.0 and summary["defect_free_images"] == 2
    assert PLAIN == CANDIDATES.index((0.5, 0))


def test_the_chooser_keeps_a_rare_class_that_mean_dice_would_erase():
    """3 positive images among 40, and 8 clean ones with a false speck the model cannot tell
    apart: a per-image mean of Dice (empty on empty = 1) prefers predicting nothing (37/40
    against 32/40); pooled Dice keeps the class."""
    rng = np.random.default_rng(0)
    images = []
    for i in range(40):
        target = np.zeros((1, 32, 32), dtype=bool)
        probability = rng.uniform(0, 0.2, (1, 32, 32)).astype(np.float32)
        if i < 3:
            target[0, 8:14, 8:13] = True
            probability[0, 8:14, 8:13] = 0.62
        elif i < 11:
            probability[0, 20:26, 20:25] = 0.62  # a speck like a defect, on a clean image
        images.append((probability, target))
    arrays = _sheet(images)
    chosen, table = postprocess.choose_pooled([arrays], ("blowhole",))
    assert sum(postprocess.apply(p, chosen).sum() for p, _ in images[:3]) == 3 * 30  # defects kept
    assert table["blowhole"]["pooled_validation_dice"] == pytest.approx(2 * 90 / (90 + 90 + 240))
    # the rule it replaces: mean per-image Dice picks a candidate that erases every defect
    mean_dice = [
        np.mean([pair_scores(postprocess.apply(p, [c]), t)[0][0] for p, t in images])
        for c in range(len(CANDIDATES))
    ]
    erasing = CANDIDATES[int(np.argmax(mean_dice))]
    assert sum(postprocess.apply(p, [CANDIDATES.index(erasing)]).sum() for p, _ in images[:3]) == 0
    assert max(mean_dice) == pytest.approx(37 / 40)
    assert table["blowhole"]["rule"] == "best pooled validation Dice"


def test_the_chooser_pools_runs_and_keeps_plain_without_positives():
    images = _images(7, count=6)
    one, two = _sheet(images[:3]), _sheet(images[3:])
    pooled, _ = postprocess.choose_pooled([one, two], ("a", "b"))
    together, _ = postprocess.choose_pooled([_sheet(images)], ("a", "b"))
    assert pooled == together
    clean = [(np.full((2, 8, 8), 0.7, np.float32), np.zeros((2, 8, 8), bool))]
    chosen, table = postprocess.choose_pooled([_sheet(clean)], ("a", "b"))
    assert chosen == [PLAIN, PLAIN] and table["a"]["pooled_validation_dice"] is None
