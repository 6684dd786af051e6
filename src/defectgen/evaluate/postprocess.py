"""The one post-processing of an evaluation, chosen per class on validation predictions.

Severstal's winners post-processed each class with a probability threshold and a minimum
connected-component area (smaller components are erased). The FP rate on defect-free images and
Kaggle-style Dice depend on that choice, so it is made **once** per class for every arm and
seed: on the `real` arm's validation predictions pooled over its seeds (never on the test half,
never per run, so twin arms cannot switch a class on and off).

The objective is the class's *pooled* Dice over all validation images,
2 * sum(overlap) / sum(predicted + target). Erasing a class that has validation positives scores
0 under it, so the choice cannot win by predicting nothing (a mean of per-image Dice, where an
empty prediction on an empty image scores 1, can: with 3 positive images among 105, "nothing"
scored 0.97). False positives on clean images still cost, through the predicted pixels. A class
without validation positives keeps the plain candidate (threshold 0.5, no area filter). Ties
keep the candidate nearest the plain one.
"""

from __future__ import annotations

import numpy as np

from defectgen.evaluate.scores import CANDIDATES, PLAIN


def pooled_dice(validation: list[dict]) -> np.ndarray:
    """Per candidate and class, the pooled Dice [C, K] over the validation arrays of every run
    given (NaN where a class has no positive pixel)."""
    predicted = sum(v["predicted"].sum(axis=0) for v in validation).astype(np.float64)  # [C, K]
    overlap = sum(v["overlap"].sum(axis=0) for v in validation).astype(np.float64)
    target = sum(v["target"].sum(axis=0) for v in validation).astype(np.float64)  # [K]
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = 2 * overlap / (predicted + target[None])
    return np.where(target[None] > 0, dice, np.nan)


def _closeness(candidate: tuple[float, int]) -> tuple[float, int]:
    threshold, min_area = candidate
    return abs(threshold - CANDIDATES[PLAIN][0]), min_area


ORDER = sorted(range(len(CANDIDATES)), key=lambda c: _closeness(CANDIDATES[c]))


def choose_pooled(validation: list[dict], class_names: tuple[str, ...]) -> tuple[list[int], dict]:
    """Validation arrays of the `real` arm's runs -> (candidate index per class, table per class
    with the chosen threshold, min area, its pooled Dice and the plain candidate's)."""
    if not validation:
        raise ValueError("post-processing needs the validation predictions of at least one real run")
    dice = pooled_dice(validation)
    chosen, table = [], {}
    for k, name in enumerate(class_names):
        column = dice[:, k]
        if np.isnan(column).all():
            index, why = PLAIN, "no validation positives: the plain candidate"
        else:
            index = max(ORDER, key=lambda c: column[c])  # max keeps the first (nearest plain) of ties
            why = "best pooled validation Dice"
        chosen.append(index)
        threshold, min_area = CANDIDATES[index]
        table[name] = {
            "threshold": threshold,
            "min_area": min_area,
            "pooled_validation_dice": None if np.isnan(column[index]) else float(column[index]),
            "plain_validation_dice": None if np.isnan(column[PLAIN]) else float(column[PLAIN]),
            "rule": why,
        }
    return chosen, table


def apply(probabilities: np.ndarray, chosen: list[int]) -> np.ndarray:
    """float [K, H, W] and one candidate index per class -> bool [K, H, W] (for predictions
    a user keeps, e.g. the report's grids)."""
    import cv2

    out = np.zeros(probabilities.shape, dtype=bool)
    for k, index in enumerate(chosen):
        threshold, min_area = CANDIDATES[index]
        binary = probabilities[k] > threshold
        if min_area and binary.any():
            count, labels, stats, _ = cv2.connectedComponentsWithStats(
                binary.astype(np.uint8), connectivity=8
            )
            keep = stats[:, cv2.CC_STAT_AREA] >= min_area
            keep[0] = False
            binary = keep[labels]
        out[k] = binary
    return out
