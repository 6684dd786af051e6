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
from defectgen.data.imageio import MAX_PIXELS, image_size
from defectgen.data.rle import SEVERSTAL_SHAPE, decode, parse_runs
from defectgen.errors import DataError, RLEError

SEVERSTAL_CLASSES = ClassTable(("1", "2", "3", "4"))
CURRENT_HEADER = ["ImageId", "ClassId", "EncodedPixels"]
MAX_FIELD = 2**31 - 1  # csv's per-field limit while reading; parse_runs bounds each RLE by its image
ORIGINAL_HEADER = ["ImageId_ClassId", "EncodedPixels"]


class SeverstalDataset(DefectDataset):
    """A Severstal-style CSV (either form) with or without its image folder, at any image size.

    - With images, every image's size comes from its file header and each row is checked
      against its own image; `image_shape` (H, W), if given, is a size every image must have.
      `dataset.image_shape` is the images' common size, or None when sizes differ.
    - Labels only, rows are checked against `image_shape`, Kaggle's 256x1600 when not given.
    """

    def __init__(
        self,
        csv_path: Path,
        images_dir: Path | None = None,
        *,
        labels_complete: bool = True,
        covered_ids: Iterable[str] | None = None,
        skip_bad: bool = False,
        classes: ClassTable = SEVERSTAL_CLASSES,
        image_shape: tuple[int, int] | None = None,
    ):
        csv_path = Path(csv_path)
        if image_shape is not None:
            image_shape = check_shape(image_shape)
        spec = f"severstal:{csv_path}" + (f",{images_dir}" if images_dir else "")
        skipped: list[Skipped] = []
        notes: list[str] = []
        rows, listed, bad = read_csv(csv_path, classes, skip_bad, skipped)
        covered = set(listed)  # the original form lists every image it labels
        if covered_ids is not None:
            covered |= _covered(covered_ids)
            labels_complete = False
        covered -= bad  # an image with a bad row is left out whole, never taken as defect-free

        if images_dir is None:
            root = csv_path.parent
            items, self._shapes, common = _labels_only(
                csv_path, rows, listed, covered, image_shape, skip_bad, skipped
            )
            notes.append(
                f"labels only: no image folder given; rows checked against {common[1]}x{common[0]} images"
            )
        else:
            root = Path(images_dir)
            found = _with_images(
                csv_path, root, rows, bad, covered, labels_complete, image_shape, skip_bad, skipped
            )
            items, self._shapes, uncovered = found
            if uncovered:
                notes.append(
                    f"{uncovered} images have no rows and the labels are declared partial: "
                    "left out, not counted as defect-free"
                )
            elif labels_complete and covered_ids is None:
                n_free = sum(1 for item in items if not item.class_ids)
                notes.append(f"{n_free} images without rows taken as defect-free (labels complete)")
            sizes = set(self._shapes.values())
            common = next(iter(sizes)) if len(sizes) == 1 else image_shape
            if len(sizes) > 1:
                notes.append(f"images of {len(sizes)} sizes: each image's rows are checked against its size")
        self._rles = {
            item.item_id: {k: rle for k, (rle, _) in rows.get(item.item_id, {}).items()} for item in items
        }
        super().__init__(
            kind="severstal",
            spec=spec,
            root=root,
            classes=classes,
            channels=1,  # Severstal JPEGs are grayscale content saved as RGB
            items=items,
            skipped=skipped,
            notes=notes,
            image_shape=common,
        )

    def load_masks(self, index: int) -> np.ndarray:
        item = self.items[index]
        shape = self._shapes[item.item_id]
        masks = np.zeros((len(self.classes), *shape), dtype=bool)
        for class_id, rle in self._rles.get(item.item_id, {}).items():
            masks[class_id - 1] = decode(rle, shape)
        return masks

    def shape_of(self, item_id: str) -> tuple[int, int]:
        """(H, W) of one item's image: from its header, or the labels-only size."""
        return self._shapes[item_id]

    def rle(self, item_id: str, class_id: int) -> str:
        """The RLE string of one (image, class) pair; '' when absent."""
        return self._rles.get(item_id, {}).get(class_id, "")


def check_shape(shape) -> tuple[int, int]:
    """(H, W) of positive integers, or a DataError."""
    try:
        height, width = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise DataError(f"image size {shape!r} is not (height, width)") from None
    if height < 1 or width < 1 or height * width > MAX_PIXELS:
        raise DataError(f"image size {width}x{height} is not a usable image size")
    return height, width


def _header_shape(path: Path, expected: tuple[int, int] | None) -> tuple[int, int]:
    """(H, W) from the image's header; a DataError if it differs from `expected`."""
    width, height = image_size(path)
    if expected is not None and (height, width) != expected:
        raise DataError(
            f"{path}: image is {width}x{height}, but the image size given is "
            f"{expected[1]}x{expected[0]}; leave the size out to take each image's own"
        )
    return height, width


def _check_rows(csv_path, image_id, rows: dict, shape, skip_bad, skipped) -> bool:
    """Validate one image's RLE rows against its size; False (recorded) if `skip_bad` drops it."""
    for class_id, (rle, row_number) in sorted(rows.items()):
        try:
            parse_runs(rle, shape)  # validates; decoding waits until the mask is needed
        except RLEError as err:
            size = f"{shape[1]}x{shape[0]}"
            where = f"{csv_path} row {row_number} (ImageId {image_id}, class {class_id}, image {size})"
            if not skip_bad:
                raise err.at(where) from None
            skipped.append(Skipped(image_id, str(err.at(where))))
            return False
    return True


def read_csv(
    csv_path: Path,
    classes: ClassTable,
    skip_bad: bool,
    skipped: list[Skipped],
) -> tuple[dict[str, dict[int, tuple[str, int]]], set[str], set[str]]:
    """Parse a Severstal CSV of either form.

    Returns ({ImageId: {ClassId: (rle, row number)}} for non-empty rows, ids listed in the
    file, ids dropped for a bad row). Every row's form is checked here (ImageId safe, ClassId
    known, one row per pair); the runs are checked against the image's size by the caller, once
    the size is known. A bad row raises a DataError naming the file and row, or with `skip_bad`
    drops that image (reported once).
    """
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: CSV not found; give the path to Severstal's train.csv")
    rows: dict[str, dict[int, tuple[str, int]]] = {}
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
        limit = csv.field_size_limit()
        csv.field_size_limit(MAX_FIELD)  # an RLE row of a large image is far past csv's 128 kB default
        try:
            for row in reader:
                row_number = reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                try:
                    image_id, class_id, rle = _parse_row(row, original, classes)
                except DataError as err:
                    err = DataError(f"{csv_path} row {row_number}: {err}")
                    if not skip_bad:
                        raise err from None
                    image_id = (row[0].rsplit("_", 1)[0] if original else row[0]).strip()
                    if image_id not in bad_ids:  # one report per image
                        skipped.append(Skipped(image_id, str(err)))
                    bad_ids.add(image_id)
                    continue
                listed.add(image_id)
                if not rle:
                    continue
                per_image = rows.setdefault(image_id, {})
                if class_id in per_image:
                    err = DataError(
                        f"{csv_path} row {row_number}: second row for ImageId {image_id} class "
                        f"{class_id}; merge the runs into one row"
                    )
                    if not skip_bad:
                        raise err
                    if image_id not in bad_ids:
                        skipped.append(Skipped(image_id, str(err)))
                    bad_ids.add(image_id)
                per_image[class_id] = (rle, row_number)
        except (csv.Error, UnicodeDecodeError) as err:
            raise DataError(f"{csv_path} row {reader.line_num}: malformed CSV ({err})") from err
        finally:
            csv.field_size_limit(limit)
    for image_id in bad_ids:  # an image with one bad row is dropped whole
        rows.pop(image_id, None)
        listed.discard(image_id)
    return rows, listed, bad_ids


def _parse_row(row, original, classes) -> tuple[str, int, str]:
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
    return image_id, class_id, rle


def check_image_id(image_id: str) -> None:
    """ImageIds are plain file names: no folders, no `..`, nothing absolute."""
    if not image_id or "/" in image_id or "\\" in image_id or ".." in image_id or "\0" in image_id:
        raise DataError(
            f"ImageId {image_id!r} is not a plain file name (path separators and '..' are "
            "refused so a CSV cannot point outside its image folder)"
        )


def _covered(covered_ids) -> set[str]:
    """The ImageIds of a covered-ids list, each checked to be an image file name."""
    given = {str(i).strip() for i in covered_ids if str(i).strip()}
    for image_id in sorted(given):
        try:
            check_image_id(image_id)
            if Path(image_id).suffix.lower() not in IMAGE_SUFFIXES:
                raise DataError(f"ImageId {image_id!r} is not an image file name")
        except DataError as err:
            raise DataError(f"covered ids: {err}; the file must list one ImageId per line") from None
    return given


def _labels_only(csv_path, rows, listed, covered, image_shape, skip_bad, skipped):
    """(items, shapes, shape) of a CSV read without images: every image of `image_shape`."""
    shape = image_shape or SEVERSTAL_SHAPE
    for image_id in sorted(rows):
        if not _check_rows(csv_path, image_id, rows[image_id], shape, skip_bad, skipped):
            rows.pop(image_id)
            listed.discard(image_id)
            covered.discard(image_id)
    ids = sorted(set(rows) | covered)
    return [Item(i, None, tuple(sorted(rows.get(i, {})))) for i in ids], dict.fromkeys(ids, shape), shape


def _with_images(csv_path, root, rows, bad, covered, labels_complete, image_shape, skip_bad, skipped):
    """(items, shapes, images left out as uncovered) of a CSV with its image folder: each
    image's size read from its header and its rows checked against it."""
    if not root.is_dir():
        raise DataError(f"{root}: image folder not found; check severstal:CSV,IMAGES_DIR")
    files = {
        p.name: p
        for p in sorted(root.iterdir())
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    }
    missing = sorted(set(rows) - set(files))
    if missing and not skip_bad:
        raise DataError(
            f"{csv_path}: {len(missing):,} images with rows are not in {root} "
            f"(first: {missing[0]}); point to the right folder, or pass --skip-bad "
            "to use only the images that are there"
        )
    skipped += [Skipped(i, f"image not found in {root}") for i in missing]
    items, shapes, uncovered = [], {}, 0
    for name, path in files.items():
        if name in bad:
            continue  # already reported as skipped
        if not (name in rows or labels_complete or name in covered):
            uncovered += 1
            continue
        try:
            inside(root, path, "image")
            shape = _header_shape(path, image_shape)
        except DataError as err:
            if not skip_bad:
                raise
            skipped.append(Skipped(name, str(err)))
            continue
        if not _check_rows(csv_path, name, rows.get(name, {}), shape, skip_bad, skipped):
            continue
        items.append(Item(name, path, tuple(sorted(rows.get(name, {})))))
        shapes[name] = shape
    return items, shapes, uncovered
