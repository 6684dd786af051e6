"""Post-processing chosen on validation data, as Severstal's winners did: per class, a
probability threshold and a minimum connected-component area (smaller components are erased).

`choose` searches the grid on the validation part of the training half and keeps, per class,
the pair with the best mean Dice over all validation images of that class's channel (an empty
prediction on an empty target scores 1, so painting noise on clean images costs). Ties keep the
pair nearest the plain default (threshold 0.5, no area filter). The test half is never used.
"""

from __future__ import annotations

import cv2
import numpy as np

from defectgen.evaluate.config import MIN_AREAS, THRESHOLDS

DEFAULT = {"threshold": 0.5, "min_area": 0}


def _components(binary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """bool [H, W] -> (labels int32 [H, W], areas [n]) with label 0 = background."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary.astype(np.uint8), connectivity=8)
    return labels, stats[:, cv2.CC_STAT_AREA].copy() if count else np.zeros(1, dtype=np.int64)


def apply_one(probability: np.ndarray, threshold: float, min_area: int) -> np.ndarray:
    """float [H, W] -> bool [H, W]: thresholded, components under `min_area` pixels erased."""
    binary = probability > threshold
    if min_area <= 0 or not binary.any():
        return binary
    labels, areas = _components(binary)
    keep = areas >= min_area
    keep[0] = False
    return keep[labels]


def apply(probabilities: np.ndarray, params: list[dict]) -> np.ndarray:
    """float [K, H, W] and one {'threshold', 'min_area'} per class -> bool [K, H, W]."""
    return np.stack(
        [apply_one(p, c["threshold"], c["min_area"]) for p, c in zip(probabilities, params, strict=True)]
    )


def _dice(pred: np.ndarray, target: np.ndarray) -> float:
    total = int(pred.sum()) + int(target.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(pred, target).sum()) / total


def choose(probabilities: list[np.ndarray], targets: list[np.ndarray]) -> tuple[list[dict], list[dict]]:
    """Validation probabilities float [K, H, W] and targets bool [K, H, W] per image ->
    (chosen params per class, per-class search table {'threshold', 'min_area', 'dice'} rows)."""
    if not probabilities:
        raise ValueError("post-processing needs at least one validation image")
    num_classes = probabilities[0].shape[0]
    candidates = sorted(
        ((t, a) for t in THRESHOLDS for a in MIN_AREAS),
        key=lambda c: (abs(c[0] - DEFAULT["threshold"]), c[1]),
    )
    chosen, tables = [], []
    for k in range(num_classes):
        scores = {c: 0.0 for c in candidates}
        for probability, target in zip(probabilities, targets, strict=True):
            for threshold in THRESHOLDS:
                binary = probability[k] > threshold
                labels, areas = _components(binary) if binary.any() else (None, None)
                for min_area in MIN_AREAS:
                    if labels is None:
                        pred = binary
                    else:
                        keep = areas >= min_area
                        keep[0] = False
                        pred = keep[labels]
                    scores[(threshold, min_area)] += _dice(pred, target[k])
        best = max(candidates, key=lambda c: scores[c])  # max keeps the first of equal scores
        count = len(probabilities)
        chosen.append({"threshold": best[0], "min_area": best[1], "validation_dice": scores[best] / count})
        tables.append(
            {"default_dice": scores[(DEFAULT["threshold"], DEFAULT["min_area"])] / count, **chosen[-1]}
        )
    return chosen, tables
