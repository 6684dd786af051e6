"""Severstal: Steel Defect Detection (Kaggle 2019) reader.

Two CSV forms exist, told apart by the header:
- current: `ImageId,ClassId,EncodedPixels`, positive rows only;
- original: `ImageId_ClassId,EncodedPixels`, four rows per image, empty for absent classes.

Which images without rows are defect-free? Only those the labels cover. With the full Kaggle
file every image is covered (`labels_complete=True`, the default). A partial CSV (a sample,
a subset) must say so (`labels_complete=False`, optionally with the ids it covers): then an
image with no row is left out and counted, never silently called defect-free.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from defectgen.data.classes import ClassTable
from defectgen.data.dataset import IMAGE_SUFFIXES, DefectDataset, Item, Skipped, inside
from defectgen.data.rle import SEVERSTAL_SHAPE, decode, parse_runs
from defectgen.errors import DataError, RLEError

SEVERSTAL_CLASSES = ClassTable(("1", "2", "3", "4"))
CURRENT_HEADER = ["ImageId", "ClassId", "EncodedPixels"]
ORIGINAL_HEADER = ["ImageId_ClassId", "EncodedPixels"]


class SeverstalDataset(DefectDataset):
    def __init__(
        self,
        csv_path: Path,
        images_dir: Path | None = None,
        *,
        labels_complete: bool = True,
        covered_ids: Iterable[str] | None = None,
        skip_bad: bool = False,
        classes: ClassTable = SEVERSTAL_CLASSES,
        image_shape: tuple[int, int] = SEVERSTAL_SHAPE,
    ):
        csv_path = Path(csv_path)
        spec = f"severstal:{csv_path}" + (f",{images_dir}" if images_dir else "")
        skipped: list[Skipped] = []
        notes: list[str] = []
        rles, listed = read_csv(csv_path, classes, image_shape, skip_bad, skipped)
        covered = set(listed)  # the original form lists every image it labels
        if covered_ids is not None:
            covered |= {str(i).strip() for i in covered_ids if str(i).strip()}
            labels_complete = False

        items: list[Item] = []
        if images_dir is None:
            root = csv_path.parent
            ids = sorted(set(rles) | covered)
            items = [Item(i, None, tuple(sorted(rles.get(i, {})))) for i in ids]
            notes.append("labels only: no image folder given")
        else:
            root = Path(images_dir)
            if not root.is_dir():
                raise DataError(f"{root}: image folder not found; check severstal:CSV,IMAGES_DIR")
            files = {
                p.name: p
                for p in sorted(root.iterdir())
                if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
            }
            missing = sorted(set(rles) - set(files))
            if missing and not skip_bad:
                raise DataError(
                    f"{csv_path}: {len(missing):,} images with rows are not in {root} "
                    f"(first: {missing[0]}); point to the right folder, or pass --skip-bad "
                    "to use only the images that are there"
                )
            skipped += [Skipped(i, f"image not found in {root}") for i in missing]
            uncovered = 0
            for name, path in files.items():
                try:
                    inside(root, path, "image")
                except DataError as err:
                    if not skip_bad:
                        raise
                    skipped.append(Skipped(name, str(err)))
                    continue
                if name in rles:
                    items.append(Item(name, path, tuple(sorted(rles[name]))))
                elif labels_complete or name in covered:
                    items.append(Item(name, path, ()))
                else:
                    uncovered += 1
            if uncovered:
                notes.append(
                    f"{uncovered} images have no rows and the labels are declared partial: "
                    "left out, not counted as defect-free"
                )
            elif labels_complete and covered_ids is None:
                n_free = sum(1 for item in items if not item.class_ids)
                notes.append(f"{n_free} images without rows taken as defect-free (labels complete)")
        self._rles = rles
        super().__init__(
            kind="severstal",
            spec=spec,
            root=root,
            classes=classes,
            channels=1,  # Severstal JPEGs are grayscale content saved as RGB
            items=items,
            skipped=skipped,
            notes=notes,
            image_shape=image_shape,
        )

    def load_masks(self, index: int) -> np.ndarray:
        item = self.items[index]
        masks = np.zeros((len(self.classes), *self.image_shape), dtype=bool)
        for class_id, rle in self._rles.get(item.item_id, {}).items():
            masks[class_id - 1] = decode(rle, self.image_shape)
        return masks

    def rle(self, item_id: str, class_id: int) -> str:
        """The RLE string of one (image, class) pair; '' when absent."""
        return self._rles.get(item_id, {}).get(class_id, "")


def read_csv(
    csv_path: Path,
    classes: ClassTable,
    image_shape: tuple[int, int],
    skip_bad: bool,
    skipped: list[Skipped],
) -> tuple[dict[str, dict[int, str]], set[str]]:
    """Parse and validate a Severstal CSV of either form.

    Returns ({ImageId: {ClassId: rle}} for non-empty rows, ids listed in the file). Every row
    is checked (ImageId safe, ClassId known, RLE valid); a bad row raises a DataError naming
    the file and row, or with `skip_bad` drops that image entirely.
    """
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: CSV not found; give the path to Severstal's train.csv")
    rles: dict[str, dict[int, str]] = {}
    listed: set[str] = set()
    bad_ids: set[str] = set()
    try:
        handle = open(csv_path, newline="", encoding="utf-8")
    except OSError as err:
        raise DataError(f"{csv_path}: cannot read ({err})") from err
    with handle:
        reader = csv.reader(handle)
        try:
            header = [h.strip().lstrip("\ufeff") for h in next(reader, [])]
        except (csv.Error, UnicodeDecodeError) as err:
            raise DataError(f"{csv_path}: not a readable CSV ({err})") from err
        if header == CURRENT_HEADER:
            original = False
        elif header == ORIGINAL_HEADER:
            original = True
        else:
            raise DataError(
                f"{csv_path}: header {header} is neither {','.join(CURRENT_HEADER)} nor "
                f"{','.join(ORIGINAL_HEADER)}; is this Severstal's train.csv?"
            )
        row_number = 1
        try:
            for row_number, row in enumerate(reader, start=2):
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                try:
                    image_id, class_id, rle = _parse_row(row, original, classes, image_shape)
                except DataError as err:
                    where = f"{csv_path} row {row_number}"
                    err = err.at(where) if isinstance(err, RLEError) else DataError(f"{where}: {err}")
                    if not skip_bad:
                        raise err from None
                    image_id = row[0].rsplit("_", 1)[0] if original else row[0]
                    bad_ids.add(image_id)
                    skipped.append(Skipped(image_id, str(err)))
                    continue
                listed.add(image_id)
                if not rle:
                    continue
                per_image = rles.setdefault(image_id, {})
                if class_id in per_image:
                    err = DataError(
                        f"{csv_path} row {row_number}: second row for ImageId {image_id} class "
                        f"{class_id}; merge the runs into one row"
                    )
                    if not skip_bad:
                        raise err
                    bad_ids.add(image_id)
                    skipped.append(Skipped(image_id, str(err)))
                per_image[class_id] = rle
        except (csv.Error, UnicodeDecodeError) as err:
            raise DataError(f"{csv_path} row {row_number}: malformed CSV ({err})") from err
    for image_id in bad_ids:  # an image with one bad row is dropped whole
        rles.pop(image_id, None)
        listed.discard(image_id)
    return rles, listed


def _parse_row(row, original, classes, image_shape) -> tuple[str, int, str]:
    if original:
        if len(row) != 2:
            raise DataError(f"expected 2 fields (ImageId_ClassId,EncodedPixels), got {len(row)}")
        key, rle = row
        if "_" not in key:
            raise DataError(f"ImageId_ClassId {key!r} has no '_<class>' suffix")
        image_id, class_text = key.rsplit("_", 1)
    else:
        if len(row) != 3:
            raise DataError(f"expected 3 fields (ImageId,ClassId,EncodedPixels), got {len(row)}")
        image_id, class_text, rle = row
    image_id = image_id.strip()
    check_image_id(image_id)
    try:
        class_id = int(class_text)
    except ValueError:
        raise DataError(f"ClassId {class_text!r} is not an integer") from None
    if class_id not in classes.ids:
        raise DataError(f"unknown ClassId {class_id} for {image_id} (known: {classes.ids})")
    rle = rle.strip()
    if not original and not rle:
        raise DataError(f"empty EncodedPixels for {image_id} class {class_id}")
    parse_runs(rle, image_shape)  # validates; decoding waits until the mask is needed
    return image_id, class_id, rle


def check_image_id(image_id: str) -> None:
    """ImageIds are plain file names: no folders, no `..`, nothing absolute."""
    if not image_id or "/" in image_id or "\\" in image_id or ".." in image_id or "\0" in image_id:
        raise DataError(
            f"ImageId {image_id!r} is not a plain file name (path separators and '..' are "
            "refused so a CSV cannot point outside its image folder)"
        )
