"""Real defects cut out of the training half and put onto other images, pixels and all.

Three products share these placement rules: the `copypaste` and `blendpaste` evaluation arms
(`evaluate.sampling.copypaste_pool`) and harmonised synthesis (`synth --mode harmonize`).
`DefectPaster.paste` decides, for one background image:

- **how many defects of which classes**: the counts of the training half (how many classes a
  defect image holds, how many components each), as the mask bank draws them;
- **which defect**: a real component of that class, uniformly among the class's components,
  cut from its image by its own mask (8-connected, `geometry.find_components`);
- **flips**: left-right and top-bottom, each with probability 1/2;
- **where**: the class's position prior (`masks.bank.PositionPrior`, conditioned on size);
  a component cut by its image's border goes back against the same border;
- **no overlap**: a placement touching an existing defect or an earlier paste is redrawn up
  to `PLACEMENT_TRIES` times, then keeps only the free pixels.

How the pixels arrive is the caller's choice: a hard paste (`blend=False`), or Poisson
blending (`blend=True`, OpenCV `seamlessClone`): the defect and a `BLEND_MARGIN` px ring of
its own surroundings are blended in, so the seam disappears while the defect keeps its
contrast. The blended ring outside the label is returned as `changed`: it is neither defect
nor untouched background, and an evaluation ignores it. Blending reflect-pads both images by
the margin, so a defect at the border is blended where it was placed, not moved inwards.

Everything is a function of the `rng` passed in: same draws, same image.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from defectgen.errors import ConfigError
from defectgen.masks.bank import RealMaskBank, prior_centre, random_flips, scan_components
from defectgen.masks.compose import PLACEMENT_TRIES, top_left

BLEND_MARGIN = (
    6  # px of the source's surroundings blended in (OpenCV 5 loses edges within ~3 px of its mask border)
)


@dataclass(frozen=True)
class Pasted:
    """One image after `DefectPaster.paste`."""

    image: np.ndarray  # uint8 [H, W, C]
    masks: np.ndarray  # bool [K, H, W]: the pasted defects (plus the `existing` ones given)
    changed: np.ndarray  # bool [H, W]: every pixel the paste changed (label and blended ring)
    defects: list[dict]  # per pasted defect: class_id, area, source item id, flips


class DefectPaster:
    """Places real defects of the training half (`indices` of `dataset`) on other images.

    The components are scanned once (masks only); a defect's source image is read when it is
    pasted. Raises DataError when `indices` hold no defect component."""

    def __init__(self, dataset, indices: list[int], progress: bool = False):
        self.dataset = dataset
        self.bank = RealMaskBank(scan_components(dataset, indices, progress=progress))
        self.table = self.bank.table
        self.class_ids = self.bank.class_ids

    def plan(self, rng: np.random.Generator, classes: list[int] | None = None) -> list[int]:
        """The classes of one image's defects, one entry per component, as the real counts go."""
        allowed = self.allowed(classes)
        return [k for class_id, count in self.bank.counts.plan(rng, allowed) for k in [class_id] * count]

    def paste(
        self,
        rng: np.random.Generator,
        image: np.ndarray,
        plan: list[int],
        *,
        blend: bool = False,
        existing: np.ndarray | None = None,
    ) -> Pasted:
        """Paste the defects of `plan` (class ids, from `plan`) onto uint8 `image` [H, W, C]
        (not modified).

        `existing` (bool [K, H, W]) are defects the image already holds: pastes keep off them
        and they stay in the returned masks. A defect larger than the image is skipped, so an
        image can come back with fewer defects than planned (or none)."""
        if image.ndim != 3:
            raise ValueError(f"image must be uint8 [H, W, C], got shape {image.shape}")
        height, width = image.shape[:2]
        if existing is not None and np.shape(existing) != (self.table.num_classes, height, width):
            raise ValueError(f"existing must be bool [K, H, W] = {(self.table.num_classes, height, width)}")
        image = image.copy()
        masks = np.zeros((self.table.num_classes, height, width), dtype=bool)
        if existing is not None:
            masks |= np.asarray(existing, dtype=bool)
        changed = np.zeros((height, width), dtype=bool)
        defects = []
        for class_id in plan:
            placed = self._place(rng, class_id, masks.any(axis=0))
            if placed is None:
                continue
            index, top, left, label, flips = placed
            source = self.dataset.load_image(int(self.table.items[index]))
            rows, cols = self.table.box(index)
            if blend:
                region = _blend(image, source, rows, cols, label, top, left, flips, masks.any(axis=0))
            else:
                patch = _flipped(source[rows, cols], flips)
                window = image[top : top + label.shape[0], left : left + label.shape[1]]
                window[label] = patch[label]
                region = None
            full = np.zeros((height, width), dtype=bool)
            full[top : top + label.shape[0], left : left + label.shape[1]] = label
            masks[class_id - 1] |= full
            changed |= full if region is None else region | full
            defects.append(
                {
                    "class_id": class_id,
                    "area": int(label.sum()),
                    "source": self.dataset.items[int(self.table.items[index])].item_id,
                    "flips": list(flips),
                }
            )
        return Pasted(image, masks, changed, defects)

    def _place(self, rng, class_id: int, taken: np.ndarray):
        """(component, top, left, label bool [h, w], flips) or None when it does not fit."""
        height, width = taken.shape
        members = self.table.of_class(class_id)
        fits = members[(self.table.shapes[members] <= (height, width)).all(axis=1)]
        if not len(fits):
            return None  # every defect of the class is larger than this image
        index = int(fits[rng.integers(len(fits))])
        crop, borders, flips = random_flips(rng, self.table.crop(index), int(self.table.borders[index]))
        h, w = crop.shape
        near = cv2.dilate(taken.view(np.uint8), np.ones((3, 3), np.uint8)).view(bool)
        for _ in range(PLACEMENT_TRIES):
            y, x = prior_centre(rng, self.bank.priors[class_id], (h, w), borders, height, width)
            top, left = top_left((h, w), height, width, y, x)
            if not (crop & near[top : top + h, left : left + w]).any():
                break
        label = crop & ~taken[top : top + h, left : left + w]
        return (index, top, left, label, flips) if label.any() else None

    def allowed(self, classes: list[int] | None) -> list[int]:
        """The classes a plan may draw (all that have a training defect when None); a
        ConfigError names any asked class the training half has no defect of."""
        if classes is None:
            return list(self.class_ids)
        missing = sorted(set(classes) - set(self.class_ids))
        if missing or not classes:
            raise ConfigError(
                f"the training half has no defect of class(es) {missing or classes} to paste; "
                f"classes with defects: {list(self.class_ids)}"
            )
        return sorted(set(classes))


def _flipped(array: np.ndarray, flips: tuple[bool, bool]) -> np.ndarray:
    left_right, top_bottom = flips
    if left_right:
        array = array[:, ::-1]
    if top_bottom:
        array = array[::-1]
    return array


def _blend(image, source, rows, cols, label, top, left, flips, taken) -> np.ndarray:
    """Poisson-blend the defect of `source` in box (rows, cols) — flipped, kept to `label`
    (bool [h, w], placed at top, left) — into `image` in place, with BLEND_MARGIN px of its
    surroundings. Returns the bool [H, W] pixels blended (kept off `taken`)."""
    pad = BLEND_MARGIN + 1  # the margin, and the zero border OpenCV's solver needs around its mask
    h, w = label.shape
    height, width = image.shape[:2]

    def padded(array):
        spec = ((pad, pad), (pad, pad)) + ((0, 0),) * (array.ndim - 2)
        return np.pad(array, spec, mode="reflect" if min(array.shape[:2]) > pad else "edge")

    patch = _flipped(
        padded(source)[rows.start : rows.stop + 2 * pad, cols.start : cols.stop + 2 * pad], flips
    )
    target = padded(image)
    window = (slice(top, top + h + 2 * pad), slice(left, left + w + 2 * pad))  # in padded coordinates
    grown = (
        cv2.dilate(np.pad(label, pad).astype(np.uint8), np.ones((2 * BLEND_MARGIN + 1,) * 2, np.uint8)) > 0
    )
    # OpenCV's solver blurs within ~3 px of its mask's edge: solve on the whole grown region and
    # write back only what is not already a defect, so a neighbour never cuts into this one
    region = grown & ~padded(taken)[window]
    ys, xs = np.nonzero(grown)
    centre = (left + (xs.min() + xs.max() + 1) // 2, top + (ys.min() + ys.max() + 1) // 2)
    three = (lambda a: np.repeat(a, 3, axis=2)) if image.shape[2] == 1 else (lambda a: a)
    blended = cv2.seamlessClone(
        np.ascontiguousarray(three(patch)), np.ascontiguousarray(three(target)),
        grown.astype(np.uint8) * 255, centre, cv2.NORMAL_CLONE,
    )[pad:-pad, pad:-pad, : image.shape[2]]  # fmt: skip
    full = np.zeros((height + 2 * pad, width + 2 * pad), dtype=bool)
    full[window] = region
    full = full[pad:-pad, pad:-pad]
    image[full] = blended[full]
    return full
