"""COCO segmentation JSON, as labelling tools (CVAT, Label Studio, ...) export it.

    coco:ANNOTATIONS.json[,IMAGES_DIR]

`images[].file_name` is relative to IMAGES_DIR (default: an `images/` folder beside the JSON or
beside its parent folder, else the JSON's own folder). Categories become classes, ordered by
category id; an image listed without annotations is defect-free (a COCO file lists every image
it labels). Segmentations may be polygons, uncompressed RLE (`counts` a list) or compressed RLE
(`counts` a string), rasterised by `pycocotools`; every one is checked first, because the
library's decoder trusts its input (a malformed RLE string decodes to garbage, not to an
error). A bounding box without a segmentation is refused: defectgen needs pixel masks.
"""

from __future__ import annotations

import posixpath
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
from pycocotools import mask as coco_mask

from defectgen.data.classes import ClassTable
from defectgen.data.dataset import DefectDataset, Item, Skipped, inside
from defectgen.data.folder import channels_and_notes
from defectgen.data.imageio import MAX_PIXELS
from defectgen.errors import DataError
from defectgen.fileio import parse_json

MAX_JSON_BYTES = 512_000_000
MAX_POINTS = 200_000  # polygon points per annotation
PERIMETER_PER_SIDE = 64  # a polygon's outline may be this many times (H + W) long, no more
MAX_RLE_GROUPS = 6  # 6 x 5 bits: any run length up to 2**29, past the largest image read


def looks_like_coco(path: Path) -> bool:
    """A .json file whose first bytes open a JSON object (the full check is the reader's)."""
    if path.suffix.lower() != ".json" or not path.is_file():
        return False
    with open(path, "rb") as handle:
        return handle.read(64).removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"{")


def default_images_dir(json_path: Path) -> Path:
    for candidate in (json_path.parent / "images", json_path.parent.parent / "images"):
        if candidate.is_dir():
            return candidate
    return json_path.parent


class CocoDataset(DefectDataset):
    def __init__(
        self,
        json_path: Path,
        images_dir: Path | None = None,
        *,
        skip_bad: bool = False,
        channels: int | None = None,
    ):
        json_path = Path(json_path)
        root = Path(images_dir) if images_dir else default_images_dir(json_path)
        if not root.is_dir():
            raise DataError(f"{root}: image folder not found; name it with coco:JSON,IMAGES_DIR")
        data = _load(json_path)
        categories = sorted(data["categories"], key=lambda c: c["id"])
        try:
            classes = ClassTable(tuple(str(c["name"]) for c in categories))
        except DataError as err:
            raise DataError(f"{json_path}: {err} (class names come from the categories)") from None
        class_of = {c["id"]: k for k, c in enumerate(categories, start=1)}

        skipped: list[Skipped] = []
        images: dict[int, dict] = {}
        bad_images: set = set()  # ids of image entries or images dropped under skip_bad
        entries = [e for e in data["images"] if isinstance(e, dict)]
        id_count = Counter(e.get("id") for e in entries if _is_int(e.get("id")))
        name_count = Counter(_normal(e.get("file_name")) for e in entries)
        for entry in data["images"]:
            try:
                image_id = _check_image_entry(entry, root)
                name = entry["file_name"]
                if id_count[image_id] > 1:
                    raise DataError(f"image id {image_id} is listed {id_count[image_id]} times")
                if name_count[name] > 1:
                    raise DataError(f"image {image_id}: file {name} is listed {name_count[name]} times")
                images[image_id] = entry
            except DataError as err:
                if not skip_bad:
                    raise DataError(f"{json_path}: {err}") from None
                name = entry.get("file_name", entry.get("id")) if isinstance(entry, dict) else entry
                skipped.append(Skipped(str(name), str(err)))
                if isinstance(entry, dict) and _is_int(entry.get("id")):
                    bad_images.add(entry["id"])
        self._segments: dict[int, list[tuple[int, object]]] = {i: [] for i in images}
        for annotation in data["annotations"]:
            try:
                image_id, class_id, segmentation = _check_annotation(annotation, images, class_of)
            except DataError as err:
                image_id = annotation.get("image_id") if isinstance(annotation, dict) else None
                image_id = image_id if _is_int(image_id) else None
                if not skip_bad:
                    raise DataError(f"{json_path}: {err}") from None
                if image_id is None or image_id not in bad_images:  # a dropped image is reported once
                    name = images[image_id]["file_name"] if image_id in images else "annotation"
                    skipped.append(Skipped(name, str(err)))
                bad_images.add(image_id)
                continue
            self._segments[image_id].append((class_id, segmentation))

        items: list[Item] = []
        self._image_of: dict[str, int] = {}
        for image_id, entry in images.items():
            if image_id in bad_images:
                continue
            path = root / entry["file_name"]
            if not path.is_file():
                err = DataError(f"{path}: image listed in {json_path.name} not found")
                if not skip_bad:
                    raise err
                skipped.append(Skipped(entry["file_name"], str(err)))
                continue
            present = tuple(sorted({k for k, _ in self._segments[image_id]}))
            items.append(Item(entry["file_name"], path, present))
            self._image_of[entry["file_name"]] = image_id
        self._images = images
        free = sum(1 for item in items if not item.class_ids)
        notes = [f"{free} images listed without annotations taken as defect-free"]
        channels, notes = channels_and_notes([i.image_path for i in items], channels, notes)
        super().__init__(
            kind="coco",
            spec=f"coco:{json_path}" + (f",{images_dir}" if images_dir else ""),
            root=root,
            classes=classes,
            channels=channels,
            items=items,
            skipped=skipped,
            notes=notes,
        )

    def load_masks(self, index: int) -> np.ndarray:
        item = self.items[index]
        image_id = self._image_of[item.item_id]
        height, width = self._images[image_id]["height"], self._images[image_id]["width"]
        masks = np.zeros((len(self.classes), height, width), dtype=bool)
        for class_id, segmentation in self._segments[image_id]:
            masks[class_id - 1] |= _rasterise(segmentation, height, width)
        return masks


def _load(json_path: Path) -> dict:
    if not json_path.is_file():
        raise DataError(f"{json_path}: COCO annotation file not found")
    if json_path.stat().st_size > MAX_JSON_BYTES:
        raise DataError(f"{json_path}: larger than {MAX_JSON_BYTES:,} bytes; not a COCO file defectgen reads")
    try:
        data = parse_json(json_path.read_bytes().decode("utf-8-sig"))
    except (OSError, ValueError) as err:
        raise DataError(f"{json_path}: not a readable JSON file ({err})") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "categories")):
        raise DataError(f"{json_path}: not a COCO file (needs lists 'images', 'annotations', 'categories')")
    data.setdefault("annotations", [])
    if not isinstance(data["annotations"], list):
        raise DataError(f"{json_path}: 'annotations' must be a list")
    ids = [c.get("id") if isinstance(c, dict) else None for c in data["categories"]]
    names = [c.get("name") if isinstance(c, dict) else None for c in data["categories"]]
    if (
        not data["categories"]
        or not all(_is_int(i) for i in ids)
        or len(set(ids)) != len(ids)
        or not all(isinstance(n, str) and n.strip() for n in names)
    ):
        raise DataError(f"{json_path}: 'categories' must be objects with distinct integer ids and names")
    return data


def _normal(name) -> str | None:
    """A file_name as one spelling: `./a.png` and `x/../a.png` are `a.png`; None if unusable."""
    if not isinstance(name, str) or not name or "\\" in name or "\0" in name:
        return None
    return posixpath.normpath(name)


def _check_image_entry(entry, root: Path) -> int:
    """The entry's id, after checking it; its file_name is rewritten to the normal spelling."""
    if not isinstance(entry, dict) or not _is_int(entry.get("id")):
        raise DataError(f"image entry {str(entry)[:80]} has no integer id")
    image_id, name = entry["id"], _normal(entry.get("file_name"))
    if name is None or name.startswith("/"):
        raise DataError(f"image {image_id}: file_name {entry.get('file_name')!r} is not a relative file name")
    entry["file_name"] = name
    inside(root, root / name, "image")
    height, width = entry.get("height"), entry.get("width")
    if not (_is_int(height) and _is_int(width)) or height < 1 or width < 1 or height * width > MAX_PIXELS:
        raise DataError(f"image {image_id} ({name}): height/width {height}x{width} are not a usable size")
    return image_id


def _check_annotation(annotation, images: dict, class_of: dict) -> tuple[int, int, object]:
    """(image id, class id, segmentation) of a valid annotation, or a DataError saying why."""
    if not isinstance(annotation, dict):
        raise DataError(f"annotation {str(annotation)[:80]} is not an object")
    where = f"annotation {str(annotation.get('id', '?'))[:40]}"
    image_id, category = annotation.get("image_id"), annotation.get("category_id")
    if not _is_int(image_id) or image_id not in images:
        raise DataError(f"{where}: image_id {image_id!r} is not in 'images'")
    if not _is_int(category) or category not in class_of:
        raise DataError(f"{where}: category_id {category!r} is not in 'categories'")
    height, width = images[image_id]["height"], images[image_id]["width"]
    segmentation = annotation.get("segmentation")
    if not segmentation:
        raise DataError(f"{where}: no segmentation (a bounding box alone is not a pixel mask)")
    if isinstance(segmentation, list):
        _check_polygons(segmentation, height, width, where)
    elif isinstance(segmentation, dict):
        size = segmentation.get("size")
        if size != [height, width]:
            raise DataError(f"{where}: RLE size {size} differs from its image's [{height}, {width}]")
        counts = segmentation.get("counts")
        if isinstance(counts, list):
            if not all(_is_int(c) and c >= 0 for c in counts) or sum(counts) != height * width:
                raise DataError(f"{where}: RLE counts must be non-negative and sum to {height * width}")
        elif isinstance(counts, str):
            if sum(_string_counts(counts, where, height * width)) != height * width:
                raise DataError(f"{where}: RLE string does not cover its {width}x{height} image exactly")
        else:
            raise DataError(f"{where}: RLE counts must be a list of integers or a string")
    else:
        raise DataError(f"{where}: segmentation must be a list of polygons or an RLE object")
    return image_id, class_of[category], segmentation


def _check_polygons(polygons: list, height: int, width: int, where: str) -> None:
    """Flat [x, y, ...] lists of >= 3 finite points near the image, with a bounded outline
    (pycocotools rasterises every edge point by point: a long zigzag costs gigabytes)."""
    reach = 4 * max(height, width) + 16  # labelling tools overshoot edges a little, not by more
    points, outline = 0, 0.0
    for polygon in polygons:
        if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2:
            raise DataError(f"{where}: a polygon must be a flat list of at least 3 x,y pairs")
        try:
            values = np.asarray([float(v) for v in polygon if not isinstance(v, bool)], dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            values = None
        if values is None or len(values) != len(polygon) or not np.isfinite(values).all():
            raise DataError(f"{where}: a polygon holds something other than finite numbers")
        if np.abs(values).max() > reach:
            raise DataError(f"{where}: a polygon point lies far outside its {width}x{height} image")
        xy = values.reshape(-1, 2)
        points += len(xy)
        outline += float(np.abs(np.diff(np.vstack([xy, xy[:1]]), axis=0)).max(axis=1).sum())
    if points > MAX_POINTS or outline > PERIMETER_PER_SIDE * (height + width):
        raise DataError(
            f"{where}: polygons of {points:,} points and an outline of {outline:,.0f} px are far more than "
            f"a {width}x{height} image's defect needs; simplify them"
        )


def _string_counts(text: str, where: str, total: int) -> list[int]:
    """Run lengths of a compressed COCO RLE string (6-bit groups, offset 48, the differential
    coding pycocotools uses from the third run on); a DataError for a malformed one, or as soon
    as the runs pass `total` pixels."""
    covered = 0
    counts: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(text):
                raise DataError(f"{where}: RLE string ends inside a number")
            code = ord(text[position]) - 48
            if not 0 <= code < 64:
                raise DataError(f"{where}: RLE string holds {text[position]!r}, not a COCO RLE character")
            value |= (code & 0x1F) << shift
            more = bool(code & 0x20)
            position += 1
            shift += 5
            if more and shift >= 5 * MAX_RLE_GROUPS:
                raise DataError(f"{where}: RLE string holds a number too large for any image")
            if not more and code & 0x10:
                value -= 1 << shift
        if len(counts) > 2:
            value += counts[-2]
        if value < 0:
            raise DataError(f"{where}: RLE string decodes to a negative run")
        counts.append(value)
        covered += value
        if covered > total:
            raise DataError(f"{where}: RLE string covers more than its image's {total:,} pixels")
    return counts


def _rasterise(segmentation, height: int, width: int) -> np.ndarray:
    """bool [H, W] of one checked segmentation."""
    if isinstance(segmentation, list):
        rle = coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation["counts"], list):
        rle = coco_mask.frPyObjects(segmentation, height, width)
    else:
        rle = {"size": [height, width], "counts": segmentation["counts"].encode("ascii")}
    with warnings.catch_warnings():  # pycocotools' own numpy-2 `__array__` notice, not ours to fix
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return coco_mask.decode(rle).astype(bool)
        except ValueError as err:
            raise DataError(f"a segmentation pycocotools cannot decode ({err})") from None


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
