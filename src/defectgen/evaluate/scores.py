"""What one segmenter run keeps of each scored image, and the metrics computed from it.

Per image, a run keeps (`ScoreSheet`):

- a pixel histogram per class: how many target-negative and target-positive pixels fall in
  each of `BINS` probability bins. Threshold-free scores come from the summed histograms:
  **pixel average precision** (sklearn's step-wise definition, on probabilities rounded down
  to 1/BINS), F1-max and pixel AUROC;
- per class and per post-processing candidate (threshold x minimum component area), the
  predicted pixels and their overlap with the target. Positive Dice at a plain 0.5 threshold,
  Kaggle-style Dice and the false-positive rate on defect-free images under any candidate come
  from these, so the post-processing can be chosen *after* every run has finished (once per
  class, for all arms: `postprocess.choose_pooled`), and no test image is predicted twice;
- the maximum probability per class (image-level AUROC).

Every metric here takes image weights `weights` [B, N] (a row of ones: the metric itself; rows
of bootstrap counts: its resampled values, `statistics.py`), so one function serves the
estimate and its interval.
"""

from __future__ import annotations

import cv2
import numpy as np

BINS = 256  # probability bins of the pixel histograms: scores are rounded down to 1/256
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)  # post-processing candidates: a probability threshold ...
MIN_AREAS = (0, 16, 32, 64, 128, 256, 512)  # ... and a minimum connected-component area (pixels)
CANDIDATES = tuple((t, a) for t in THRESHOLDS for a in MIN_AREAS)
PLAIN = CANDIDATES.index((0.5, 0))  # the plain candidate: threshold 0.5, no area filter


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


def bin_index(probability: np.ndarray) -> np.ndarray:
    """float probabilities in [0, 1] -> int bin indices 0..BINS-1 (rounded down to 1/BINS)."""
    return np.minimum((np.asarray(probability, dtype=np.float32) * BINS).astype(np.int64), BINS - 1)


def candidate_counts(probability: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float [H, W] probabilities and bool [H, W] target of one class -> (predicted pixels [C],
    overlap with the target [C]) for every post-processing candidate C (`CANDIDATES`)."""
    predicted = np.zeros(len(CANDIDATES), dtype=np.int64)
    overlap = np.zeros(len(CANDIDATES), dtype=np.int64)
    for t_index, threshold in enumerate(THRESHOLDS):
        binary = probability > threshold
        if not binary.any():
            continue
        count, labels, stats, _ = cv2.connectedComponentsWithStats(binary.astype(np.uint8), connectivity=8)
        areas = stats[:, cv2.CC_STAT_AREA].astype(np.int64)
        hits = np.bincount(labels[target], minlength=count).astype(np.int64)
        areas[0], hits[0] = 0, 0  # label 0 is the background
        for a_index, min_area in enumerate(MIN_AREAS):
            keep = areas >= min_area
            c = t_index * len(MIN_AREAS) + a_index
            predicted[c] = areas[keep].sum()
            overlap[c] = hits[keep].sum()
    return predicted, overlap


class ScoreSheet:
    """Per-image records of one model on one set of images (see the module docstring)."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self._rows: list[dict[str, np.ndarray]] = []

    def add(self, probability: np.ndarray, target: np.ndarray) -> None:
        """float [K, H, W] probabilities and bool [K, H, W] target of one image."""
        if probability.shape != target.shape or probability.shape[0] != self.num_classes:
            raise ValueError(f"probability {probability.shape} and target {target.shape} differ")
        k = self.num_classes
        bins = bin_index(probability).reshape(k, -1)
        flat_target = target.reshape(k, -1)
        histogram = np.zeros((k, 2, BINS), dtype=np.uint32)
        predicted = np.zeros((len(CANDIDATES), k), dtype=np.int64)
        overlap = np.zeros((len(CANDIDATES), k), dtype=np.int64)
        for c in range(k):
            histogram[c, 1] = np.bincount(bins[c][flat_target[c]], minlength=BINS)
            histogram[c, 0] = np.bincount(bins[c][~flat_target[c]], minlength=BINS)
            predicted[:, c], overlap[:, c] = candidate_counts(probability[c], target[c])
        self._rows.append(
            {
                "histogram": histogram,
                "predicted": predicted,
                "overlap": overlap,
                "target": flat_target.sum(axis=1).astype(np.int64),
                "max_probability": probability.reshape(k, -1).max(axis=1).astype(np.float32),
            }
        )

    def arrays(self) -> dict[str, np.ndarray]:
        """Stacked per-image arrays: histogram [N, K, 2, BINS], predicted and overlap [N, C, K],
        target [N, K] (pixels), max_probability [N, K]."""
        if not self._rows:
            k, c = self.num_classes, len(CANDIDATES)
            return {
                "histogram": np.zeros((0, k, 2, BINS), np.uint32),
                "predicted": np.zeros((0, c, k), np.int64),
                "overlap": np.zeros((0, c, k), np.int64),
                "target": np.zeros((0, k), np.int64),
                "max_probability": np.zeros((0, k), np.float32),
            }
        return {key: np.stack([row[key] for row in self._rows]) for key in self._rows[0]}


# --- metrics of weighted images ----------------------------------------------------------------


def _weights(weights: np.ndarray | None, count: int) -> np.ndarray:
    if weights is None:
        return np.ones((1, count))
    weights = np.asarray(weights, dtype=np.float64)
    return weights[None] if weights.ndim == 1 else weights


def pixel_curves(arrays: dict, weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per weight row and class: pixel AP, F1-max, pixel AUROC and prevalence, each [B, K]
    (NaN where a class has no positive pixel)."""
    histogram = arrays["histogram"]
    count, classes = histogram.shape[:2]
    w = _weights(weights, count)
    summed = (w @ histogram.reshape(count, -1).astype(np.float64)).reshape(len(w), classes, 2, BINS)
    negatives, positives = summed[:, :, 0, ::-1], summed[:, :, 1, ::-1]  # highest score first
    true_pos, false_pos = np.cumsum(positives, axis=-1), np.cumsum(negatives, axis=-1)
    total_pos, total_neg = true_pos[..., -1], false_pos[..., -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(true_pos + false_pos > 0, true_pos / (true_pos + false_pos), 0.0)
        ap = (positives * precision).sum(axis=-1) / total_pos
        f1 = (2 * true_pos / (true_pos + false_pos + total_pos[..., None])).max(axis=-1)
        # AUROC: P(score of a positive > score of a negative), ties counting one half
        above = true_pos - positives  # positives in strictly higher bins
        auroc = (negatives * (above + 0.5 * positives)).sum(axis=-1) / (total_pos * total_neg)
        prevalence = total_pos / (total_pos + total_neg)
    none = total_pos == 0
    return {
        "pixel_ap": np.where(none, np.nan, ap),
        "f1_max": np.where(none, np.nan, f1),
        "pixel_auroc": np.where(none | (total_neg == 0), np.nan, auroc),
        "prevalence": np.where(none, np.nan, prevalence),
    }


def dice_table(arrays: dict, candidate: np.ndarray | int) -> np.ndarray:
    """Per image and class, Dice [N, K] under one candidate per class (an int: the same for
    every class); an empty prediction on an empty target scores 1."""
    predicted, overlap, target = arrays["predicted"], arrays["overlap"], arrays["target"]
    index = np.broadcast_to(np.asarray(candidate), (predicted.shape[2],))
    columns = np.arange(predicted.shape[2])
    chosen_pred = predicted[:, index, columns].astype(np.float64)
    chosen_overlap = overlap[:, index, columns].astype(np.float64)
    total = chosen_pred + target
    return np.where(total == 0, 1.0, 2 * chosen_overlap / np.maximum(total, 1))


def positive_dice(arrays: dict, weights: np.ndarray | None = None, candidate=PLAIN) -> np.ndarray:
    """Per weight row and class, the mean Dice over images holding the class [B, K] (NaN: none)."""
    dice = dice_table(arrays, candidate)
    positive = arrays["target"] > 0
    w = _weights(weights, len(dice))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w @ np.where(positive, dice, 0.0)) / (w @ positive)


def kaggle_dice(arrays: dict, weights: np.ndarray | None = None, candidate=PLAIN) -> np.ndarray:
    """Per weight row, mean Dice over every (image, class) pair [B]."""
    dice = dice_table(arrays, candidate)
    w = _weights(weights, len(dice))
    return (w @ dice.mean(axis=1)) / w.sum(axis=1)


def fp_rate(arrays: dict, weights: np.ndarray | None = None, candidate=PLAIN) -> np.ndarray:
    """Per weight row, the share of defect-free images with any predicted pixel [B] (NaN: none)."""
    predicted, target = arrays["predicted"], arrays["target"]
    index = np.broadcast_to(np.asarray(candidate), (predicted.shape[2],))
    any_pred = (predicted[:, index, np.arange(predicted.shape[2])] > 0).any(axis=1)
    free = (target == 0).all(axis=1)
    w = _weights(weights, len(target))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w @ (free & any_pred)) / (w @ free)


def class_mean(values: np.ndarray) -> np.ndarray:
    """[B, K] -> [B]: the mean over classes that are not NaN (NaN where none is)."""
    present = ~np.isnan(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(present, values, 0.0).sum(axis=1) / present.sum(axis=1)


# The metrics that arms are compared on, each a function (arrays, weights, post-processing) -> [B].
# class_mean_pixel_ap is the headline.
PAIRED_METRICS = {
    "class_mean_pixel_ap": lambda a, w, pp: class_mean(pixel_curves(a, w)["pixel_ap"]),
    "class_mean_f1_max": lambda a, w, pp: class_mean(pixel_curves(a, w)["f1_max"]),
    "positive_dice_plain": lambda a, w, pp: class_mean(positive_dice(a, w)),
    "kaggle_dice": lambda a, w, pp: kaggle_dice(a, w, pp),
    "fp_rate_defect_free": lambda a, w, pp: fp_rate(a, w, pp),
}
HIGHER_IS_BETTER = {name: name != "fp_rate_defect_free" for name in PAIRED_METRICS}


def image_auroc(arrays: dict) -> list[float | None]:
    """Per class: image-level AUROC of the maximum probability (None without both kinds)."""
    from sklearn.metrics import roc_auc_score

    out = []
    labels = arrays["target"] > 0
    for k in range(labels.shape[1]):
        if labels[:, k].all() or not labels[:, k].any():
            out.append(None)
        else:
            out.append(float(roc_auc_score(labels[:, k], arrays["max_probability"][:, k])))
    return out


def summarize(arrays: dict, class_names: tuple[str, ...], post_processing=None) -> dict:
    """The protocol's numbers of one run: per class and class means. `post_processing` (one
    candidate index per class, `postprocess.choose_pooled`) applies to Kaggle Dice and the FP
    rate only; without it those two are omitted."""

    def per_class(values: np.ndarray) -> dict:
        return {
            name: (None if np.isnan(v) else float(v)) for name, v in zip(class_names, values, strict=True)
        }

    def scalar(value) -> float | None:
        value = float(np.asarray(value).reshape(-1)[0])
        return None if np.isnan(value) else value

    curves = {key: value[0] for key, value in pixel_curves(arrays).items()}
    dice = positive_dice(arrays)[0]
    target = arrays["target"]
    result = {
        "class_mean_pixel_ap": scalar(class_mean(curves["pixel_ap"][None])),
        "class_mean_f1_max": scalar(class_mean(curves["f1_max"][None])),
        "class_mean_pixel_auroc": scalar(class_mean(curves["pixel_auroc"][None])),
        "positive_dice_plain": scalar(class_mean(dice[None])),
        "pixel_ap": per_class(curves["pixel_ap"]),
        "f1_max": per_class(curves["f1_max"]),
        "pixel_auroc": per_class(curves["pixel_auroc"]),
        "prevalence": per_class(curves["prevalence"]),
        "positive_dice": per_class(dice),
        "image_auroc": dict(zip(class_names, image_auroc(arrays), strict=True)),
        "images": int(len(target)),
        "defect_free_images": int((target == 0).all(axis=1).sum()),
        "positive_images": {name: int((target[:, k] > 0).sum()) for k, name in enumerate(class_names)},
    }
    if post_processing is not None:
        result["kaggle_dice"] = scalar(kaggle_dice(arrays, None, post_processing))
        result["fp_rate_defect_free"] = scalar(fp_rate(arrays, None, post_processing))
    return result
