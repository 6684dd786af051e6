"""The one component finder and the hole rule, against independent references (scipy's labelling,
a hand-made disc)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from defectgen.geometry import components, count_components, dilate, find_components, hole_of, hole_radius

EIGHT = np.ones((3, 3), dtype=bool)


def _reference(mask: np.ndarray, min_area: int) -> list[tuple[tuple[slice, slice], np.ndarray]]:
    labels, _ = ndimage.label(mask, structure=EIGHT)
    found = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        crop = labels[box] == index
        if crop.sum() >= min_area:
            found.append((box, crop))
    return found


def test_find_components_matches_scipy_in_raster_order():
    rng = np.random.default_rng(0)
    masks = [rng.random((30, 50)) > rng.uniform(0.4, 0.97) for _ in range(300)]
    masks += [np.ones((2, 50), dtype=bool), np.zeros((5, 5), dtype=bool)]  # one whole-window component; none
    for mask in masks:
        for min_area in (1, 4):
            ours, theirs = find_components(mask, min_area), _reference(mask, min_area)
            assert len(ours) == len(theirs)
            for (box, crop), (ref_box, ref_crop) in zip(ours, theirs, strict=True):
                assert box == ref_box and np.array_equal(crop, ref_crop)
        assert count_components(mask) == ndimage.label(mask, structure=EIGHT)[1]
        parts = components(mask)
        assert len(parts) == count_components(mask)
        assert np.array_equal(np.sum(parts, axis=0, dtype=int) if parts else np.zeros(mask.shape), mask)


def test_diagonal_pixels_are_one_component():
    assert count_components(np.eye(6, dtype=bool)) == 1
    specks = np.zeros((9, 9), dtype=bool)
    specks[1, 1] = specks[5:7, 5:7] = True  # a 1-px speck and a 4-px square
    assert count_components(specks, min_area=4) == 1


def test_hole_rule():
    masks = np.zeros((2, 21, 21), dtype=bool)
    masks[0, 10, 10] = True
    hole = hole_of(masks, 3)
    assert hole.shape == (1, 21, 21) and hole.dtype == np.float32
    ellipse = np.array(  # OpenCV's 7x7 elliptic structuring element
        [[0, 0, 0, 1, 0, 0, 0], [0, 1, 1, 1, 1, 1, 0]]
        + [[1] * 7] * 3
        + [[0, 1, 1, 1, 1, 1, 0], [0, 0, 0, 1, 0, 0, 0]]
    )
    expected = np.zeros((21, 21), dtype=bool)
    expected[7:14, 7:14] = ellipse > 0
    assert np.array_equal(hole[0] > 0, expected)
    assert np.array_equal(dilate(masks[0], 0), masks[0].astype(np.uint8))
    assert [hole_radius(d) for d in (0, 1, 6, 7)] == [0, 0, 3, 3]
