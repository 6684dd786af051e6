"""Training crops for the segmenters of every evaluation arm.

Every arm draws the same number of crops per batch from the same kind of sampler; only the
data differ. A crop is, with probability `defect_crop_share`, centred (with jitter) on a
defect of a defect image, otherwise a random window of any image. Arms with extra data
(`synthetic`, `oversample`, `copypaste`) take a fixed `extra_share` of every batch from their
extra pool:

- real: the labelled training half only;
- oversample: extra = the real defect images again (repeated to match the synthetic share);
- copypaste: extra = real defects cut by their masks and pasted onto defect-free training
  images at new positions (the baseline the source thesis argues against: the seam remains);
- classic: the real pool with flips, affine, brightness/contrast and elastic transforms
  (albumentations) on every crop;
- synthetic: extra = defectgen's synthetic images;
- synthetic-only: every crop from the synthetic images.

Batches are a pure function of (seed, step), so an arm's run is reproducible and resumable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np
import torch

from defectgen.data.dataset import DefectDataset
from defectgen.data.patches import pad_to_crop
from defectgen.masks.compose import find_components
from defectgen.tensors import image_to_tensor

ARMS = ("real", "oversample", "copypaste", "classic", "synthetic", "synthetic-only")

Loader = Callable[[], tuple[np.ndarray, np.ndarray]]  # -> (uint8 [H, W, C], bool [K, H, W])


@dataclass
class Example:
    key: str
    load: Loader
    has_defects: bool


class Pool:
    """Examples with a bounded in-memory cache and lazily found defect centres."""

    def __init__(self, examples: list[Example], cache_bytes: int = 1 << 30):
        self.examples = examples
        self.defect_indices = [i for i, e in enumerate(examples) if e.has_defects]
        self._cache: dict[int, tuple[np.ndarray, np.ndarray, list]] = {}
        self._budget = cache_bytes

    def __len__(self) -> int:
        return len(self.examples)

    def get(self, index: int) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
        if index in self._cache:
            return self._cache[index]
        image, masks = self.examples[index].load()
        centres = [
            ((r.start + r.stop) // 2, (c.start + c.stop) // 2)
            for channel in masks
            for (r, c), _ in find_components(channel)
        ]
        entry = (image, masks, centres)
        size = image.nbytes + masks.nbytes
        if size <= self._budget:
            self._cache[index] = entry
            self._budget -= size
        return entry


def dataset_pool(dataset: DefectDataset, indices: list[int], defects_only: bool = False) -> Pool:
    examples = []
    for index in indices:
        item = dataset.items[index]
        if defects_only and not item.class_ids:
            continue
        examples.append(Example(item.item_id, lambda i=index: _sample(dataset, i), bool(item.class_ids)))
    return Pool(examples)


def _sample(dataset: DefectDataset, index: int) -> tuple[np.ndarray, np.ndarray]:
    sample = dataset[index]
    return sample.image, sample.masks


def copypaste_pool(dataset: DefectDataset, indices: list[int], count: int, seed: int) -> Pool:
    """`count` images: real defects (cut by their masks) pasted on defect-free training images."""
    free = [i for i in indices if not dataset.items[i].class_ids]
    sources = [i for i in indices if dataset.items[i].class_ids]
    if not free or not sources:
        raise ValueError("copy-paste needs defect-free and defect images in the training half")
    examples = [
        Example(f"copypaste_{n:06d}", lambda n=n: _copypaste(dataset, free, sources, seed, n), True)
        for n in range(count)
    ]
    return Pool(examples)


def _copypaste(dataset, free, sources, seed, number) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, number, 11])
    background = dataset[free[int(rng.integers(len(free)))]]
    image = background.image.copy()
    masks = np.zeros((len(dataset.classes), *image.shape[:2]), dtype=bool)
    taken = np.zeros(image.shape[:2], dtype=bool)
    for _ in range(int(rng.integers(1, 3))):
        source = dataset[sources[int(rng.integers(len(sources)))]]
        pieces = [
            (k, box, crop) for k, channel in enumerate(source.masks) for box, crop in find_components(channel)
        ]
        if not pieces:
            continue
        k, (rows, cols), crop = pieces[int(rng.integers(len(pieces)))]
        patch = source.image[rows, cols]
        if rng.random() < 0.5:
            patch, crop = patch[:, ::-1], crop[:, ::-1]
        height, width = crop.shape
        if height > image.shape[0] or width > image.shape[1]:
            continue
        y = int(rng.integers(0, image.shape[0] - height + 1))
        x = int(rng.integers(0, image.shape[1] - width + 1))
        region = (slice(y, y + height), slice(x, x + width))
        crop = crop & ~taken[region]  # never over an earlier paste of another class
        image[region][crop] = patch[crop]
        masks[k][region] |= crop
        taken[region] |= crop
    return image, masks


def classic_augmentation(seed: int) -> A.Compose:
    """Flips, affine, brightness/contrast and elastic: the 'classic augmentation' arm."""
    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
            A.Affine(
                scale=(0.85, 1.15),
                rotate=(-15, 15),
                translate_percent=(-0.05, 0.05),
                p=0.7,
                border_mode=cv2.BORDER_REFLECT_101,
            ),
            A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.7),
            A.ElasticTransform(alpha=30, sigma=6, p=0.3),
        ],
        seed=seed,
    )


class CropSampler:
    """Batches of (image [B, C, S, S], masks [B, K, S, S]) crops for one arm."""

    def __init__(
        self,
        main: Pool | None,
        extra: Pool | None,
        crop_size: int,
        extra_share: float,
        defect_crop_share: float = 0.5,
        augment: Callable | None = None,
        seed: int = 0,
    ):
        if main is None and extra is None:
            raise ValueError("a sampler needs a main or an extra pool")
        self.main, self.extra = main, extra
        self.crop_size = crop_size
        self.extra_share = 1.0 if main is None else (extra_share if extra is not None else 0.0)
        self.defect_crop_share = defect_crop_share
        self.augment = augment
        self.seed = seed

    def batch(self, step: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, step, 5])
        n_extra = int(round(size * self.extra_share))
        crops = [self._crop(self.extra if i < n_extra else self.main, rng) for i in range(size)]
        images = torch.stack([image_to_tensor(image) for image, _ in crops])
        masks = torch.stack([torch.from_numpy(np.ascontiguousarray(m)).float() for _, m in crops])
        return images, masks

    def _crop(self, pool: Pool, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        size = self.crop_size
        centred = pool.defect_indices and rng.random() < self.defect_crop_share
        index = (
            pool.defect_indices[int(rng.integers(len(pool.defect_indices)))]
            if centred
            else int(rng.integers(len(pool)))
        )
        image, masks, centres = pool.get(index)
        image, masks = pad_to_crop(image, masks, size)
        height, width = image.shape[:2]
        if centred and centres:
            cy, cx = centres[int(rng.integers(len(centres)))]
            jitter = size // 4
            top = int(np.clip(cy - size // 2 + rng.integers(-jitter, jitter + 1), 0, height - size))
            left = int(np.clip(cx - size // 2 + rng.integers(-jitter, jitter + 1), 0, width - size))
        else:
            top = int(rng.integers(0, height - size + 1))
            left = int(rng.integers(0, width - size + 1))
        image = np.ascontiguousarray(image[top : top + size, left : left + size])
        masks = np.ascontiguousarray(masks[:, top : top + size, left : left + size])
        if self.augment is not None:
            out = self.augment(image=image, masks=list(masks.astype(np.uint8)))
            image = out["image"].reshape(size, size, -1)
            masks = np.stack(out["masks"]).astype(bool)
        return image, masks
