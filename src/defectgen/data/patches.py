"""Training pairs for the inpainting GAN: crops around real defects.

Each pair is a crop of a training-half defect image centred (with jitter) on one connected
defect component. The *hole* the generator must fill is the union of all defect masks in the
crop dilated by a random radius, so the generator also learns the seam between defect and
background; the *labels* stay the original masks, so the discriminator judges whether the
painted defect follows its mask and class. Several defects and classes per crop stay as they
come.

Batches are a pure function of (seed, step, rank): resuming a run or changing the number of
processes never replays or skips data by accident, and no sampler state needs saving.
Classes are drawn uniformly, then a component of that class, so rare classes are seen as
often as common ones. Each crop also carries its severity map (`defectgen.severity`): every
defect's contrast rank within its class, measured on the crop against the training half's table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from defectgen import ui
from defectgen.data.dataset import DefectDataset
from defectgen.errors import DataError
from defectgen.geometry import find_components, hole_of
from defectgen.severity import SeverityTable
from defectgen.tensors import image_to_tensor

FIXED_STREAM = 2**32 - 1  # seed-sequence word for the fixed sample-grid batch


@dataclass(frozen=True)
class Component:
    index: int  # dataset index
    class_id: int
    center: tuple[int, int]  # (y, x)


class DefectCrops:
    def __init__(
        self,
        dataset: DefectDataset,
        indices: list[int],
        crop_size: int,
        max_dilation: int = 6,
        seed: int = 0,
        cache_bytes: int = 2 * 1024**3,
        progress: bool = True,
    ):
        self.dataset = dataset
        self.crop_size = int(crop_size)
        self.max_dilation = int(max_dilation)
        self.seed = int(seed)
        self.cache_bytes = cache_bytes
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._cached_bytes = 0
        defect_indices = [i for i in indices if dataset.items[i].class_ids]
        if not defect_indices:
            raise DataError(f"{dataset.spec}: the training half has no defect images to learn from")
        self.source_indices = tuple(defect_indices)  # what crops are cut from: tests check it's train only
        self.components: dict[int, list[Component]] = {c: [] for c in dataset.classes.ids}
        steps = ui.track(defect_indices, description="finding defects", transient=True, disable=not progress)
        for index in steps:
            _, masks = self._load(index)
            for class_id in dataset.items[index].class_ids:
                # Same components (8-connected, specks dropped) as the mask sources see.
                for (rows, cols), _crop in find_components(masks[class_id - 1]):
                    center = ((rows.start + rows.stop) // 2, (cols.start + cols.stop) // 2)
                    self.components[class_id].append(Component(index, class_id, center))
        self.severity = SeverityTable.measure(
            (self._load(i) for i in defect_indices), len(dataset.classes)
        )  # images come from the cache filled above (up to cache_bytes)
        self.classes_present = [c for c, comps in self.components.items() if comps]
        if not self.classes_present:
            raise DataError(f"{dataset.spec}: the training half's defect masks are all empty")

    @property
    def num_components(self) -> int:
        return sum(len(c) for c in self.components.values())

    def batch(self, step: int, rank: int = 0, size: int = 4, pairs: bool = True) -> dict[str, torch.Tensor]:
        """`size` crops as {'image' [N,C,S,S], 'hole' [N,1,S,S], 'labels' [N,K,S,S], 'severity'
        [N,1,S,S], 'class' [N] (long: the 0-based class of the defect the crop is centred on)};
        with `pairs`, size // 2 distinct crops, each twice (for the diversity loss)."""
        rng = np.random.default_rng([self.seed, step, rank])
        return self._draw(rng, size, pairs=pairs)

    def fixed_batch(self, size: int = 8) -> dict[str, torch.Tensor]:
        """The same crops every call: the inputs of the sample grids."""
        return self._draw(np.random.default_rng([self.seed, FIXED_STREAM]), size, pairs=False)

    def _draw(self, rng: np.random.Generator, size: int, pairs: bool = True) -> dict[str, torch.Tensor]:
        distinct = size // 2 if pairs else size
        crops = [self._crop(rng) for _ in range(distinct)]
        if pairs:
            crops = crops + crops  # sample i and i + N/2 share inputs, differ in noise
        image, hole, labels, severity = (torch.stack([c[i] for c in crops]) for i in range(4))
        centred = torch.tensor([c[4] for c in crops], dtype=torch.long)
        return {"image": image, "hole": hole, "labels": labels, "severity": severity, "class": centred}

    def _crop(self, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        class_id = self.classes_present[rng.integers(len(self.classes_present))]
        component = self.components[class_id][rng.integers(len(self.components[class_id]))]
        image, masks = self._load(component.index)
        size = self.crop_size
        jitter = size // 4
        cy = component.center[0] + int(rng.integers(-jitter, jitter + 1))
        cx = component.center[1] + int(rng.integers(-jitter, jitter + 1))
        image, masks = pad_to_crop(image, masks, size)
        height, width = image.shape[:2]
        top = int(np.clip(cy - size // 2, 0, height - size))
        left = int(np.clip(cx - size // 2, 0, width - size))
        image = image[top : top + size, left : left + size]
        masks = masks[:, top : top + size, left : left + size]
        if rng.random() < 0.5:  # flips keep a defect a defect of its class
            image, masks = image[:, ::-1], masks[:, :, ::-1]
        if rng.random() < 0.5:
            image, masks = image[::-1], masks[:, ::-1]
        image, masks = np.ascontiguousarray(image), np.ascontiguousarray(masks)
        severity = self.severity.severity_map(image, masks)
        hole = hole_of(masks, int(rng.integers(0, self.max_dilation + 1)))
        return (
            image_to_tensor(image),
            torch.from_numpy(hole),
            torch.from_numpy(masks.astype(np.float32)),
            torch.from_numpy(severity),
            class_id - 1,
        )

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if index in self._cache:
            return self._cache[index]
        sample = self.dataset[index]
        entry = (sample.image, sample.masks)
        size = sample.image.nbytes + sample.masks.nbytes
        if self._cached_bytes + size <= self.cache_bytes:
            self._cache[index] = entry
            self._cached_bytes += size
        return entry


def pad_to_crop(image: np.ndarray, masks: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Reflect-pad an image smaller than the crop (masks padded with background). Padding goes
    at the bottom/right, so defect coordinates stay valid."""
    height, width = image.shape[:2]
    pad_h, pad_w = max(0, size - height), max(0, size - width)
    if not pad_h and not pad_w:
        return image, masks
    mode = "reflect" if pad_h < height and pad_w < width else "edge"
    image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode=mode)
    masks = np.pad(masks, ((0, 0), (0, pad_h), (0, pad_w)))
    return image, masks
