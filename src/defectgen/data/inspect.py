"""`defectgen inspect`: what is in a dataset, in numbers and one picture."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from defectgen import ui
from defectgen.data.dataset import DefectDataset
from defectgen.data.rle import area as rle_area
from defectgen.data.severstal import SeverstalDataset
from defectgen.errors import DataError
from defectgen.viz import contact_sheet, overlay

QUANTILES = (0.0, 0.1, 0.5, 0.9, 1.0)


def inspect_dataset(dataset: DefectDataset, skip_bad: bool = False) -> dict:
    """Counts per class, defect-free count, mask area distribution per class (pixels per
    (image, class) pair), image sizes, empty masks. Reads every image header and mask."""
    areas: dict[int, list[int]] = {c: [] for c in dataset.classes.ids}
    sizes: Counter = Counter()
    empty: list[str] = []  # items labelled with a class whose mask has no pixel
    bad: list[str] = []
    labels_only = isinstance(dataset, SeverstalDataset) and all(i.image_path is None for i in dataset.items)
    with ui.progress(transient=True) as progress:
        task = progress.add_task("inspecting", total=len(dataset))
        for index, item in enumerate(dataset.items):
            progress.advance(task)
            try:
                if labels_only:
                    shape = dataset.shape_of(item.item_id)
                    sizes[shape] += 1
                    for class_id in item.class_ids:
                        areas[class_id].append(rle_area(dataset.rle(item.item_id, class_id), shape))
                    continue
                sizes[dataset.check_image(index)] += 1
                if item.class_ids:
                    masks = dataset.load_masks(index)
                    for class_id in item.class_ids:
                        pixels = int(masks[class_id - 1].sum())
                        areas[class_id].append(pixels)
                        if pixels == 0:
                            empty.append(item.item_id)
            except DataError as err:
                if not skip_bad:
                    raise
                bad.append(f"{item.item_id}: {err}")
    summary = dataset.summary()
    summary["mask_area_pixels"] = {dataset.classes.name(c): _quantiles(values) for c, values in areas.items()}
    heights = [h for (h, _w), n in sizes.items() for _ in range(n)]
    widths = [w for (_h, w), n in sizes.items() for _ in range(n)]
    summary["image_sizes"] = {
        "distinct": len(sizes),
        "height": _quantiles(heights),
        "width": _quantiles(widths),
        "most_common": [{"height": h, "width": w, "count": n} for (h, w), n in sizes.most_common(3)],
    }
    summary["channels"] = dataset.channels
    summary["classes"] = dataset.classes.to_json()
    summary["empty_masks"] = {"count": len(empty), "items": empty[:20]}
    summary["unreadable"] = {"count": len(bad), "items": bad[:20]}
    summary["skipped_items"] = [f"{s.item_id}: {s.reason}" for s in dataset.skipped[:20]]
    return summary


def write_contact_sheet(
    dataset: DefectDataset, path: Path, per_class: int = 3, free: int = 2, seed: int = 0
) -> Path:
    """A PNG with `per_class` images of each class and `free` defect-free ones, masks overlaid."""
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for class_id in dataset.classes.ids:
        candidates = [
            i for i, item in enumerate(dataset.items) if class_id in item.class_ids and item.image_path
        ]
        chosen += [int(i) for i in rng.permutation(candidates)[:per_class] if int(i) not in chosen]
    free_candidates = [i for i, item in enumerate(dataset.items) if not item.class_ids and item.image_path]
    chosen += [int(i) for i in rng.permutation(free_candidates)[:free]]
    if not chosen:
        raise DataError(f"{dataset.spec}: no images to draw (a labels-only dataset has none)")
    tiles, captions = [], []
    for index in chosen:
        sample = dataset[index]
        tiles.append(overlay(sample.image, sample.masks))
        names = "+".join(dataset.classes.name(c) for c in sample.class_ids) or "defect-free"
        captions.append(f"{sample.item_id} [{names}]")
    wide = dataset.image_shape is not None and dataset.image_shape[1] > 4 * dataset.image_shape[0]
    sheet = contact_sheet(tiles, captions, columns=2 if wide else 4, tile_width=640 if wide else 256)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def _quantiles(values: list[int]) -> dict:
    if not values:
        return {"count": 0}
    q = np.quantile(np.asarray(values, dtype=np.float64), QUANTILES)
    return {
        "count": len(values),
        "min": int(q[0]),
        "p10": int(q[1]),
        "median": int(q[2]),
        "p90": int(q[3]),
        "max": int(q[4]),
        "mean": round(float(np.mean(values)), 1),
    }
