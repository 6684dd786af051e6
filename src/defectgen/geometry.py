"""Pixel geometry every stage shares: the hole rule and connected components.

The hole rule: a generator trained with holes = defect masks dilated by 0..`max_dilation` px
(an ellipse) repaints, at synthesis, the masks dilated by half that (`hole_radius`), so new
defects get a seam the generator has learned. Training (`data/patches.py`), synthesis, the
studio and export all draw holes with `dilate` / `hole_of`.

Components are 8-connected everywhere, so a thin diagonal scratch is one defect and not a
trail of pixels; specks under `MIN_AREA` pixels are left-overs of thresholding soft-edged
masks, not defects, where a caller asks for that filter.
"""

from __future__ import annotations

import cv2
import numpy as np

MIN_AREA = 4  # pixels; smaller components are thresholding specks, not defects


def disc(radius: int) -> np.ndarray:
    """uint8 elliptic structuring element of `radius` px (size 2 * radius + 1)."""
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """uint8 {0, 1} [H, W]: bool or uint8 `mask` [H, W] dilated by a `radius` px disc (0: as is)."""
    mask = mask.astype(np.uint8)
    return cv2.dilate(mask, disc(radius)) if radius else mask


def hole_radius(max_dilation: int) -> int:
    """The hole dilation synthesis uses for a generator trained with `max_dilation`."""
    return max(0, int(max_dilation) // 2)


def hole_of(masks: np.ndarray, radius: int) -> np.ndarray:
    """float32 {0, 1} [1, H, W]: the union of bool `masks` [K, H, W] dilated by `radius` px:
    what synthesis repaints around new defects."""
    return dilate(masks.any(axis=0), radius)[None].astype(np.float32)


def label(mask: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """The one component finder: (count including background, int32 labels [H, W], stats
    [count, 5] as OpenCV gives them: x, y, width, height, area) of bool `mask` [H, W],
    8-connected. Label order is OpenCV's; `find_components` re-orders by first pixel."""
    return cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)[:3]


def find_components(
    mask: np.ndarray, min_area: int = MIN_AREA
) -> list[tuple[tuple[slice, slice], np.ndarray]]:
    """bool [H, W] -> [(bounding-box slices, bool crop [h, w])] of its components with at least
    `min_area` pixels, in raster order of their first pixel.

    Only the mask's occupied rectangle is labelled: a small defect on a 1600x256 strip costs
    its own size, not the strip's."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return []
    top, left = int(rows[0]), int(cols[0])
    count, labels, stats = label(mask[top : rows[-1] + 1, left : cols[-1] + 1])
    present, first = np.unique(labels.ravel(), return_index=True)  # each label's first pixel
    found = []
    for index in present[np.argsort(first)]:
        if index == 0:
            continue  # the background (absent when the whole window is one component)
        x, y, width, height, area = (int(v) for v in stats[index])
        if area >= min_area:
            box = (slice(y, y + height), slice(x, x + width))
            whole = (slice(y + top, y + height + top), slice(x + left, x + width + left))
            found.append((whole, labels[box] == index))
    return found


def count_components(mask: np.ndarray, min_area: int = 1) -> int:
    """Number of 8-connected components of bool [H, W] with at least `min_area` pixels."""
    if min_area <= 1:
        return int(label(mask)[0]) - 1
    return len(find_components(mask, min_area))


def components(mask: np.ndarray) -> list[np.ndarray]:
    """The 8-connected components of bool `mask` [H, W], each a bool [H, W], in `label`'s order."""
    count, labels, _ = label(mask)
    return [labels == k for k in range(1, count)]
