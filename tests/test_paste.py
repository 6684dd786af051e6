"""The placement rules every copy-paste product shares (`defectgen.paste`): the class's position
prior, real defect counts, the border rule, no overlap, determinism, training-half sources."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from conftest import write_gray
from defectgen.data import open_dataset
from defectgen.errors import ConfigError
from defectgen.paste import DefectPaster

SIZE = 64


@pytest.fixture(scope="module")
def placed_dataset(tmp_path_factory):
    """Class 1 ('spot'): two 5x5 squares per image, always in the lower-right quarter.
    Class 2 ('edge'): one 6x12 bar cut by the left border, at mid-height. Images 0-5 hold the
    defects; 6-9 are defect-free (a flat 90). Each defect pixel's value is its source image's
    number + 10, so a pasted pixel names its source."""
    root = tmp_path_factory.mktemp("paste")
    for n in range(6):
        image = np.full((SIZE, SIZE), 90, np.uint8)
        mask = np.zeros((SIZE, SIZE), np.uint8)
        for top, left in ((42 + n, 44), (54, 50 - n)):
            mask[top : top + 5, left : left + 5] = 1
        if n < 3:
            mask[26 + n : 32 + n, :12] = 2
        image[mask > 0] = 10 + n
        write_gray(root / "images" / f"defect_{n}.png", image)
        write_gray(root / "masks" / f"defect_{n}.png", mask)
    for n in range(4):
        write_gray(root / "images" / f"free_{n}.png", np.full((SIZE, SIZE), 90, np.uint8))
        write_gray(root / "masks" / f"free_{n}.png", np.zeros((SIZE, SIZE), np.uint8))
    (root / "classes.txt").write_text("spot\nedge\n")
    return open_dataset(str(root))


def _paste(dataset, indices, seed, classes=None, **kwargs):
    paster = DefectPaster(dataset, indices)
    rng = np.random.default_rng(seed)
    free = dataset.load_image(len(dataset) - 1)
    return paster.paste(rng, free, paster.plan(rng, classes), **kwargs)


def test_pasted_defects_sit_where_the_class_sits_and_come_in_real_numbers(placed_dataset):
    indices = list(range(len(placed_dataset)))
    centres, counts = [], []
    for seed in range(30):
        pasted = _paste(placed_dataset, indices, seed, classes=[1])
        labels, count = ndimage.label(pasted.masks[0], structure=np.ones((3, 3)))
        counts.append(count)
        centres += [np.argwhere(labels == k).mean(axis=0) / SIZE for k in range(1, count + 1)]
        assert not pasted.masks[1].any()  # only the class asked for
    centres = np.asarray(centres)
    assert (centres > 0.55).all(), centres.min(axis=0)  # the lower-right quarter: never uniform
    assert np.mean(np.asarray(counts) == 2) >= 0.8  # real images hold two spots


def test_a_defect_cut_by_the_border_goes_back_against_a_border(placed_dataset):
    indices = list(range(len(placed_dataset)))
    for seed in range(12):
        pasted = _paste(placed_dataset, indices, seed, classes=[2])
        bar = pasted.masks[1]
        assert bar.any()
        assert bar[:, 0].any() or bar[:, -1].any()  # the cut edge on the left border, or flipped right


def test_pixels_and_label_come_from_one_training_defect(placed_dataset):
    dataset = placed_dataset
    training = [0, 1, 3, 6, 7]  # image 2, 4 and 5 are not in the training half
    for seed in range(10):
        pasted = _paste(dataset, training, seed)
        assert {d["source"] for d in pasted.defects} <= {dataset.items[i].item_id for i in training}
        label = pasted.masks.any(axis=0)
        values = set(np.unique(pasted.image[..., 0][label]).tolist())
        assert values <= {10, 11, 13}  # every labelled pixel is a pasted defect pixel, of a training image
        assert (pasted.image[..., 0][~label] == 90).all()  # nothing else changed
        assert np.array_equal(pasted.changed, label)  # a hard paste changes exactly its label


def test_pastes_keep_off_existing_defects_and_are_deterministic(placed_dataset):
    indices = list(range(len(placed_dataset)))
    existing = np.zeros((2, SIZE, SIZE), dtype=bool)
    existing[0, 30:64, 30:64] = True  # the spot's whole region is already a defect
    pasted = 0
    for seed in range(8):
        first = _paste(placed_dataset, indices, seed, existing=existing)
        again = _paste(placed_dataset, indices, seed, existing=existing)
        assert np.array_equal(first.image, again.image) and np.array_equal(first.masks, again.masks)
        assert first.masks[0][existing[0]].all()  # the existing defect stays in the label
        assert not (first.changed & existing[0]).any()  # no paste over it
        assert first.masks.sum(axis=0).max() <= 1  # one class per pixel
        pasted += bool(first.changed.any())
    assert pasted >= 4  # the bars still find room


def test_a_class_without_training_defects_is_refused_by_name(placed_dataset):
    paster = DefectPaster(placed_dataset, [3, 4, 6])  # class 2 (edge bars) only in images 0-2
    with pytest.raises(ConfigError, match=r"no defect of class\(es\) \[2\]"):
        paster.plan(np.random.default_rng(0), [2])


def test_only_defects_that_fit_are_drawn(placed_dataset):
    """On a background smaller than the bars, class 2 is never planned into a paste that then
    silently lacks it: defects that do not fit are not drawn, every pasted one fits."""
    paster = DefectPaster(placed_dataset, list(range(len(placed_dataset))))
    small = np.full((10, 40, 1), 90, np.uint8)  # the 6x12 bars fit, the 5x5 spots too
    tiny = np.full((4, 4, 1), 90, np.uint8)  # nothing fits
    for seed in range(10):
        rng = np.random.default_rng(seed)
        pasted = paster.paste(rng, small, [2])
        assert pasted.masks[1].any()
        assert not paster.paste(rng, tiny, [1, 2]).changed.any()
