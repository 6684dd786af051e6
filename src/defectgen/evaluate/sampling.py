"""Training crops for the segmenters of every evaluation arm (see `arms.py` for what each adds).

A batch is built from independent random streams, each a pure function of (seed, step, stream):

- the **real** stream: `batch_size` crops of the fit part of the training half, identical in
  every arm at one seed (the `control` arm alone uses another stream key). A crop is, with
  probability `defect_crop_share`, centred (with jitter) on a defect picked class-balanced —
  a class uniformly among the classes of the pool, then an image holding that class, then one
  of its components of that class — otherwise a random window of any image;
- one **extra** stream per added source (oversampled real defects, copy-paste, each named
  synthetic set): its crops are always defect-centred, class-balanced the same way, and are
  appended to the real crops. A source's stream key depends only on the source, so
  `real+tiles` and `oversample+tiles` see the same synthetic crops.

Each crop comes with a `valid` map: 0 where the loss must not look (the pixels a synthetic
item painted outside its label: the seam ring of `defectgen synth`), 1 elsewhere.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np
import torch

from defectgen.data.dataset import DefectDataset
from defectgen.data.patches import pad_to_crop
from defectgen.errors import DataError
from defectgen.geometry import find_components
from defectgen.paste import DefectPaster
from defectgen.tensors import image_to_tensor

# (image uint8 [H, W, C], masks bool [K, H, W], ignore bool [H, W] or None)
Loader = Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray | None]]

REAL_STREAM, CONTROL_STREAM, AUGMENT_STREAM, OVERSAMPLE_STREAM, COPYPASTE_STREAM = 1, 2, 3, 11, 12


def set_stream(name: str) -> int:
    """Stream key of a named synthetic set: stable across runs and processes."""
    return 1000 + zlib.crc32(name.encode())


@dataclass
class Example:
    key: str  # item id (real), file stem (synthetic) or a generated name (copy-paste)
    load: Loader
    class_ids: tuple[int, ...] | None  # 1-based classes present; None = not known before loading


class Pool:
    """Examples with a bounded in-memory cache and lazily found defect centres per class."""

    def __init__(self, examples: list[Example], cache_bytes: int = 1 << 30):
        self.examples = examples
        self.defect_indices = [i for i, e in enumerate(examples) if e.class_ids is None or e.class_ids]
        self.by_class: dict[int, list[int]] = {}
        for i, example in enumerate(examples):
            for class_id in example.class_ids or ():
                self.by_class.setdefault(class_id, []).append(i)
        self._balanced = bool(self.by_class) and all(e.class_ids is not None for e in examples)
        self._cache: dict[int, tuple] = {}
        self._budget = cache_bytes
        self.used: set[str] = set()  # keys of the examples crops were taken from (audit, tests)
        self.sources_used: set[str] = set()  # dataset items a generated example was made from

    def __len__(self) -> int:
        return len(self.examples)

    def get(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict[int, list]]:
        """(image, masks, ignore, {class id: [(row, col) component centres]})."""
        self.used.add(self.examples[index].key)
        if index in self._cache:
            return self._cache[index]
        image, masks, ignore = self.examples[index].load()
        centres = {
            k + 1: [
                ((r.start + r.stop) // 2, (c.start + c.stop) // 2) for (r, c), _ in find_components(channel)
            ]
            for k, channel in enumerate(masks)
            if channel.any()
        }
        entry = (image, masks, ignore, centres)
        size = image.nbytes + masks.nbytes + (ignore.nbytes if ignore is not None else 0)
        if size <= self._budget:
            self._cache[index] = entry
            self._budget -= size
        return entry

    def pick_defect(self, rng: np.random.Generator) -> tuple[int, int | None]:
        """Class-balanced: a class, then an image holding it (class None = any of its classes)."""
        if self._balanced:
            classes = sorted(self.by_class)
            class_id = classes[int(rng.integers(len(classes)))]
            members = self.by_class[class_id]
            return members[int(rng.integers(len(members)))], class_id
        return self.defect_indices[int(rng.integers(len(self.defect_indices)))], None


def dataset_pool(
    dataset: DefectDataset, indices: list[int], defects_only: bool = False, ignore: Callable | None = None
) -> Pool:
    """A pool of dataset items; `ignore(index, sample)` -> bool [H, W] pixels the loss skips."""
    examples = []
    for index in indices:
        item = dataset.items[index]
        if defects_only and not item.class_ids:
            continue
        examples.append(Example(item.item_id, lambda i=index: _sample(dataset, i, ignore), item.class_ids))
    return Pool(examples)


def _sample(dataset: DefectDataset, index: int, ignore: Callable | None):
    sample = dataset[index]
    return sample.image, sample.masks, None if ignore is None else ignore(index, sample)


def copypaste_pool(
    dataset: DefectDataset, indices: list[int], count: int, seed: int, blend: bool = False
) -> Pool:
    """`count` images: real defects of `indices` pasted onto its defect-free images by the
    rules of `defectgen.paste` (real counts, position prior, flips, no overlap); with `blend`,
    Poisson-blended, the blended ring outside the label ignored by the loss. Image n is a
    function of (seed, n): the same placements with and without `blend`. The classes of each
    image are planned up front, so crops are class-balanced like every other extra stream.

    Without defect-free images (many steel sets), the defects are pasted onto the defect
    images instead, away from the defects they hold, and both are labelled: `synth`'s
    `labelled` backgrounds."""
    free = [i for i in indices if not dataset.items[i].class_ids]
    defective = [i for i in indices if dataset.items[i].class_ids]
    if not defective:
        raise DataError("copy-paste needs defect images in the training half; use a larger --label-fraction")
    backgrounds = free or defective
    paster = DefectPaster(dataset, indices)
    used: set[str] = set()
    prefix = "blendpaste" if blend else "copypaste"

    def draw(number: int) -> tuple[np.random.Generator, int, list[int]]:
        rng = np.random.default_rng([seed, number, COPYPASTE_STREAM])
        return rng, backgrounds[int(rng.integers(len(backgrounds)))], paster.plan(rng)

    def load(number: int):
        rng, background, plan = draw(number)
        used.add(dataset.items[background].item_id)
        existing = None if free else dataset.load_masks(background)
        pasted = paster.paste(rng, dataset.load_image(background), plan, blend=blend, existing=existing)
        used.update(d["source"] for d in pasted.defects)
        ignore = pasted.changed & ~pasted.masks.any(axis=0) if blend else None
        return pasted.image, pasted.masks, ignore

    examples = [
        Example(f"{prefix}_{n:06d}", lambda n=n: load(n), tuple(sorted(set(draw(n)[2]))))
        for n in range(count)
    ]
    pool = Pool(examples)
    pool.sources_used = used
    return pool


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


@dataclass
class Extra:
    """Crops added to every batch from one source, while step < `until`."""

    pool: Pool
    count: int
    stream: int
    until: int | None = None


Crop = tuple[np.ndarray, np.ndarray, np.ndarray]  # image [S, S, C], masks bool [K, S, S], valid bool [S, S]


class ArmSampler:
    """Batches (images [N, C, S, S], masks [N, K, S, S], valid [N, 1, S, S]) for one arm."""

    def __init__(
        self,
        real: Pool,
        crop_size: int,
        batch_size: int,
        defect_crop_share: float,
        seed: int,
        *,
        real_stream: int = REAL_STREAM,
        augment: A.Compose | None = None,
        extras: list[Extra] | None = None,
    ):
        self.real, self.crop_size, self.batch_size = real, crop_size, batch_size
        self.defect_crop_share = defect_crop_share
        self.seed, self.real_stream = seed, real_stream
        self.augment = augment
        self.extras = extras or []

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, step, self.real_stream])
        crops = [self._crop(self.real, rng, self.defect_crop_share) for _ in range(self.batch_size)]
        if self.augment is not None:
            self.augment.set_random_seed(
                int(np.random.default_rng([self.seed, step, AUGMENT_STREAM]).integers(2**31))
            )
            crops = [self._augment(crop) for crop in crops]
        for extra in self.extras:
            if extra.until is not None and step >= extra.until:
                continue
            rng = np.random.default_rng([self.seed, step, extra.stream])
            crops += [self._crop(extra.pool, rng, 1.0) for _ in range(extra.count)]
        images = torch.stack([image_to_tensor(image) for image, _, _ in crops])
        masks = torch.stack([torch.from_numpy(m).float() for _, m, _ in crops])
        valid = torch.stack([torch.from_numpy(v)[None].float() for _, _, v in crops])
        return images, masks, valid

    def _crop(self, pool: Pool, rng: np.random.Generator, defect_share: float) -> Crop:
        size = self.crop_size
        centred = bool(pool.defect_indices) and rng.random() < defect_share
        class_id = None
        if centred:
            index, class_id = pool.pick_defect(rng)
        else:
            index = int(rng.integers(len(pool)))
        image, masks, ignore, centres = pool.get(index)
        valid = np.ones(image.shape[:2], dtype=bool) if ignore is None else ~ignore
        image, masks_valid = pad_to_crop(image, np.concatenate([masks, valid[None]]), size)
        masks, valid = masks_valid[:-1], masks_valid[-1]
        height, width = image.shape[:2]
        choices = centres.get(class_id) if class_id is not None else None
        choices = choices or [c for cs in centres.values() for c in cs]
        if centred and choices:
            cy, cx = choices[int(rng.integers(len(choices)))]
            jitter = size // 4
            top = int(np.clip(cy - size // 2 + rng.integers(-jitter, jitter + 1), 0, height - size))
            left = int(np.clip(cx - size // 2 + rng.integers(-jitter, jitter + 1), 0, width - size))
        else:
            top = int(rng.integers(0, height - size + 1))
            left = int(rng.integers(0, width - size + 1))
        window = (slice(top, top + size), slice(left, left + size))
        return (
            np.ascontiguousarray(image[window]),
            np.ascontiguousarray(masks[:, window[0], window[1]]),
            np.ascontiguousarray(valid[window]),
        )

    def _augment(self, crop: Crop) -> Crop:
        image, masks, valid = crop
        size = self.crop_size
        out = self.augment(image=image, masks=[*masks.astype(np.uint8), valid.astype(np.uint8)])
        stacked = np.stack(out["masks"]).astype(bool)
        return out["image"].reshape(size, size, -1), stacked[:-1], stacked[-1]
