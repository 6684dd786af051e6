"""The MVTec AD layout, read as it ships: one category folder.

    CATEGORY/train/good/000.png                      defect-free
    CATEGORY/test/good/000.png                       defect-free
    CATEGORY/test/<defect type>/000.png              one defect type per folder
    CATEGORY/ground_truth/<defect type>/000_mask.png its binary mask

Defect types become classes (sorted by name); `good` (or another defect-free folder name, see
`folder.FREE_FOLDER`) holds defect-free images. Item ids are `train/good/000` style, and each
item remembers its part (`train` / `test`) so `split --layout-split` can keep the layout's own
split. A defect image without its mask is an error (`--skip-bad` skips it): a missing mask is
never read as "defect-free".
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from defectgen.data.classes import ClassTable
from defectgen.data.dataset import DefectDataset, Item, Skipped, inside
from defectgen.data.folder import (
    FREE_FOLDER,
    channels_and_notes,
    find_file,
    image_files,
    one_class_masks,
    refuse_linked_folders,
)
from defectgen.errors import DataError

PARTS = ("train", "test")


def is_mvtec_category(root: Path) -> bool:
    """A folder with train/ and test/ parts whose train/ holds a defect-free folder."""
    return (
        (root / "test").is_dir()
        and (root / "train").is_dir()
        and any(p.is_dir() and FREE_FOLDER.match(p.name) for p in (root / "train").iterdir())
    )


def mvtec_categories(root: Path) -> list[str]:
    """Subfolders of `root` that are MVTec AD categories (the dataset's top folder holds 15)."""
    return sorted(p.name for p in root.iterdir() if p.is_dir() and is_mvtec_category(p))


class MVTecDataset(DefectDataset):
    def __init__(self, root: Path, *, skip_bad: bool = False, channels: int | None = None):
        root = Path(root)
        if not is_mvtec_category(root):
            raise DataError(
                f"{root}: not an MVTec AD category folder; expected {root}/train/good/ and {root}/test/"
            )
        folders = [
            (part, p)
            for part in PARTS
            for p in sorted((root / part).iterdir())
            if p.is_dir() and not p.name.startswith(".")  # .ipynb_checkpoints is not a defect type
        ]
        refuse_linked_folders([p for _, p in folders])
        defect_types = sorted({p.name for _, p in folders if not FREE_FOLDER.match(p.name)})
        try:
            classes = ClassTable(tuple(defect_types)) if defect_types else None
        except DataError as err:
            raise DataError(f"{root}: {err} (class names come from the defect folders)") from None
        if classes is None:
            raise DataError(f"{root}: no defect folders under test/ (only {FREE_FOLDER.pattern} ones)")
        items: list[Item] = []
        skipped: list[Skipped] = []
        owner: dict[str, Path] = {}  # mask -> the image that claimed it first
        for part, folder in folders:
            free = bool(FREE_FOLDER.match(folder.name))
            class_ids = () if free else (classes.names.index(folder.name) + 1,)
            files = image_files(folder)
            stems = Counter(p.stem for p in files)
            for image_path in files:
                item_id = f"{part}/{folder.name}/{image_path.stem}"
                mask_path = None if free else _mask_of(root, folder.name, image_path)
                try:
                    inside(root, image_path, "image")
                    if stems[image_path.stem] > 1:
                        raise DataError(
                            f"{image_path}: {stems[image_path.stem]} images in {folder} share the name "
                            f"{image_path.stem}, so their masks cannot be told apart; rename or remove them"
                        )
                    if not free:
                        if mask_path is None:
                            raise DataError(
                                f"{image_path}: no mask ground_truth/{folder.name}/{image_path.stem}_mask.png"
                            )
                        inside(root, mask_path, "mask")
                        if str(mask_path) in owner:
                            raise DataError(
                                f"{image_path} and {owner[str(mask_path)]} would both take the mask "
                                f"{mask_path}: MVTec AD's ground_truth/ names masks by defect type and "
                                "file name only, so a defect image in train/ cannot share a name with "
                                "one in test/; rename one"
                            )
                        owner[str(mask_path)] = image_path
                except DataError as err:
                    if not skip_bad:
                        raise
                    skipped.append(Skipped(item_id, str(err)))
                    continue
                items.append(Item(item_id, image_path, class_ids, mask_path, part=part))
        counts = {part: sum(1 for i in items if i.part == part and i.class_ids) for part in PARTS}
        notes = [f"MVTec AD layout: defect images in train/ {counts['train']}, in test/ {counts['test']}"]
        channels, notes = channels_and_notes([i.image_path for i in items], channels, notes)
        super().__init__(
            kind="mvtec", spec=f"mvtec:{root}", root=root, classes=classes, channels=channels, items=items,
            skipped=skipped, notes=notes,
        )  # fmt: skip

    def load_masks(self, index: int) -> np.ndarray:
        return one_class_masks(self, index)


def _mask_of(root: Path, defect_type: str, image_path: Path) -> Path | None:
    """ground_truth/<type>/<stem>_mask.png (the MVTec AD name), or <stem>.png; None if neither."""
    for name in (f"{image_path.stem}_mask.png", f"{image_path.stem}.png"):
        path = find_file(root / "ground_truth" / defect_type, name)
        if path.is_file():
            return path
    return None
