"""The Poisson-blended copy-paste baseline (`blendpaste`): the same placements as `copypaste`
(a border too), no seam at the edge of the blended region, the defect's own contrast kept, and
the blended ring outside the label ignored by the loss."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import folder_dataset, write_gray
from defectgen.data import open_dataset
from defectgen.evaluate.sampling import copypaste_pool

SIZE = 96


@pytest.fixture(scope="module")
def two_brightness_dataset(tmp_path_factory):
    """Defect images on a bright background (200) with a dark disc (100); defect-free images
    darker (150) with a gentle gradient: a hard paste leaves a step where the two meet."""
    root = tmp_path_factory.mktemp("blend")
    yy, xx = np.mgrid[:SIZE, :SIZE]
    for n in range(4):
        image = np.full((SIZE, SIZE), 200, np.uint8)
        disc = (yy - 48) ** 2 + (xx - 40 - 4 * n) ** 2 <= 8**2
        image[disc] = 100
        write_gray(root / "images" / f"defect_{n}.png", image)
        write_gray(root / "masks" / f"defect_{n}.png", disc.astype(np.uint8))
        free = (150 + (xx // 24)).astype(np.uint8)
        write_gray(root / "images" / f"free_{n}.png", free)
        write_gray(root / "masks" / f"free_{n}.png", np.zeros((SIZE, SIZE), np.uint8))
    (root / "classes.txt").write_text("spot\n")
    return open_dataset(str(root))


@pytest.fixture(scope="module")
def pools(two_brightness_dataset):
    """(dataset, hard-pasted pool, blended pool), same seed: the same placements."""
    dataset = two_brightness_dataset
    indices = list(range(len(dataset)))
    return (
        dataset,
        copypaste_pool(dataset, indices, 12, seed=3),
        copypaste_pool(dataset, indices, 12, seed=3, blend=True),
    )


def test_blended_defects_have_no_seam_and_keep_their_contrast(pools):
    dataset, hard, soft = pools
    indices = list(range(len(dataset)))
    checked = 0
    for i in range(12):
        hard_image, hard_masks, hard_ignore, _ = hard.get(i)
        image, masks, ignore, _ = soft.get(i)
        assert hard_ignore is None
        label = masks.any(axis=0)
        if not label.any():
            continue
        background = next(
            dataset[j].image for j in indices if dataset.items[j].item_id in soft.sources_used
            and not dataset.items[j].class_ids and _same_outside(dataset[j].image, image, label | ignore)
        )  # fmt: skip
        changed = (image != background)[..., 0]
        assert not (changed & ~(label | ignore)).any()  # nothing outside the blended region moves
        assert not (ignore & label).any() and ignore.any()  # the ring outside the label is ignored
        ring_inner = _ring(label, 1, 2) & ignore  # just outside the defect, inside the blend
        outer = _ring(label | ignore, 1, 1)  # the untouched background around the blend
        step = abs(image[ignore & _ring(label | ignore, -1, 0)].mean() - background[outer].mean())
        hard_step = abs(hard_image[label].mean() - background[label].mean())
        assert step < 6 < hard_step  # no seam where the blend meets the background
        contrast = image[label].mean() - image[ring_inner].mean()
        assert contrast < -60  # the dark defect stays dark against its surroundings (source: -100)
        checked += 1
    assert checked >= 6


def test_blendpaste_labels_follow_the_same_placements_as_copypaste(pools):
    _, hard, soft = pools
    for i in range(12):
        hard_masks, soft_masks = hard.get(i)[1], soft.get(i)[1]
        assert soft_masks.any()  # every pasted image holds a defect
        assert np.array_equal(hard_masks, soft_masks)  # at a border too: blending reflect-pads


def test_a_defect_at_the_border_is_blended_where_it_was_placed(two_brightness_dataset):
    """A paste against the image border: blended in place, the border pixels included."""
    from defectgen.paste import _blend

    dataset = two_brightness_dataset
    source = dataset[0]
    rows, cols = slice(40, 57), slice(32, 49)  # the disc of defect_0
    label = source.masks[0][rows, cols]
    image = dataset[[i for i in range(len(dataset)) if not dataset.items[i].class_ids][0]].image.copy()
    before = image.copy()
    taken = np.zeros(image.shape[:2], dtype=bool)
    region = _blend(image, source.image, rows, cols, label, 0, 0, (False, False), taken)
    full = np.zeros_like(taken)
    full[:17, :17] = label
    assert region[full].all() and (image[full] < 120).all()  # the dark disc arrived at the corner
    assert np.array_equal(image[~region], before[~region])


def _same_outside(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> bool:
    return bool(np.array_equal(a[~region], b[~region]))


def _ring(mask: np.ndarray, inner: int, outer: int) -> np.ndarray:
    """Pixels at distance in [inner, outer] outside `mask` (negative inner: inside the edge)."""
    import cv2

    def grow(m, r):
        if r <= 0:
            return m if r == 0 else ~grow(~m, -r)
        return cv2.dilate(m.astype(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8)) > 0

    return grow(mask, outer) & ~grow(mask, inner - 1)


@pytest.mark.parametrize("gap", [0, 1, 2])
def test_a_defect_blended_next_to_another_keeps_its_contrast(two_brightness_dataset, gap):
    """A neighbouring defect `gap` px away must not cut into the blending solve: the pasted
    disc stays dark right up to its edge, and the neighbour is left untouched."""
    from defectgen.paste import _blend

    dataset = two_brightness_dataset
    source = dataset[0]
    rows, cols = slice(40, 57), slice(32, 49)
    label = source.masks[0][rows, cols]
    image = dataset[[i for i in range(len(dataset)) if not dataset.items[i].class_ids][0]].image.copy()
    before = image.copy()
    taken = np.zeros(image.shape[:2], dtype=bool)
    taken[: 30 - 1 - gap, :] = True  # another defect ending just above the paste at row 30
    region = _blend(image, source.image, rows, cols, label, 30, 30, (False, False), taken)
    full = np.zeros_like(taken)
    full[30:47, 30:47] = label
    assert (image[full] < 120).all(), image[full].max()
    assert not (region & taken).any() and np.array_equal(image[taken], before[taken])


def test_without_defect_free_images_defects_are_pasted_beside_the_old_ones(tmp_path):
    """A training half with no defect-free image (many steel sets): copy-paste and blendpaste
    paste onto the defect images, off their defects, and label both (it stopped with a
    ValueError after the first arms had trained)."""
    dataset = open_dataset(str(folder_dataset(tmp_path / "data", images=12, seed=5, defect_free=False)))
    indices = list(range(len(dataset)))
    assert all(dataset.items[i].class_ids for i in indices)
    for blend in (False, True):
        pool = copypaste_pool(dataset, indices, 10, seed=1, blend=blend)
        pasted_any = False
        for n in range(10):
            image, masks, _, _ = pool.get(n)
            backgrounds = [i for i in indices if dataset.items[i].item_id in pool.sources_used]
            own = [dataset[i].masks for i in backgrounds if dataset[i].image.shape == image.shape]
            assert any((m <= masks).all() for m in own)  # some background's own defects stay labelled
            pasted_any |= int(masks.sum()) > min(int(m.sum()) for m in own)
        assert pasted_any
