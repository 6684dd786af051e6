"""Segmentation metrics of the evaluation protocol (docs/ARCHITECTURE.md), per image and class.

- Kaggle Severstal score: mean Dice over all (image, class) pairs, where an empty prediction
  for an empty target scores 1 and any predicted pixel on an empty target scores 0.
- Positive Dice per class: mean Dice over the pairs whose target is not empty — the number that
  moves (on Severstal 86 % of pairs are empty, so the Kaggle score hides gains).
- IoU per class, over the same positive pairs.
- Image-level false-positive rate: the share of defect-free test images with any predicted
  defect pixel (after post-processing).
- Per-class image-level AUROC, the image's score being its maximum class probability.

`ImageScores` keeps the per-image values so arms can be compared seed by seed and image by
image (`paired_difference`: a seed-aware interval).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import stats


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
    max_probability: list[np.ndarray] = field(default_factory=list)  # [K]: image-level score

    def add(self, pred: np.ndarray, target: np.ndarray, probability: np.ndarray | None = None) -> None:
        """bool [K, H, W] prediction and target; float [K, H, W] probabilities (optional)."""
        dice, iou = pair_scores(pred, target)
        self.dice.append(dice)
        self.iou.append(iou)
        self.positive.append(target.reshape(len(target), -1).any(axis=1))
        self.predicted.append(pred.reshape(len(pred), -1).any(axis=1))
        self.defect_free.append(not target.any())
        if probability is not None:
            self.max_probability.append(probability.reshape(len(probability), -1).max(axis=1))

    def arrays(self) -> dict[str, np.ndarray]:
        k = self.num_classes
        return {
            "dice": np.asarray(self.dice, dtype=np.float64).reshape(-1, k),
            "iou": np.asarray(self.iou, dtype=np.float64).reshape(-1, k),
            "positive": np.asarray(self.positive, dtype=bool).reshape(-1, k),
            "predicted": np.asarray(self.predicted, dtype=bool).reshape(-1, k),
            "defect_free": np.asarray(self.defect_free, dtype=bool),
            "max_probability": np.asarray(self.max_probability, dtype=np.float64).reshape(-1, k),
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
    scores = arrays.get("max_probability")
    per_class_auroc = {
        name: auroc(scores[:, k], positive[:, k]) if scores is not None and len(scores) == len(dice) else None
        for k, name in enumerate(class_names)
    }
    present_auroc = [v for v in per_class_auroc.values() if v is not None]
    return {
        "kaggle_dice": float(dice.mean()) if dice.size else None,
        "positive_dice": per_class_dice,
        "mean_positive_dice": float(np.mean(present)) if present else None,
        "iou": per_class_iou,
        "mean_iou": float(np.mean(present_iou)) if present_iou else None,
        "fp_rate_defect_free": float(arrays["predicted"][free].any(axis=1).mean()) if free.any() else None,
        "auroc": per_class_auroc,
        "mean_auroc": float(np.mean(present_auroc)) if present_auroc else None,
        "images": int(len(dice)),
        "defect_free_images": int(free.sum()),
    }


def mean_positive_dice_per_image(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Per image: mean Dice over its positive classes (NaN for defect-free images)."""
    dice, positive = arrays["dice"], arrays["positive"]
    counts = positive.sum(axis=1)
    totals = np.where(positive, dice, 0.0).sum(axis=1)
    return np.where(counts > 0, totals / np.maximum(counts, 1), np.nan)


def contributions(arrays: dict[str, np.ndarray], metric: str) -> np.ndarray:
    """Per test image, its additive share of `metric` (the shares sum to the metric):

    - 'mean_positive_dice': class mean of positive Dice -> dice[i, k] / (K' |P_k|) over the
      positive pairs (P_k: images holding class k; K': classes with any positive image);
    - 'kaggle_dice': mean Dice over all (image, class) pairs -> mean_k dice[i, k] / N;
    - 'fp_rate_defect_free': 1 / N_free for a defect-free image with any predicted pixel.

    Paired differences of these shares give both the difference of the headline number and
    its image-sampling variance (`paired_difference`)."""
    dice, positive = arrays["dice"], arrays["positive"]
    if metric == "mean_positive_dice":
        counts = positive.sum(axis=0)  # [K]
        present = counts > 0
        if not present.any():
            return np.zeros(len(dice))
        weights = np.where(positive & present, 1.0 / (np.maximum(counts, 1) * present.sum()), 0.0)
        return (np.where(positive, dice, 0.0) * weights).sum(axis=1)
    if metric == "kaggle_dice":
        return dice.mean(axis=1) / max(len(dice), 1)
    if metric == "fp_rate_defect_free":
        free = arrays["defect_free"]
        return np.where(free, arrays["predicted"].any(axis=1), 0.0) / max(int(free.sum()), 1)
    raise ValueError(f"unknown metric {metric!r}")


PAIRED_METRICS = ("mean_positive_dice", "kaggle_dice", "fp_rate_defect_free")


def paired_difference(arm: list[np.ndarray], baseline: list[np.ndarray]) -> dict:
    """arm - baseline of one metric, paired by seed and test image, with a seed-aware interval.

    `arm[s]`, `baseline[s]`: per-image shares (`contributions`) of seed s on the same test
    images. Per seed the difference is exact (the sum of the share differences). The interval
    is a t-interval over seeds (df = S - 1) whose standard error adds the two sources of
    uncertainty: seed-to-seed spread of the per-seed differences (s^2 / S) and test-image
    sampling of the seed-averaged difference (N x variance of its per-image shares). A
    bootstrap over 5-10 seeds cannot reach its own 2.5 % tails, so the t form is used.
    """
    arm_values, base_values = np.stack(arm), np.stack(baseline)  # [S, N]
    if arm_values.shape != base_values.shape:
        raise ValueError("paired_difference needs the same seeds and test images for both arms")
    seeds, images = arm_values.shape
    shares = arm_values - base_values
    per_seed = shares.sum(axis=1)
    estimate = float(per_seed.mean())
    seed_sd = float(per_seed.std(ddof=1)) if seeds > 1 else float("nan")
    image_se = float(np.sqrt(images) * shares.mean(axis=0).std(ddof=1)) if images > 1 else 0.0
    se = float(np.sqrt(seed_sd**2 / seeds + image_se**2)) if seeds > 1 else float("nan")
    half = float(stats.t.ppf(0.975, seeds - 1) * se) if seeds > 1 else float("nan")
    return {
        "difference": estimate,
        "ci95": [estimate - half, estimate + half] if seeds > 1 else [None, None],
        "per_seed": [float(v) for v in per_seed],
        "seed_sd": None if seeds < 2 else seed_sd,
        "image_se": image_se,
        "seeds": int(seeds),
        "images": int(images),
        "interval": "t over seeds (df S-1), se^2 = seed_sd^2 / S + image_se^2",
    }


def minimal_detectable_effect(seed_sd: float, image_se: float, seeds: int, power: float = 0.8) -> float:
    """Smallest true difference a two-sided 5 % paired test finds with `power` at `seeds` seeds."""
    if seeds < 2:
        return float("inf")
    se = np.sqrt(seed_sd**2 / seeds + image_se**2)
    return float((stats.t.ppf(0.975, seeds - 1) + stats.t.ppf(power, seeds - 1)) * se)


def seeds_needed(seed_sd: float, image_se: float, effect: float, limit: int = 100) -> int | None:
    """Fewest seeds whose minimal detectable effect is <= `effect` (None: not within `limit`)."""
    for seeds in range(2, limit + 1):
        if minimal_detectable_effect(seed_sd, image_se, seeds) <= effect:
            return seeds
    return None


def auroc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Image-level AUROC of one class (None without both positive and negative images)."""
    labels = np.asarray(labels, dtype=bool)
    if labels.all() or not labels.any():
        return None
    from torchmetrics.functional.classification import binary_auroc

    return float(binary_auroc(torch.as_tensor(scores, dtype=torch.float64), torch.as_tensor(labels).long()))
