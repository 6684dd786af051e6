"""Segmentation metrics of the evaluation protocol (DESIGN.md), per image and class.

- Kaggle Severstal score: mean Dice over all (image, class) pairs, where an empty prediction
  for an empty target scores 1 and any predicted pixel on an empty target scores 0.
- Positive Dice per class: mean Dice over the pairs whose target is not empty — the number that
  moves (on Severstal 86 % of pairs are empty, so the Kaggle score hides gains).
- IoU per class, over the same positive pairs.
- Image-level false-positive rate: the share of defect-free test images with any predicted
  defect pixel.

`ImageScores` keeps the per-image values so arms can be compared image by image (paired
differences with a bootstrap confidence interval).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def pair_scores(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """bool [K, H, W] prediction and target -> (dice [K], iou [K]); empty vs empty = 1."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {pred.shape} and target {target.shape} differ")
    pred = pred.reshape(pred.shape[0], -1)
    target = target.reshape(target.shape[0], -1)
    intersection = np.logical_and(pred, target).sum(axis=1).astype(np.float64)
    total = pred.sum(axis=1) + target.sum(axis=1).astype(np.float64)
    union = total - intersection
    both_empty = total == 0
    dice = np.where(both_empty, 1.0, 2 * intersection / np.maximum(total, 1))
    iou = np.where(both_empty, 1.0, intersection / np.maximum(union, 1))
    return dice, iou


@dataclass
class ImageScores:
    """Per-image scores of one model on one test set."""

    num_classes: int
    dice: list[np.ndarray] = field(default_factory=list)  # [K] per image
    iou: list[np.ndarray] = field(default_factory=list)
    positive: list[np.ndarray] = field(default_factory=list)  # [K] bool: target not empty
    predicted: list[np.ndarray] = field(default_factory=list)  # [K] bool: any predicted pixel
    defect_free: list[bool] = field(default_factory=list)

    def add(self, pred: np.ndarray, target: np.ndarray) -> None:
        dice, iou = pair_scores(pred, target)
        self.dice.append(dice)
        self.iou.append(iou)
        self.positive.append(target.reshape(len(target), -1).any(axis=1))
        self.predicted.append(pred.reshape(len(pred), -1).any(axis=1))
        self.defect_free.append(not target.any())

    def arrays(self) -> dict[str, np.ndarray]:
        k = self.num_classes
        return {
            "dice": np.asarray(self.dice, dtype=np.float64).reshape(-1, k),
            "iou": np.asarray(self.iou, dtype=np.float64).reshape(-1, k),
            "positive": np.asarray(self.positive, dtype=bool).reshape(-1, k),
            "predicted": np.asarray(self.predicted, dtype=bool).reshape(-1, k),
            "defect_free": np.asarray(self.defect_free, dtype=bool),
        }


def summarize(arrays: dict[str, np.ndarray], class_names: tuple[str, ...]) -> dict:
    """Per-image arrays (see `ImageScores.arrays`) -> the protocol's numbers."""
    dice, iou, positive = arrays["dice"], arrays["iou"], arrays["positive"]
    per_class_dice, per_class_iou = {}, {}
    for k, name in enumerate(class_names):
        rows = positive[:, k]
        per_class_dice[name] = float(dice[rows, k].mean()) if rows.any() else None
        per_class_iou[name] = float(iou[rows, k].mean()) if rows.any() else None
    present = [v for v in per_class_dice.values() if v is not None]
    present_iou = [v for v in per_class_iou.values() if v is not None]
    free = arrays["defect_free"]
    return {
        "kaggle_dice": float(dice.mean()) if dice.size else None,
        "positive_dice": per_class_dice,
        "mean_positive_dice": float(np.mean(present)) if present else None,
        "iou": per_class_iou,
        "mean_iou": float(np.mean(present_iou)) if present_iou else None,
        "fp_rate_defect_free": float(arrays["predicted"][free].any(axis=1).mean()) if free.any() else None,
        "images": int(len(dice)),
        "defect_free_images": int(free.sum()),
    }


def mean_positive_dice_per_image(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Per image: mean Dice over its positive classes (NaN for defect-free images)."""
    dice, positive = arrays["dice"], arrays["positive"]
    counts = positive.sum(axis=1)
    totals = np.where(positive, dice, 0.0).sum(axis=1)
    return np.where(counts > 0, totals / np.maximum(counts, 1), np.nan)


def paired_bootstrap(
    arm: list[np.ndarray], baseline: list[np.ndarray], rng: np.random.Generator, samples: int = 2000
) -> dict:
    """Difference arm - baseline of a per-image score, paired by seed and image.

    `arm[s]` and `baseline[s]` are per-image values for seed s on the same test images (NaN =
    not counted). The statistic is the mean over seeds of the per-seed mean difference; the
    95 % interval comes from resampling test images (the same images for every seed, since
    the test set is shared).
    """
    arm_values = np.stack(arm)  # [S, N]
    base_values = np.stack(baseline)
    if arm_values.shape != base_values.shape:
        raise ValueError("paired_bootstrap needs the same seeds and test images for both arms")
    differences = arm_values - base_values  # [S, N]
    valid = ~np.isnan(differences).any(axis=0)
    differences = differences[:, valid]
    if differences.shape[1] == 0:
        return {"difference": None, "ci95": [None, None], "images": 0, "seeds": int(len(arm))}
    estimate = float(differences.mean())
    n = differences.shape[1]
    draws = rng.integers(0, n, size=(samples, n))
    means = differences[:, draws].mean(axis=(0, 2))  # [samples]
    low, high = np.quantile(means, [0.025, 0.975])
    return {
        "difference": estimate,
        "ci95": [float(low), float(high)],
        "images": int(n),
        "seeds": int(len(arm)),
    }
