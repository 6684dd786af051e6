"""Masks a user drew: full control over where, how large and of which class each defect is.

The folder holds PNG files, one image's masks per file. The class comes from the file:

- `c<k>_<anything>.png` (e.g. `c2_scratch.png`, case-insensitive `c`): a *binary* mask of
  class k; pixels >= 128 are defect (soft, anti-aliased edges are thresholded at 128, as for
  dataset masks), or 1 in a mask of 0/1 values (`defectgen.data.folder.binary_defect`).
- any other `*.png`: an *index* mask: 0 = background, value k = class k, k in 1..K.

A value above K in an index mask, or a prefix k above K, is a DataError that names the file.
A binary mask drawn without the prefix (values 255) is caught by the same check.

Sizes: a mask is used as drawn when it has the target image's size, so the user decides the
position. A mask of another size is resized to H x W with nearest-neighbour interpolation
(the class ids stay exact, the relative position is kept, the aspect ratio follows the
target): draw masks at the size of the images they are for.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from defectgen.data.classes import ClassTable
from defectgen.data.folder import binary_defect
from defectgen.data.imageio import read_mask
from defectgen.errors import DataError

BINARY_NAME = re.compile(r"^c(\d+)_.*\.png$", re.IGNORECASE)


def mask_files(folder: Path) -> list[Path]:
    """The PNG masks of a user's mask folder, sorted (hidden files and folders left out)."""
    return sorted(
        p
        for p in Path(folder).iterdir()
        if p.suffix.lower() == ".png" and not p.name.startswith(".") and not p.is_dir()
    )


class UserMasks:
    """All PNG masks of `folder`, read and checked once (user folders are small)."""

    def __init__(self, folder: str | Path, classes: ClassTable):
        self.folder = Path(folder)
        self.classes = classes
        self.num_classes = len(classes)
        if not self.folder.is_dir():
            raise DataError(f"{self.folder}: mask folder not found; give a folder of PNG masks")
        paths = mask_files(self.folder)
        if not paths:
            raise DataError(
                f"{self.folder}: no PNG masks; save index masks (0 = background, k = class k) or binary "
                "masks named c<k>_NAME.png there"
            )
        self.paths: list[Path] = []
        self.masks: list[np.ndarray] = []  # uint8 [h, w] index masks, 0 background
        for path in paths:
            self.paths.append(path)
            self.masks.append(self._read(path))
        present = [set(np.unique(m).tolist()) - {0} for m in self.masks]
        self._with_class = {
            k: [i for i, found in enumerate(present) if k in found] for k in range(1, self.num_classes + 1)
        }
        self.class_ids = tuple(k for k, files in self._with_class.items() if files)
        # share of files holding each class: the composer's default class weights
        self.class_frequency = {
            k: len(files) / len(self.masks) for k, files in self._with_class.items() if files
        }

    def _read(self, path: Path) -> np.ndarray:
        raw = read_mask(path)  # uint8 [h, w], raises DataError naming the file
        binary = BINARY_NAME.match(path.name)
        names = ", ".join(f"{k}={n}" for k, n in zip(self.classes.ids, self.classes.names, strict=True))
        if binary:
            class_id, rest = int(binary.group(1)), path.name.split("_", 1)[1]
            if not 1 <= class_id <= self.num_classes:
                raise DataError(
                    f"{path}: the name says class {class_id} but the class table has {self.num_classes} "
                    f"classes ({names}); rename it c<k>_{rest} with k in 1..{self.num_classes}"
                )
            index = np.where(binary_defect(raw), class_id, 0).astype(np.uint8)
        else:
            top = int(raw.max(initial=0))
            if top > self.num_classes:
                raise DataError(
                    f"{path}: value {top} but the class table has {self.num_classes} classes ({names}); "
                    f"an index mask holds 0 (background) or a class id 1..{self.num_classes}. If it is a "
                    "binary 0/255 mask, name it c<k>_NAME.png for class k"
                )
            index = raw
        if not index.any():
            raise DataError(f"{path}: the mask has no defect pixel; draw the defect or remove the file")
        return index

    def __len__(self) -> int:
        return len(self.masks)

    def index_mask(self, number: int, height: int, width: int) -> np.ndarray:
        """uint8 [H, W] of file `number`, resized (nearest) when its size differs."""
        mask = self.masks[number]
        if mask.shape != (height, width):
            mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)
        return mask

    def draw(self, rng: np.random.Generator, height: int, width: int, classes: list[int] | None = None):
        """bool [K, H, W] of one file picked uniformly among those holding a requested class
        (classes not requested are left out)."""
        wanted = self._wanted(classes)
        choices = sorted({i for k in wanted for i in self._with_class[k]})
        index = self.index_mask(choices[int(rng.integers(len(choices)))], height, width)
        masks = np.zeros((self.num_classes, height, width), dtype=bool)
        for class_id in wanted:
            masks[class_id - 1] = index == class_id
        return masks

    def draw_defect(self, rng: np.random.Generator, height: int, width: int, class_id: int) -> np.ndarray:
        """bool [H, W]: the `class_id` pixels of a file that holds that class."""
        choices = self._with_class.get(class_id) if class_id in self.class_ids else None
        if not choices:
            raise DataError(self._missing(class_id))
        return self.index_mask(choices[int(rng.integers(len(choices)))], height, width) == class_id

    def _wanted(self, classes: list[int] | None) -> list[int]:
        if classes is None:
            return list(self.class_ids)
        wanted = sorted({int(k) for k in classes})
        for class_id in wanted:
            self.classes.check_id(class_id)
        if not any(k in self.class_ids for k in wanted):
            raise DataError(self._missing(wanted[0] if len(wanted) == 1 else wanted))
        return wanted

    def _missing(self, class_ids) -> str:
        return (
            f"{self.folder}: no mask holds class {class_ids}; draw one (index value k, or a binary "
            f"mask named c<k>_NAME.png); the folder's masks hold classes {list(self.class_ids)}"
        )
